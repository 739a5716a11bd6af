"""The collection recipe: JSON round trip and the compatibility check between a collection and an encoder."""

from __future__ import annotations

import json

import pytest

from cir_milvus.errors import ConfigError, RecipeMismatchError
from cir_milvus.preprocess import PreprocessConfig
from cir_milvus.storage.recipe import Recipe, check_compatible


def _encoder(**overrides: object) -> dict[str, object]:
    enc: dict[str, object] = {
        "backend": "torch",
        "model": "ViT-B-32",
        "pretrained": "openai",
        "weights_sha256": "a" * 64,
        "dim": 512,
        "preprocess": PreprocessConfig().to_dict(),
    }
    enc.update(overrides)
    return enc


def test_json_round_trip() -> None:
    recipe = Recipe(
        encoder=_encoder(),
        composer={"name": "searle", "params": {"head": {"kind": "searle", "source": "x.pt"}, "template": "a $ {}"}},
        metric="IP",
        index={"type": "IVF_FLAT", "params": {"nlist": 128}},
        package_version="0.1.0",
    )
    text = recipe.to_json()
    assert isinstance(json.loads(text), dict)
    back = Recipe.from_json(text)
    assert back == recipe
    assert back.to_json() == text


def test_defaults_survive_round_trip() -> None:
    recipe = Recipe(encoder=_encoder())
    back = Recipe.from_json(recipe.to_json())
    assert back.composer == {"name": "slerp", "params": {"alpha": 0.8}}
    assert back.metric == "IP" and back.index["type"] == "HNSW" and back.format == 1


@pytest.mark.parametrize("text", ["not json", "{}", '{"encoder": {}}', "[1, 2]"])
def test_unreadable_recipe_is_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="unreadable"):
        Recipe.from_json(text)


def test_mismatch_names_both_models() -> None:
    stored = Recipe(encoder=_encoder())
    current = _encoder(model="ViT-L-14", dim=768, weights_sha256="b" * 64)
    with pytest.raises(RecipeMismatchError) as info:
        check_compatible("products", stored, current)
    msg = str(info.value)
    assert "ViT-B-32" in msg and "ViT-L-14" in msg
    assert "'products'" in msg
    assert "512" in msg and "768" in msg
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    "field,value",
    [
        ("pretrained", "laion2b_s34b_b79k"),
        ("weights_sha256", "c" * 64),
        ("dim", 256),
        ("preprocess", PreprocessConfig(mode="targetpad").to_dict()),
        ("preprocess", PreprocessConfig(size=336).to_dict()),
    ],
)
def test_each_must_match_field_is_checked(field: str, value: object) -> None:
    stored = Recipe(encoder=_encoder())
    with pytest.raises(RecipeMismatchError, match=field):
        check_compatible("c", stored, _encoder(**{field: value}))


def test_backend_difference_alone_is_ok() -> None:
    stored = Recipe(encoder=_encoder(backend="torch"))
    check_compatible("c", stored, _encoder(backend="onnx"))


def test_missing_sha_on_one_side_is_ignored() -> None:
    check_compatible("c", Recipe(encoder=_encoder(weights_sha256=None)), _encoder())
    check_compatible("c", Recipe(encoder=_encoder()), _encoder(weights_sha256=None))
    no_key = _encoder()
    del no_key["weights_sha256"]
    check_compatible("c", Recipe(encoder=_encoder()), no_key)


def test_stored_json_recipe_is_compatible_with_the_live_encoder_dict() -> None:
    # the stored side went through JSON (tuples -> lists); the live side is fresh from the encoder
    stored = Recipe.from_json(Recipe(encoder=_encoder()).to_json())
    check_compatible("c", stored, _encoder())


def test_describe_mentions_model_tag_and_short_sha() -> None:
    text = Recipe(encoder=_encoder()).describe()
    assert "ViT-B-32" in text and "openai" in text and "a" * 12 in text and "a" * 13 not in text
    assert "(sha256 -," in Recipe(encoder=_encoder(weights_sha256=None)).describe()
