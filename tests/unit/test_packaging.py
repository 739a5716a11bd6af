"""pyproject.toml stays in sync with the source tree."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pyproject() -> dict:  # type: ignore[type-arg]
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _packages_on_disk(top: Path, prefix: str) -> set[str]:
    return {
        ".".join((prefix, *init.parent.relative_to(top).parts))
        for init in top.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_source_package_is_listed(pyproject: dict) -> None:  # type: ignore[type-arg]
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = _packages_on_disk(ROOT / "cir_milvus", "cir_milvus")
    assert "cir_milvus" in on_disk and "cir_milvus.composers" in on_disk
    assert on_disk <= listed, f"missing from [tool.setuptools] packages: {sorted(on_disk - listed)}"
    export_pkgs = _packages_on_disk(ROOT / "export", "cir_milvus_export")
    assert export_pkgs <= listed, f"missing from [tool.setuptools] packages: {sorted(export_pkgs - listed)}"


def test_every_listed_package_exists(pyproject: dict) -> None:  # type: ignore[type-arg]
    package_dir = pyproject["tool"]["setuptools"].get("package-dir", {})
    for pkg in pyproject["tool"]["setuptools"]["packages"]:
        top, *rest = pkg.split(".")
        folder = ROOT / package_dir.get(top, top)
        assert (folder.joinpath(*rest) / "__init__.py").is_file(), pkg


def test_export_package_maps_to_the_export_folder(pyproject: dict) -> None:  # type: ignore[type-arg]
    assert pyproject["tool"]["setuptools"]["package-dir"]["cir_milvus_export"] == "export"
    assert (ROOT / "export" / "__init__.py").is_file()


def test_package_data_covers_shipped_data(pyproject: dict) -> None:  # type: ignore[type-arg]
    patterns = pyproject["tool"]["setuptools"]["package-data"]["cir_milvus"]
    assert "py.typed" in patterns and (ROOT / "cir_milvus" / "py.typed").is_file()
    configs = list((ROOT / "cir_milvus" / "models" / "model_configs").glob("*.json"))
    assert configs and "models/model_configs/*.json" in patterns
