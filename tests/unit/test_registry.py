"""The composer registry: decorator checks, lookup errors, parameters, and entry-point plugins."""

from __future__ import annotations

import doctest
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import cir_milvus.composers.base as base
from cir_milvus.composers import Composer, get_composer, list_composers, register_composer
from cir_milvus.errors import ConfigError

BUILTINS = {"combined", "image", "lincir", "pic2word", "searle", "slerp", "sum", "text"}


class _Echo(Composer):
    """A trivial composer for registry tests: returns the normalised image."""

    defaults = {"scale": 1.0}

    def compose(self, encoder: Any, image_embeddings: Any, texts: Sequence[str]) -> Any:
        x = np.asarray(image_embeddings, dtype=np.float32) * self.params["scale"]
        return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Composer]]:
    """A copy of the registry (built-ins loaded) that is restored after the test, with entry points re-scannable."""
    list_composers()  # make sure the built-ins are registered before copying
    registry = dict(base._REGISTRY)
    monkeypatch.setattr(base, "_REGISTRY", registry)
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    return registry


class _FakeEntryPoint:
    def __init__(self, name: str, loader: Any) -> None:
        self.name = name
        self.value = f"fake_plugin:{name}"
        self.group = base.ENTRY_POINT_GROUP
        self._loader = loader

    def load(self) -> Any:
        return self._loader()


def _patch_entry_points(monkeypatch: pytest.MonkeyPatch, eps: list[_FakeEntryPoint]) -> list[str | None]:
    seen_groups: list[str | None] = []

    def fake_entry_points(*, group: str | None = None) -> list[_FakeEntryPoint]:
        seen_groups.append(group)
        return eps if group == base.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(base, "entry_points", fake_entry_points)
    return seen_groups


def test_builtins_are_listed_sorted() -> None:
    names = list_composers()
    assert BUILTINS <= set(names)
    assert names == sorted(names)


def test_register_and_create(isolated_registry: dict[str, type[Composer]]) -> None:
    cls = register_composer("echo-test")(type("EchoA", (_Echo,), {}))
    assert isolated_registry["echo-test"] is cls and cls.name == "echo-test"
    assert "echo-test" in list_composers()
    comp = get_composer("echo-test", scale=2.0)
    assert isinstance(comp, cls) and comp.params == {"scale": 2.0}
    assert comp.config() == {"name": "echo-test", "params": {"scale": 2.0}}
    # registering the same class again under the same name is harmless
    assert register_composer("echo-test")(cls) is cls


def test_duplicate_name_rejected(isolated_registry: dict[str, type[Composer]]) -> None:
    original = isolated_registry["slerp"]
    with pytest.raises(ConfigError, match="'slerp' is already registered"):
        register_composer("slerp")(type("OtherSlerp", (_Echo,), {}))
    assert isolated_registry["slerp"] is original


@pytest.mark.parametrize("thing", [object, int, lambda: None, "slerp"])
def test_non_composer_rejected(isolated_registry: dict[str, type[Composer]], thing: Any) -> None:
    with pytest.raises(ConfigError, match="Composer subclass"):
        register_composer("not-a-composer")(thing)
    assert "not-a-composer" not in isolated_registry


def test_unknown_composer_lists_available() -> None:
    with pytest.raises(ConfigError) as info:
        get_composer("slurp")
    msg = str(info.value)
    assert "'slurp'" in msg
    for name in BUILTINS:
        assert name in msg


def test_unknown_parameter_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        get_composer("slerp", alpha=0.5, beta=2)
    msg = str(info.value)
    assert "beta" in msg and "alpha" in msg  # names the bad one and what is accepted
    with pytest.raises(ConfigError, match="none"):
        get_composer("sum", alpha=0.5)  # sum takes no parameters


def test_none_params_fall_back_to_defaults_and_with_params_copies() -> None:
    comp = get_composer("slerp", alpha=None)
    assert comp.params["alpha"] == 0.8
    other = comp.with_params(alpha=0.3)
    assert other is not comp and other.params["alpha"] == 0.3 and comp.params["alpha"] == 0.8
    assert comp.with_params(alpha=None).params["alpha"] == 0.8
    with pytest.raises(ConfigError):
        comp.with_params(alpha=2.0)


def test_entry_point_plugin_is_discovered(
    isolated_registry: dict[str, type[Composer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    class PluginComposer(_Echo):
        pass

    groups = _patch_entry_points(monkeypatch, [_FakeEntryPoint("my-plugin", lambda: PluginComposer)])
    assert "my-plugin" in list_composers()
    assert groups == [base.ENTRY_POINT_GROUP]
    comp = get_composer("my-plugin", scale=3.0)
    assert isinstance(comp, PluginComposer) and PluginComposer.name == "my-plugin"
    out = comp.compose(None, np.array([[3.0, 4.0]]), ["t"])
    np.testing.assert_allclose(out, [[0.6, 0.8]], atol=1e-6)
    list_composers()
    assert len(groups) == 1  # scanned once


def test_entry_point_cannot_shadow_a_builtin(
    isolated_registry: dict[str, type[Composer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = isolated_registry["slerp"]
    _patch_entry_points(monkeypatch, [_FakeEntryPoint("slerp", lambda: type("Impostor", (_Echo,), {}))])
    list_composers()
    assert isolated_registry["slerp"] is original


def test_broken_plugins_are_skipped_with_a_warning(
    isolated_registry: dict[str, type[Composer]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> Any:
        raise ImportError("missing dependency xyz")

    class Good(_Echo):
        pass

    _patch_entry_points(
        monkeypatch,
        [
            _FakeEntryPoint("broken", boom),
            _FakeEntryPoint("not-a-class", lambda: "just a string"),
            _FakeEntryPoint("good", lambda: Good),
        ],
    )
    with caplog.at_level(logging.WARNING, logger=base.__name__):
        names = list_composers()
    assert "good" in names and "broken" not in names and "not-a-class" not in names
    assert BUILTINS <= set(names)
    assert "missing dependency xyz" in caplog.text and "not-a-class" in caplog.text


def test_module_doctest_runs() -> None:
    result = doctest.testmod(base, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
