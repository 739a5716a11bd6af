"""Projection heads: published checkpoint layouts (tiny and real sizes), strict loading, save/load, hub errors."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from cir_milvus.errors import CheckpointError, ConfigError, ModelNotFoundError  # noqa: E402
from cir_milvus.heads import Head, list_heads, load_head, state_dict_sha256  # noqa: E402

# -- published layouts, written out by hand (not through our modules) ----------------------------------------------


def pic2word_sd(embed: int, middle: int, out: int, n_layer: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Pic2Word IM2TEXT keys: layers.{i}.0.{weight,bias}, fc_out.{weight,bias}."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    dim = embed
    for i in range(n_layer):
        sd[f"layers.{i}.0.weight"] = torch.randn(middle, dim, generator=g) / dim**0.5
        sd[f"layers.{i}.0.bias"] = torch.randn(middle, generator=g) * 0.1
        dim = middle
    sd["fc_out.weight"] = torch.randn(out, middle, generator=g) / middle**0.5
    sd["fc_out.bias"] = torch.randn(out, generator=g) * 0.1
    return sd


def searle_sd(inp: int, hidden: int, out: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """SEARLE/LinCIR Phi keys: layers.0, layers.3, layers.6."""
    g = torch.Generator().manual_seed(seed)
    return {
        "layers.0.weight": torch.randn(hidden, inp, generator=g) / inp**0.5,
        "layers.0.bias": torch.randn(hidden, generator=g) * 0.1,
        "layers.3.weight": torch.randn(hidden, hidden, generator=g) / hidden**0.5,
        "layers.3.bias": torch.randn(hidden, generator=g) * 0.1,
        "layers.6.weight": torch.randn(out, hidden, generator=g) / hidden**0.5,
        "layers.6.bias": torch.randn(out, generator=g) * 0.1,
    }


def pic2word_ref(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    n_layer = sum(1 for k in sd if k.endswith(".0.weight") and k.startswith("layers."))
    for i in range(n_layer):  # Linear -> Dropout (off) -> ReLU
        x = F.relu(x @ sd[f"layers.{i}.0.weight"].T + sd[f"layers.{i}.0.bias"])
    return x @ sd["fc_out.weight"].T + sd["fc_out.bias"]


def searle_ref(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = F.gelu(x @ sd["layers.0.weight"].T + sd["layers.0.bias"])
    x = F.gelu(x @ sd["layers.3.weight"].T + sd["layers.3.bias"])
    return x @ sd["layers.6.weight"].T + sd["layers.6.bias"]


def save_published(kind: str, sd: dict[str, torch.Tensor], path) -> None:
    """The wrapper formats of the released checkpoints."""
    if kind == "pic2word":
        ckpt = {
            "epoch": 30,
            "name": "pic2word",
            "state_dict": {"module.token_embedding.weight": torch.zeros(4, 3)},
            "state_dict_img2text": {"module." + k: v for k, v in sd.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.98), "params": [0, 1]}]},
        }
    else:
        ckpt = {"epoch": 100, "Phi": sd}
    torch.save(ckpt, path)


CASES = [
    # (kind, label, dims)
    ("pic2word", "tiny", (16, 12, 8)),
    ("pic2word", "ViT-L/14", (768, 512, 768)),
    ("searle", "tiny", (16, 64, 8)),
    ("searle", "ViT-B/32", (512, 2048, 512)),
    ("searle", "SEARLE-XL ViT-L/14", (768, 3072, 768)),
    ("lincir", "tiny", (16, 64, 16)),
    ("lincir", "ViT-L/14", (768, 3072, 768)),
]


@pytest.mark.parametrize(("kind", "label", "dims"), CASES, ids=[f"{k}-{lbl}" for k, lbl, _ in CASES])
def test_published_checkpoint_loads_and_matches_maths(kind, label, dims, tmp_path):
    inp, hidden, out = dims
    sd = pic2word_sd(inp, hidden, out) if kind == "pic2word" else searle_sd(inp, hidden, out)
    path = tmp_path / f"{kind}.pt"
    save_published(kind, sd, path)

    head = load_head(kind, path)

    assert head.kind == kind and head.source == str(path)
    assert head.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (head.input_dim, head.output_dim) == (inp, out)
    assert not head.module.training
    loaded = head.module.state_dict()
    assert {k: list(v.shape) for k, v in loaded.items()} == {k: list(v.shape) for k, v in sd.items()}
    if kind == "pic2word":
        assert head.arch == {"embed_dim": inp, "middle_dim": hidden, "output_dim": out, "n_layer": 2, "dropout": 0.1}
        assert (head.template, head.placeholder, head.preprocess) == ("a photo of * , {}", "*", "clip")
    else:
        assert head.arch == {"input_dim": inp, "hidden_dim": hidden, "output_dim": out, "dropout": 0.5}
        assert head.template == "a photo of $ that {}" and head.placeholder == "$"
        assert head.preprocess == {"searle": "targetpad", "lincir": "hf_clip"}[kind]

    x = torch.randn(3, inp, generator=torch.Generator().manual_seed(1)) * 5  # raw (un-normalised) embeddings
    ref = pic2word_ref(sd, x) if kind == "pic2word" else searle_ref(sd, x)
    got_t = head(x)
    got_np = head(x.numpy())
    assert isinstance(got_t, torch.Tensor) and isinstance(got_np, np.ndarray) and got_np.dtype == np.float32
    torch.testing.assert_close(got_t, ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got_np, ref.numpy(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(head(x), got_t)  # eval mode: dropout off, deterministic


def test_three_block_pic2word_is_inferred(tmp_path):
    sd = pic2word_sd(10, 6, 4, n_layer=3)
    head = load_head("pic2word", sd)
    assert head.arch["n_layer"] == 3 and head.source is None and head.sha256 is None
    x = torch.randn(2, 10)
    torch.testing.assert_close(head(x), pic2word_ref(sd, x), atol=1e-5, rtol=1e-5)


def test_plain_state_dict_safetensors_and_in_memory(tmp_path):
    from safetensors.torch import save_file

    sd = searle_sd(16, 32, 8)
    x = torch.randn(2, 16)
    ref = searle_ref(sd, x)

    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "plain.pth")  # DDP prefix, no wrapper
    save_file(sd, str(tmp_path / "phi.safetensors"))
    for head in (
        load_head("lincir", tmp_path / "plain.pth"),
        load_head("lincir", str(tmp_path / "phi.safetensors")),
        load_head("lincir", sd),
        load_head("lincir", {"epoch": 3, "Phi": sd}),
        load_head("searle", sd, embed_dim=16, token_dim=8),
    ):
        torch.testing.assert_close(head(x), ref, atol=1e-5, rtol=1e-5)


def test_fp16_checkpoint_is_upcast(tmp_path):
    sd = {k: v.half() for k, v in searle_sd(8, 16, 8).items()}
    torch.save({"Phi": sd}, tmp_path / "half.pt")
    head = load_head("searle", tmp_path / "half.pt")
    assert next(head.module.parameters()).dtype == torch.float32
    x = torch.randn(2, 8)
    ref = searle_ref({k: v.float() for k, v in sd.items()}, x)
    torch.testing.assert_close(head(x), ref, atol=1e-4, rtol=1e-4)


def test_save_load_roundtrip(tmp_path):
    sd = pic2word_sd(16, 12, 8)
    save_published("pic2word", sd, tmp_path / "p2w.pt")
    head = load_head("pic2word", tmp_path / "p2w.pt")
    head.template = "a {} photo of *"
    out = head.save(tmp_path / "saved")

    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "pic2word" and cfg["arch"]["middle_dim"] == 12
    assert cfg["origin"] == {"source": str(tmp_path / "p2w.pt"), "sha256": head.sha256}

    for again in (Head.load(out), load_head("pic2word", out)):
        assert again.template == "a {} photo of *" and again.placeholder == "*"
        assert again.weights_sha256 == head.weights_sha256
        assert again.sha256 == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
        x = torch.randn(2, 16)
        torch.testing.assert_close(again(x), head(x))
    with pytest.raises(CheckpointError, match="use kind='pic2word'"):
        load_head("searle", out)


def test_weights_sha256_is_format_independent(tmp_path):
    sd = searle_sd(8, 16, 8)
    torch.save({"Phi": sd}, tmp_path / "a.pt")
    torch.save(sd, tmp_path / "b.pt")
    a, b = load_head("searle", tmp_path / "a.pt"), load_head("searle", tmp_path / "b.pt")
    assert a.sha256 != b.sha256
    assert a.weights_sha256 == b.weights_sha256 == state_dict_sha256(sd)
    c = load_head("searle", searle_sd(8, 16, 8, seed=5))
    assert c.weights_sha256 != a.weights_sha256


def test_config_is_json_recipe(tmp_path):
    torch.save({"Phi": searle_sd(8, 16, 8)}, tmp_path / "phi.pt")
    cfg = load_head("searle", tmp_path / "phi.pt").config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert {"kind", "source", "sha256", "weights_sha256", "template", "placeholder", "preprocess"} <= set(cfg)
    assert cfg["preprocess"] == "targetpad"


# -- wrong files ----------------------------------------------------------------------------------------------------


def test_wrong_checkpoint_names_expected_and_found(tmp_path):
    # a Pic2Word state dict offered as a SEARLE head
    torch.save(pic2word_sd(16, 12, 8), tmp_path / "p2w_plain.pt")
    with pytest.raises(CheckpointError) as e:
        load_head("searle", tmp_path / "p2w_plain.pt")
    msg = str(e.value)
    assert "layers.0.weight" in msg  # an expected key
    assert "layers.0.0.weight [12, 16]" in msg  # a found key with its shape


def test_full_clip_checkpoint_is_not_a_head(tmp_path):
    torch.save({"epoch": 1, "state_dict": {"module.visual.proj": torch.zeros(4, 2)}}, tmp_path / "clip.pt")
    with pytest.raises(CheckpointError) as e:
        load_head("pic2word", tmp_path / "clip.pt")
    assert "'state_dict_img2text'" in str(e.value) and "'state_dict'" in str(e.value)


def test_other_wrapper_gives_kind_hint(tmp_path):
    save_published("pic2word", pic2word_sd(8, 8, 8), tmp_path / "p2w.pt")
    with pytest.raises(CheckpointError, match="use kind='pic2word'"):
        load_head("lincir", tmp_path / "p2w.pt")
    torch.save({"Phi": searle_sd(8, 8, 8)}, tmp_path / "phi.pt")
    with pytest.raises(CheckpointError, match="use kind='searle'|use kind='lincir'"):
        load_head("pic2word", tmp_path / "phi.pt")


def test_shape_mismatch_and_unexpected_keys(tmp_path):
    sd = searle_sd(16, 32, 8)
    sd["layers.3.weight"] = torch.zeros(32, 16)
    with pytest.raises(CheckpointError, match=r"layers\.3\.weight expected \[32, 32\] found \[32, 16\]"):
        load_head("searle", sd)
    sd = searle_sd(16, 32, 8)
    sd["layers.9.weight"] = torch.zeros(2, 2)
    with pytest.raises(CheckpointError, match=r"unexpected layers\.9\.weight \[2, 2\]"):
        load_head("searle", sd)
    sd = searle_sd(16, 32, 8)
    del sd["layers.3.bias"]
    with pytest.raises(CheckpointError, match=r"missing layers\.3\.bias \[32\]"):
        load_head("searle", sd)


def test_dims_are_checked():
    sd = searle_sd(16, 32, 8)
    with pytest.raises(CheckpointError, match="embed_dim=512"):
        load_head("searle", sd, embed_dim=512)
    with pytest.raises(CheckpointError, match="token_dim=16"):
        load_head("searle", sd, token_dim=16)
    head = load_head("searle", sd)
    with pytest.raises(ConfigError, match=r"\[N, 16\]"):
        head(np.zeros((2, 8), dtype=np.float32))
    assert head(np.zeros(16, dtype=np.float32)).shape == (1, 8)


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_head("searle", tmp_path / "junk.pt")
    torch.save({"Phi": searle_sd(4, 4, 4), "args": argparse.Namespace(lr=1.0)}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_head("searle", tmp_path / "pickled.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_head("searle", tmp_path / "junk.safetensors")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="found list"):
        load_head("searle", tmp_path / "list.pt")


def test_missing_file_and_unknown_kind(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist.*hf-hub:"):
        load_head("searle", tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="available: lincir, pic2word, searle"):
        load_head("oti", tmp_path / "nope.pt")
    assert list_heads() == ["lincir", "pic2word", "searle"]


# -- hub --------------------------------------------------------------------------------------------------------------


def test_hf_hub_download_failure_is_actionable(monkeypatch):
    import huggingface_hub

    def offline(repo_id, filename, **kw):
        raise OSError("we are offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ModelNotFoundError) as e:
        load_head("lincir", "hf-hub:navervision/zeroshot-cir-models/lincir_large.pt")
    msg = str(e.value)
    assert "'navervision/zeroshot-cir-models'" in msg and "'lincir_large.pt'" in msg
    assert "cache" in msg and "load_head('lincir', '/path/to/lincir_large.pt')" in msg


def test_hf_hub_source_resolves_through_download(monkeypatch, tmp_path):
    import huggingface_hub

    (tmp_path / "sub").mkdir()
    torch.save({"Phi": searle_sd(8, 16, 8)}, tmp_path / "sub" / "phi.pt")
    seen = {}

    def fake_download(repo_id, filename, **kw):
        seen.update(repo_id=repo_id, filename=filename)
        return str(tmp_path / "sub" / "phi.pt")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    head = load_head("searle", "hf-hub:org/repo/sub/phi.pt")
    assert seen == {"repo_id": "org/repo", "filename": "sub/phi.pt"}
    assert head.source == "hf-hub:org/repo/sub/phi.pt" and head.input_dim == 8
    with pytest.raises(ConfigError, match="hf-hub:org/repo/filename"):
        load_head("searle", "hf-hub:org/only-repo")


def test_import_does_not_need_torch():
    code = (
        "import sys, cir_milvus.heads, cir_milvus.composers.pseudo;"
        "from cir_milvus.composers import list_composers; list_composers();"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
