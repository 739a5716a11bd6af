"""The curated top-level namespace: sorted ``__all__``, every name importable, and no heavy imports."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import cir_milvus


def test_all_is_sorted_and_unique() -> None:
    assert list(cir_milvus.__all__) == sorted(cir_milvus.__all__)
    assert len(set(cir_milvus.__all__)) == len(cir_milvus.__all__)


def test_every_exported_name_resolves() -> None:
    for name in cir_milvus.__all__:
        assert getattr(cir_milvus, name, None) is not None, name


def test_public_names_defined_at_top_level_are_exported() -> None:
    # the reverse direction: anything imported into the namespace without a leading underscore is listed
    public = {
        name
        for name, value in vars(cir_milvus).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public <= set(cir_milvus.__all__), public - set(cir_milvus.__all__)


def test_fixed_design_names_exist() -> None:
    from cir_milvus import CIRCollection, Hit

    for method in ("create", "open", "add", "search", "search_batch"):
        assert callable(getattr(CIRCollection, method, None)), method
    assert isinstance(inspect.getattr_static(CIRCollection, "create"), classmethod)
    assert isinstance(inspect.getattr_static(CIRCollection, "open"), classmethod)
    assert inspect.isclass(Hit)


def test_exceptions_share_one_root_and_builtin_bases() -> None:
    from cir_milvus import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, cir_milvus.CIRError)
        assert getattr(cir_milvus, name) is cls
    assert issubclass(cir_milvus.ConfigError, ValueError)
    assert issubclass(cir_milvus.ModelNotFoundError, LookupError)
    assert issubclass(cir_milvus.StorageError, RuntimeError)
    assert issubclass(cir_milvus.RecipeMismatchError, cir_milvus.ConfigError)


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("cir_milvus")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        pytest.skip("cir_milvus is not installed")
    assert cir_milvus.__version__ == installed


@pytest.mark.parametrize("heavy", ["torch", "open_clip", "onnxruntime", "cir_milvus.train"])
def test_import_does_not_pull_heavy_modules(heavy: str) -> None:
    code = f"import cir_milvus, sys; assert {heavy!r} not in sys.modules, sorted(sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
