"""The one registry mechanism (cir_milvus.registry) and its registries: composers (decorator checks, lookup errors,
parameters, entry-point plugins), encoder backends, head kinds; and the encoder capability protocols."""

from __future__ import annotations

import doctest
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import cir_milvus.composers.base as base
import cir_milvus.registry as registry_mod
from cir_milvus.composers import COMPOSERS, Composer, get_composer, list_composers, register_composer
from cir_milvus.errors import ConfigError
from cir_milvus.registry import Registry

BUILTINS = {"combined", "image", "lincir", "pic2word", "searle", "slerp", "sum", "text"}


class _Echo(Composer):
    """A trivial composer for registry tests: returns the normalised image."""

    defaults = {"scale": 1.0}

    def compose(self, encoder: Any, image_embeddings: Any, texts: Sequence[str]) -> Any:
        x = np.asarray(image_embeddings, dtype=np.float32) * self.params["scale"]
        return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The composer registry with entry points re-scannable; whatever a test registers is removed after it."""
    before = set(list_composers())  # built-ins (and installed plugins) loaded
    monkeypatch.setattr(COMPOSERS, "_plugins_loaded", False)
    yield COMPOSERS.mapping()
    for name in set(COMPOSERS.mapping()) - before:
        COMPOSERS.unregister(name)


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

    monkeypatch.setattr(registry_mod, "entry_points", fake_entry_points)
    return seen_groups


def test_builtins_are_listed_sorted() -> None:
    names = list_composers()
    assert BUILTINS <= set(names)
    assert names == sorted(names)


def test_register_and_create(isolated_registry: Any) -> None:
    cls = register_composer("echo-test")(type("EchoA", (_Echo,), {}))
    assert isolated_registry["echo-test"] is cls and cls.name == "echo-test"
    assert "echo-test" in list_composers()
    comp = get_composer("echo-test", scale=2.0)
    assert isinstance(comp, cls) and comp.params == {"scale": 2.0}
    assert comp.config() == {"name": "echo-test", "params": {"scale": 2.0}}
    # registering the same class again under the same name is harmless
    assert register_composer("echo-test")(cls) is cls


def test_duplicate_name_rejected(isolated_registry: Any) -> None:
    original = isolated_registry["slerp"]
    with pytest.raises(ConfigError, match="'slerp' is already registered"):
        register_composer("slerp")(type("OtherSlerp", (_Echo,), {}))
    assert isolated_registry["slerp"] is original


@pytest.mark.parametrize("thing", [object, int, lambda: None, "slerp"])
def test_non_composer_rejected(isolated_registry: Any, thing: Any) -> None:
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
    isolated_registry: Any, monkeypatch: pytest.MonkeyPatch
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
    isolated_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = isolated_registry["slerp"]
    _patch_entry_points(monkeypatch, [_FakeEntryPoint("slerp", lambda: type("Impostor", (_Echo,), {}))])
    list_composers()
    assert isolated_registry["slerp"] is original


def test_broken_plugins_are_skipped_with_a_warning(
    isolated_registry: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
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
    with caplog.at_level(logging.WARNING, logger=registry_mod.__name__):
        names = list_composers()
    assert "good" in names and "broken" not in names and "not-a-class" not in names
    assert BUILTINS <= set(names)
    assert "missing dependency xyz" in caplog.text and "not-a-class" in caplog.text


def test_module_doctest_runs() -> None:
    result = doctest.testmod(base, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
    result = doctest.testmod(registry_mod, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


# -- the generic registry and the other registries ------------------------------------------------------------------


class _Base:
    pass


def test_generic_registry_checks_base_duplicates_and_names() -> None:
    reg: Registry[type[_Base]] = Registry("widget", _Base)
    a = reg.register("a")(type("A", (_Base,), {}))
    assert reg.get("a") is a and reg.list() == ["a"] and "a" in reg and isinstance(reg.create("a"), a)
    with pytest.raises(ConfigError, match="'a' is already registered"):
        reg.add("a", type("A2", (_Base,), {}))
    with pytest.raises(ConfigError, match="_Base subclass"):
        reg.add("b", int)
    with pytest.raises(ConfigError, match="unknown widget 'zz'; available: a"):
        reg.get("zz")
    reg.unregister("a")
    assert reg.list() == []
    instances: Registry[_Base] = Registry("thing", _Base, instances=True)
    with pytest.raises(ConfigError, match="_Base instance"):
        instances.add("x", _Base)  # the class, not an instance
    one = instances.add("x", _Base())
    assert instances.mapping()["x"] is one


def test_encoder_backends_register_as_classes_that_rebuild_themselves() -> None:
    from cir_milvus.encoders import ENCODERS, EncoderBackend, FakeEncoder, encoder_from_recipe, register_encoder

    assert {"fake", "onnx", "torch"} <= set(ENCODERS.list())
    assert all(issubclass(cls, EncoderBackend) for _, cls in ENCODERS.items())
    with pytest.raises(ConfigError, match="EncoderBackend subclass"):
        register_encoder("not-a-backend")(lambda **kw: None)  # factories are no longer accepted
    assert "not-a-backend" not in ENCODERS
    with pytest.raises(ConfigError, match="unknown encoder backend 'nope'; available: .*fake.*onnx.*torch"):
        encoder_from_recipe({"backend": "nope", "model": "x"})
    with pytest.raises(ConfigError, match="FakeEncoder"):
        encoder_from_recipe(FakeEncoder(dim=4).recipe)


def test_a_plugin_backend_rebuilds_from_its_own_recipe() -> None:
    from cir_milvus.encoders import ENCODERS, EncoderBackend, FakeEncoder, encoder_from_recipe, register_encoder

    class SeededFake(FakeEncoder):
        @classmethod
        def from_recipe(cls, recipe: Any, options: Any) -> Any:
            return cls(dim=int(recipe["dim"]), seed=int(recipe["seed"]))

        @property
        def recipe(self) -> dict[str, Any]:
            return {**super().recipe, "backend": "seeded-fake", "seed": self.seed}

    register_encoder("seeded-fake")(SeededFake)
    try:
        enc = encoder_from_recipe(SeededFake(dim=6, seed=3).recipe)
        assert isinstance(enc, SeededFake) and enc.dim == 6 and enc.seed == 3
        assert isinstance(enc, EncoderBackend)
    finally:
        ENCODERS.unregister("seeded-fake")


def test_head_kinds_are_one_registry_table() -> None:
    from cir_milvus.heads import HEAD_DEFAULTS, HEADS, HeadDefaults, head_defaults, list_heads

    assert list_heads() == sorted(HEAD_DEFAULTS) == ["lincir", "pic2word", "searle"]
    assert head_defaults("pic2word").arch == "Pic2WordMapper" and head_defaults("lincir").arch == "SearlePhi"
    with pytest.raises(ConfigError, match="unknown head kind 'phi'; available: lincir, pic2word, searle"):
        head_defaults("phi")
    with pytest.raises(ConfigError, match="HeadDefaults instance"):
        HEADS.add("bogus", {"template": "$ {}"})
    with pytest.raises(ConfigError, match="arch"):
        HeadDefaults("a $ {}", "$", "clip", "both", "Phi", arch="Transformer")
    with pytest.raises(TypeError):
        HEAD_DEFAULTS["new"] = head_defaults("searle")  # type: ignore[index]  # read-only view


def test_capabilities_are_runtime_checkable_protocols() -> None:
    from cir_milvus.encoders import (
        FakeEncoder,
        HasBundleHeads,
        HasExecutionProviders,
        HasPreprocessConfig,
        SupportsDecodeModes,
        SupportsDeviceOutput,
        SupportsPixels,
        SupportsPseudoTokens,
        SupportsThreads,
    )

    fake = FakeEncoder(dim=8)
    assert isinstance(fake, SupportsPseudoTokens)
    for proto in (HasBundleHeads, HasExecutionProviders, HasPreprocessConfig, SupportsDecodeModes,
                  SupportsDeviceOutput, SupportsPixels, SupportsThreads):
        assert not isinstance(fake, proto), proto.__name__

    class Pixels(FakeEncoder):
        preprocess_config = None

        def pixels(self, images: Any, preprocess: Any = None) -> Any:
            return np.zeros((len(images), 3, 8, 8), dtype=np.float32)

        def encode_pixels(self, pixels: Any, *, normalize: bool = True) -> Any:
            return np.zeros((len(pixels), self.dim), dtype=np.float32)

    assert isinstance(Pixels(dim=8), SupportsPixels) and isinstance(Pixels(dim=8), HasPreprocessConfig)
    assert not isinstance(Pixels(dim=8), SupportsDecodeModes)


def test_pixel_input_and_precision_capabilities_drive_the_record_stage() -> None:
    from cir_milvus.collection.stage import pixel_config
    from cir_milvus.encoders import FakeEncoder, HasPrecision, SupportsPixelInput, SupportsPixels
    from cir_milvus.preprocess import PreprocessConfig

    class PixelsOnly(FakeEncoder):  # takes worker-made pixels, but cannot make them itself
        preprocess_config = PreprocessConfig(size=8)
        precision = "fp16"

        def encode_pixels(self, pixels: Any, *, normalize: bool = True) -> Any:
            return np.zeros((len(pixels), self.dim), dtype=np.float32)

    enc = PixelsOnly(dim=8)
    assert isinstance(enc, SupportsPixelInput) and not isinstance(enc, SupportsPixels)
    assert pixel_config(enc) == PreprocessConfig(size=8)  # decode workers hand it pixels
    assert pixel_config(FakeEncoder(dim=8)) is None  # takes images
    assert isinstance(enc, HasPrecision) and not isinstance(FakeEncoder(dim=8), HasPrecision)


def test_composer_head_names_the_head_a_composer_runs() -> None:
    torch = pytest.importorskip("torch")
    from cir_milvus.composers import composer_head
    from cir_milvus.heads import Head, SearlePhi

    torch.manual_seed(0)
    head = Head("lincir", SearlePhi(8, 16, 8))
    assert composer_head(get_composer("lincir", head=head)) is head
    assert composer_head(get_composer("combined", head=head)) is head  # the pseudo-token side's
    assert composer_head(get_composer("slerp")) is None
