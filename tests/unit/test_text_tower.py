"""Swapping a tuned text tower into an open_clip model: RTD's published Hugging Face layout (checked against
``transformers``' own CLIPTextModelWithProjection), open_clip layouts, and clear errors for files that do not fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from cir_milvus import EncoderSpec  # noqa: E402
from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.errors import CheckpointError  # noqa: E402
from cir_milvus.models.text_tower import (  # noqa: E402
    RTD_WRAPPER_KEY,
    hf_text_to_open_clip,
    load_text_tower,
    text_tower_state_dict,
)

TEXTS = ["a red star", "make it green and large", "a photo of $ that is on a brown background"]


@pytest.fixture(scope="module")
def hf_text_model():  # type: ignore[no-untyped-def]
    """A random HF CLIPTextModelWithProjection shaped like the demo model's text tower (width 128, 4 layers)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                                      num_attention_heads=4, max_position_embeddings=32, projection_dim=128,
                                      hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=0)
    torch.manual_seed(1)
    model = transformers.CLIPTextModelWithProjection(cfg).eval()
    with torch.no_grad():  # the default init leaves biases at zero: randomise everything the mapping moves
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def _hf_features(model, ids: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids)).text_embeds.numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_rtd_checkpoint_in_hf_layout_matches_transformers(tmp_path: Path, hf_text_model) -> None:  # type: ignore[no-untyped-def]
    """An RTD-style checkpoint ({'epoch', 'CLIPTextModelWithProjection': HF state dict}, DDP prefix) encodes text
    exactly as transformers does, and leaves the image tower alone."""
    sd = {f"module.{k}": v for k, v in hf_text_model.state_dict().items()}
    path = tmp_path / "rtd_text_encoder.pt"
    torch.save({"epoch": 3, RTD_WRAPPER_KEY: sd}, path)
    base = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")
    enc = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", text_weights=str(path))
    ids = enc.tokenize(TEXTS)
    want = _hf_features(hf_text_model, ids)
    got = enc.encode_texts(TEXTS)
    cos = (want * got).sum(1)
    assert cos.min() > 0.9999, cos
    assert not np.allclose(base.encode_texts(TEXTS), got, atol=1e-3)
    pix = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(base.encode_pixels(pix), enc.encode_pixels(pix))
    assert enc.recipe["weights_sha256"] == base.recipe["weights_sha256"]
    assert enc.recipe["text_weights"] == str(path) and len(enc.recipe["text_weights_sha256"]) == 64


def test_hf_mapping_concatenates_qkv_and_transposes_projection(hf_text_model) -> None:  # type: ignore[no-untyped-def]
    hf = hf_text_model.state_dict()
    oc = hf_text_to_open_clip(hf)
    layer = "text_model.encoder.layers.2.self_attn."
    w = oc["transformer.resblocks.2.attn.in_proj_weight"]
    assert torch.equal(w[:128], hf[layer + "q_proj.weight"]) and torch.equal(w[256:], hf[layer + "v_proj.weight"])
    assert torch.equal(oc["text_projection"], hf["text_projection.weight"].t())
    with pytest.raises(CheckpointError, match="unknown keys"):
        hf_text_to_open_clip({**hf, "text_model.pooler.weight": torch.zeros(1)})
    broken = {k: v for k, v in hf.items() if k != layer + "k_proj.bias"}
    with pytest.raises(CheckpointError, match="q, k and v"):
        hf_text_to_open_clip(broken)


