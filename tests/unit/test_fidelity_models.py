"""Fidelity of the backbone: open_clip's pretrained config decides the activation and the preprocessing.

open_clip 3.x builds ``ViT-B-32`` + ``openai`` with plain GELU (it only warns "QuickGELU mismatch"), while OpenAI
CLIP and every official ZS-CIR method run QuickGELU. The "download" of the tag is served here from a local file of
random weights (no network), and the result is compared with a QuickGELU model built independently from open_clip's
own ``ViT-B-32-quickgelu`` config and the same file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cir_milvus.errors import ModelNotFoundError, RecipeMismatchError
from cir_milvus.models.spec import resolve_model
from cir_milvus.storage.recipe import Recipe, check_compatible

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")


def _noise(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def openai_b32_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random ViT-B-32 weights (fp16 on disk to halve the file) standing in for the OpenAI checkpoint."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu")
    path = tmp_path_factory.mktemp("weights") / "open_clip_pytorch_model.bin"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


@pytest.fixture
def serve_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, openai_b32_file: Path) -> list[str]:
    """Serve open_clip's Hugging Face download of a tag from a local hub cache holding the random-weights file.

    The file goes where ``huggingface_hub`` keeps a downloaded repo (``models--ORG--NAME/snapshots/REV/FILE`` with
    ``refs/main``) and the hub is offline, so the real download path runs end to end without a network. Records the
    repo ids open_clip asked for.
    """
    import huggingface_hub
    import huggingface_hub.constants as hf_constants
    import open_clip.pretrained as pretrained

    cache = tmp_path / "hub"
    for tag_model in ("ViT-B-32",):
        repo = str(open_clip.get_pretrained_cfg(tag_model, "openai")["hf_hub"]).strip("/")
        root = cache / f"models--{repo.replace('/', '--')}"
        rev = "0" * 40
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(rev)
        snap = root / "snapshots" / rev
        snap.mkdir(parents=True)
        (snap / "open_clip_pytorch_model.bin").write_bytes(openai_b32_file.read_bytes())
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked: list[str] = []
    real = huggingface_hub.hf_hub_download

    def recording_download(repo_id: str, filename: str, **kw: object) -> str:
        asked.append(repo_id)
        return str(real(repo_id=repo_id, filename=filename, **kw))  # type: ignore[arg-type]

    monkeypatch.setattr(pretrained, "hf_hub_download", recording_download)
    return asked


def test_openai_tag_builds_quickgelu_and_matches_an_independent_quickgelu_model(
    serve_hub: list[str], openai_b32_file: Path
) -> None:
    from open_clip.transformer import QuickGELU

    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.hashing import file_sha256

    # the reference transform (decode="exact"); filterwarnings=error: no "QuickGELU mismatch" either
    enc = TorchEncoder("ViT-B-32", "openai", device="cpu", decode="exact")
    assert serve_hub, "the weights must come through open_clip's tag download"
    assert enc.recipe["weights_sha256"] == file_sha256(openai_b32_file)  # the served file's content
    acts = {type(b.mlp.gelu) for b in enc.model.visual.transformer.resblocks}
    acts |= {type(b.mlp.gelu) for b in enc.model.transformer.resblocks}
    assert acts == {QuickGELU}
    assert enc.recipe["activation"] == "quick_gelu"

    ref = open_clip.create_model("ViT-B-32-quickgelu", pretrained=str(openai_b32_file)).eval()
    pc = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    ref_transform = open_clip.image_transform(224, is_train=False, mean=pc["mean"], std=pc["std"],
                                              resize_mode=pc["resize_mode"], interpolation=pc["interpolation"])
    images = [_noise(300, 225, 1), _noise(225, 301, 2)]
    texts = ["a photo of a dog", "a red car under $50"]
    pixels = torch.stack([ref_transform(im) for im in images])
    with torch.no_grad():
        want_img = ref.encode_image(pixels).numpy()
        want_txt = ref.encode_text(open_clip.get_tokenizer("ViT-B-32")(texts)).numpy()
        for block in ref.visual.transformer.resblocks:  # what open_clip alone builds for the tag: plain GELU
            block.mlp.gelu = torch.nn.GELU()
        gelu_img = ref.encode_image(pixels).numpy()
    got_img = enc.encode_images(images, normalize=False)
    got_txt = enc.encode_texts(texts, normalize=False)
    np.testing.assert_allclose(got_img, want_img, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(got_txt, want_txt, atol=2e-4, rtol=1e-4)
    assert np.abs(gelu_img - want_img).max() > 1e-3  # the check can tell the activations apart


def test_tags_normalise_like_open_clip() -> None:
    assert resolve_model("ViT-B-32", "LAION2B-S34B-B79K").pretrained == "laion2b_s34b_b79k"
    assert resolve_model("ViT-B-32", "OpenAI").pretrained == "openai"
    assert resolve_model("ViT-B/32", "openai").model == "ViT-B-32"
    with pytest.raises(ModelNotFoundError, match="laion2b_s34b_b79k"):
        resolve_model("ViT-B-32", "laion2b-s99b")


def test_activation_mismatch_is_refused_on_open() -> None:
    stored = Recipe(encoder={"backend": "torch", "model": "ViT-B-32", "pretrained": "openai", "weights_sha256": None,
                             "dim": 512, "preprocess": {"size": 224}})  # written before activations were recorded
    current = {**stored.encoder, "activation": "quick_gelu"}
    with pytest.raises(RecipeMismatchError, match="activation"):
        check_compatible("c", stored, current)
    check_compatible("c", stored, {**stored.encoder, "activation": "gelu"})  # what open_clip built then
    quick = Recipe(encoder={**stored.encoder, "model": "ViT-B-32-quickgelu"})
    check_compatible("c", quick, {**quick.encoder, "activation": "quick_gelu"})


@pytest.mark.parametrize("resize_mode", ["squash", "longest", "shortest"])
def test_open_clip_preprocess_cfg_is_honoured(tmp_path: Path, resize_mode: str) -> None:
    """A model whose config says squash/longest (SigLIP, DFN, CLIPA style) gets open_clip's own eval transform."""
    from cir_milvus.encoders.torch import TorchEncoder

    cfg = json.loads((Path(__file__).parents[2] / "cir_milvus/models/model_configs/cir-demo-tiny.json").read_text())
    folder = tmp_path / "m"
    folder.mkdir()
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear",
           "resize_mode": resize_mode, "fill_color": 7}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": pre}))
    torch.manual_seed(1)
    torch.save(open_clip.model.CLIP(**cfg).state_dict(), folder / "open_clip_pytorch_model.bin")
    enc = TorchEncoder(f"local-dir:{folder}", device="cpu")
    pc = enc.preprocess_config
    assert (pc.resize_mode, pc.interpolation, pc.mean) == (resize_mode, "bilinear", (0.5, 0.5, 0.5))
    # the default decode mode: reduce only where the shortcut applies, so squash/longest models record exact
    assert pc.decode == ("reduce" if resize_mode == "shortest" else "exact")
    enc = enc.with_decode("exact")  # the reference transform
    from open_clip.transform import PreprocessCfg, image_transform_v2

    official = image_transform_v2(PreprocessCfg(**enc.model.visual.preprocess_cfg), is_train=False)
    for i, (w, h) in enumerate([(100, 61), (61, 100), (333, 257), (64, 64), (17, 90)]):
        img = _noise(w, h, seed=i)
        np.testing.assert_allclose(enc.pixels([img])[0], official(img).numpy(), atol=1e-5)


def test_local_file_activation_from_metadata_or_argument(tmp_path: Path) -> None:
    """A fine-tune of OpenAI weights saved by our trainers keeps QuickGELU on reload (safetensors metadata)."""
    from safetensors.torch import save_file

    from cir_milvus.encoders.torch import TorchEncoder

    torch.manual_seed(2)
    sd = {k: v.contiguous() for k, v in TorchEncoder("cir-demo-tiny", None, device="cpu").model.state_dict().items()}
    tagged, plain = tmp_path / "tuned.safetensors", tmp_path / "plain.safetensors"
    save_file(sd, str(tagged), metadata={"format": "pt", "activation": "quick_gelu"})
    save_file(sd, str(plain), metadata={"format": "pt"})
    assert TorchEncoder("cir-demo-tiny", str(tagged), device="cpu").recipe["activation"] == "quick_gelu"
    assert TorchEncoder("cir-demo-tiny", str(plain), device="cpu").recipe["activation"] == "gelu"
    forced = TorchEncoder("cir-demo-tiny", str(plain), device="cpu", quick_gelu=True)
    assert forced.recipe["activation"] == "quick_gelu"
