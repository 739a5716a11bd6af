"""Resolving backbones: names, tags, local checkpoints, hub ids, and the offline error messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

import cir_milvus.models.spec as spec_mod  # noqa: E402
from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.errors import CheckpointError, ModelNotFoundError  # noqa: E402
from cir_milvus.hashing import file_sha256  # noqa: E402
from cir_milvus.models import DEMO_MODEL, list_models, resolve_model  # noqa: E402


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network and an empty Hugging Face cache, so hub downloads fail at once.

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` when it is imported (open_clip imports it), so the module
    constant is patched as well as the environment variable.
    """
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_list_models_includes_the_demo_architecture() -> None:
    names = list_models()
    assert DEMO_MODEL in names and "ViT-B-32" in names


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("ViT-B-23")
    msg = str(info.value)
    assert "'ViT-B-23'" in msg and "Did you mean" in msg and "ViT-B-32" in msg


def test_unknown_model_without_close_names_explains_the_options() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("not-a-model")
    msg = str(info.value)
    assert "'not-a-model'" in msg and "list_models" in msg and "hf-hub:" in msg and "register_model_config" in msg
    assert isinstance(info.value, LookupError)


def test_missing_checkpoint_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("ViT-B-32", str(missing))
    assert str(missing) in str(info.value)


def test_unknown_tag_lists_available_tags() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("ViT-B-32", "not-a-tag")
    msg = str(info.value)
    assert "'not-a-tag'" in msg
    tags = open_clip.list_pretrained_tags_by_model("ViT-B-32")
    assert "openai" in tags
    for tag in tags:
        assert tag in msg
    assert "local checkpoint" in msg


def test_resolution_kinds(tmp_path: Path) -> None:
    assert resolve_model("ViT-B-32", None).kind == "random"
    assert resolve_model(DEMO_MODEL, None).kind == "random"
    tag = resolve_model("ViT-B-32", "openai")
    assert (tag.kind, tag.pretrained, tag.checkpoint) == ("tag", "openai", None)
    hub = resolve_model("hf-hub:org/repo")
    assert (hub.kind, hub.model) == ("hf-hub", "hf-hub:org/repo")
    assert resolve_model(f"local-dir:{tmp_path}").kind == "local-dir"
    with pytest.raises(ModelNotFoundError, match="missing-folder"):
        resolve_model(f"local-dir:{tmp_path / 'missing-folder'}")


def test_missing_demo_weights_say_how_to_rebuild(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gone = tmp_path / "cir-demo-tiny.safetensors"
    monkeypatch.setattr(spec_mod, "demo_weights_path", lambda: gone)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(DEMO_MODEL, "cir-demo")
    assert str(gone) in str(info.value) and "cir_milvus.train.demo_clip" in str(info.value)


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
    path.write_bytes(b"different and longer content" * 100)  # new size: the cache must not return the old sum
    assert file_sha256(path) == hashlib.sha256(b"different and longer content" * 100).hexdigest()


def test_local_checkpoint_file_reproduces_the_model(tiny_torch_encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tiny_torch_encoder
    path = tmp_path / "tiny.pt"
    torch.save(src.model.state_dict(), path)

    enc = TorchEncoder(DEMO_MODEL, str(path), device="cpu")
    assert enc.spec.kind == "file" and enc.spec.checkpoint == path
    texts = ["a red star", "a photo of a small blue circle"]
    np.testing.assert_array_equal(enc.encode_texts(texts, normalize=False), src.encode_texts(texts, normalize=False))
    pixels = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(enc.encode_pixels(pixels, normalize=False), src.encode_pixels(pixels, normalize=False))

    recipe = enc.recipe
    assert recipe["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert recipe["pretrained"] == str(path) and recipe["model"] == DEMO_MODEL


@pytest.mark.parametrize("content", ["wrong-keys", "garbage"])
def test_checkpoint_that_does_not_fit_is_checkpoint_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "wrong.pt"
    if content == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    else:
        torch.save({"not_a_clip_weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError) as info:
        TorchEncoder(DEMO_MODEL, str(path), device="cpu")
    msg = str(info.value)
    assert str(path) in msg and DEMO_MODEL in msg and "model=" in msg


def test_tag_offline_is_model_not_found_with_guidance(offline: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        TorchEncoder("ViT-B-32", "openai", device="cpu")
    msg = str(info.value)
    assert "ViT-B-32" in msg and "'openai'" in msg  # the model and tag
    assert "Hugging Face hub" in msg and str(offline) in msg  # where it looked
    assert "pretrained='/path/to/" in msg and "local file" in msg  # how to pass a local file
    assert "model='ViT-B-32'" in msg


def test_hf_hub_offline_is_model_not_found_with_guidance(offline: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        TorchEncoder("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None, device="cpu")
    msg = str(info.value)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg and str(offline) in msg
    assert "local-dir:" in msg
    assert "model='laion/" not in msg  # a repo id is not an architecture name to pass as model=