def test_open_clip_layouts_and_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(2)
    donor = TorchEncoder("cir-demo-tiny", None, device="cpu")  # random weights: a different text tower
    full = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in donor.model.state_dict().items()}, str(full))
    text_only = tmp_path / "text.safetensors"
    save_file({k: v.contiguous() for k, v in text_tower_state_dict(donor.model).items()}, str(text_only))
    base = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")
    for path in (full, text_only):  # a full checkpoint lends only its text tower
        enc = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", text_weights=str(path))
        np.testing.assert_allclose(enc.encode_texts(TEXTS), donor.encode_texts(TEXTS), atol=1e-5)
        np.testing.assert_array_equal(enc.model.visual.conv1.weight.detach().numpy(),
                                      base.model.visual.conv1.weight.detach().numpy())
    wrong = tmp_path / "wrong.safetensors"
    sd = text_tower_state_dict(donor.model)
    sd["positional_embedding"] = torch.zeros(77, 128)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(wrong))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*positional_embedding"):
        load_text_tower(base.model, wrong)
    with pytest.raises(CheckpointError, match="not found"):
        load_text_tower(base.model, tmp_path / "missing.pt")
    torch.save({"epoch": 1, "optimizer": {"lr": 1.0}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no text-tower state dict"):
        load_text_tower(base.model, tmp_path / "other.pt")


def test_collection_served_by_a_swapped_text_tower(tmp_path: Path, hf_text_model) -> None:  # type: ignore[no-untyped-def]
    """A gallery built with the base weights opens with base + RTD text tower (no re-ingestion), queries change,
    and a collection created with the swapped tower reopens with it from the stored recipe."""
    pytest.importorskip("milvus_lite")
    from cir_milvus.collection import CIRCollection

    path = tmp_path / "rtd.pt"
    torch.save({RTD_WRAPPER_KEY: hf_text_model.state_dict()}, path)
    uri = str(tmp_path / "cir.db")
    base = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    from PIL import Image

    files = []
    for i, arr in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(files[-1])
    with CIRCollection.create(uri, "g", encoder=base) as col:
        col.add(files)
        col.wait_for_index()
        base_hits = col.search(files[0], "make it green", k=3)
    rtd = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", text_weights=str(path))
    with CIRCollection.open(uri, "g", encoder=rtd) as col:
        assert len(col) == 6
        hits = col.search(files[0], "make it green", k=3)
        assert [h.score for h in hits] != [h.score for h in base_hits]  # the query changed, the gallery did not
    with CIRCollection.create(uri, "h", encoder=rtd) as col:
        col.add(files[:2])
    with CIRCollection.open(uri, "h") as col:
        assert col.encoder.recipe.get("text_weights") == str(path)
        np.testing.assert_allclose(col.encoder.encode_texts(TEXTS), rtd.encode_texts(TEXTS), atol=1e-6)


def test_open_with_text_weights_and_cli(tmp_path: Path, hf_text_model, capsys) -> None:  # type: ignore[no-untyped-def]
    """``CIRCollection.open(text_weights=)`` and ``cir-milvus search --text-weights`` swap the tower over the
    stored recipe's model; an ONNX-served collection refuses it with a message naming the fix."""
    pytest.importorskip("milvus_lite")
    from PIL import Image

    from cir_milvus.cli import main
    from cir_milvus.collection import CIRCollection
    from cir_milvus.errors import ConfigError

    path = tmp_path / "rtd.pt"
    torch.save({RTD_WRAPPER_KEY: hf_text_model.state_dict()}, path)
    uri = str(tmp_path / "cir.db")
    img = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(img)
    Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(tmp_path / "b.png")
    with CIRCollection.create(uri, "g", model="cir-demo-tiny", pretrained="cir-demo") as col:
        col.add([img, tmp_path / "b.png"])
    with CIRCollection.open(uri, "g", encoder=EncoderSpec(text_weights=str(path))) as col:
        assert col.encoder.recipe["text_weights"] == str(path)
        want = col.encoder.encode_texts(["make it red"])
    np.testing.assert_allclose(want, _hf_features(hf_text_model, col.encoder.tokenize(["make it red"])), atol=1e-4)
    assert main(["search", "--uri", uri, "--collection", "g", "--image", str(img), "--text", "make it red",
                 "--text-weights", str(path), "--json"]) == 0
    assert '"id"' in capsys.readouterr().out
    with pytest.raises(ConfigError, match="encoder="):  # a ready encoder carries its own text tower: one or the other
        CIRCollection.open(uri, "g", "cir-demo-tiny", encoder=TorchEncoder("cir-demo-tiny", "cir-demo"))


def test_export_cli_carries_the_text_tower(tmp_path: Path, hf_text_model) -> None:  # type: ignore[no-untyped-def]
    """``cir-milvus export --text-weights`` writes the tuned tower into the text graph, and ``parity --torch``
    rebuilds the same encoder from the manifest."""
    pytest.importorskip("onnxruntime")
    from cir_milvus.cli import main
    from cir_milvus.encoders.ort import OrtEncoder

    path = tmp_path / "rtd.pt"
    torch.save({RTD_WRAPPER_KEY: hf_text_model.state_dict()}, path)
    out = tmp_path / "bundle"
    assert main(["export", "--model", "cir-demo-tiny", "--pretrained", "cir-demo", "--text-weights", str(path),
                 "--no-fused", "--out", str(out)]) == 0
    ort = OrtEncoder(out)
    want = _hf_features(hf_text_model, ort.tokenize(TEXTS))
    assert (ort.encode_texts(TEXTS) * want).sum(1).min() > 0.9999
    assert ort.manifest["source"]["text_weights"] == str(path)
    assert main(["parity", str(out), "--torch"]) == 0
