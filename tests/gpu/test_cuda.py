"""CUDA paths on a real GPU: the torch encoder in fp16/bf16, composers on the GPU, Milvus search with a CUDA encoder,
training recipes under autocast, and onnxruntime's CUDA provider. Marked ``gpu``: deselected by default, and every
test skips cleanly where torch sees no CUDA device (``pytest -m gpu`` on a GPU machine runs them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.models.demo import demo_heads  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

TEXTS = ["make it green", "the same shape but larger", "on a white background", "a star instead"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.fixture(scope="module")
def world_images() -> list:
    world = SyntheticWorld(seed=3, instances=1)
    return [it.render(world.image_size) for it in world.gallery()[:48]]


@pytest.fixture(scope="module")
def cpu_encoder() -> TorchEncoder:
    return TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_encoder_matches_cpu_fp32(precision: str, cpu_encoder: TorchEncoder, world_images) -> None:  # type: ignore[no-untyped-def]
    gpu = TorchEncoder("cir-demo-tiny", "cir-demo", device="cuda", precision=precision)
    assert gpu.device.startswith("cuda") and gpu.precision == precision
    assert next(gpu.model.parameters()).is_cuda
    img, ref = gpu.encode_images(world_images), cpu_encoder.encode_images(world_images)
    txt, ref_t = gpu.encode_texts(TEXTS), cpu_encoder.encode_texts(TEXTS)
    assert img.dtype == np.float32 and img.shape == ref.shape
    floor = 0.999 if precision == "fp16" else 0.995  # bf16 keeps 8 mantissa bits
    assert _cos(img, ref).min() > floor and _cos(txt, ref_t).min() > floor
    out = gpu.encode_pixels(cpu_encoder.pixels(world_images[:4]), device_output=True)
    assert isinstance(out, torch.Tensor) and out.is_cuda  # stays on the GPU for GPU composers


def test_default_cuda_precision_is_fp16() -> None:
    assert TorchEncoder("cir-demo-tiny", None, device="cuda").precision == "fp16"


@pytest.mark.parametrize("name", ["slerp", "lincir", "pic2word"])
def test_composers_on_gpu_match_cpu(name: str, cpu_encoder: TorchEncoder, world_images) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.composers import get_composer

    params = {} if name == "slerp" else {"head": str(demo_heads()[name])}
    comp = get_composer(name, **params)
    gpu = TorchEncoder("cir-demo-tiny", "cir-demo", device="cuda")
    refs = world_images[:4]
    q_gpu = comp.compose(gpu, gpu.encode_images(refs, normalize=False), TEXTS)
    q_cpu = comp.compose(cpu_encoder, cpu_encoder.encode_images(refs, normalize=False), TEXTS)
    assert q_gpu.shape == q_cpu.shape == (4, cpu_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(q_gpu, axis=1), 1.0, atol=1e-3)
    assert _cos(q_gpu, q_cpu).min() > 0.995


def test_collection_search_with_cuda_encoder_matches_cpu(tmp_path: Path, cpu_encoder: TorchEncoder, world_images) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus import CIRCollection

    ids = [f"img-{i}" for i in range(len(world_images))]
    gpu = TorchEncoder("cir-demo-tiny", "cir-demo", device="cuda")
    col = CIRCollection.create(str(tmp_path / "gpu.db"), "g", encoder=gpu, index="FLAT")
    col.add(world_images, ids=ids)
    ref = CIRCollection.create(str(tmp_path / "cpu.db"), "c", encoder=cpu_encoder, index="FLAT")
    ref.add(world_images, ids=ids)
    for i, text in enumerate(TEXTS):
        got = [h.id for h in col.search(world_images[i], text, k=5)]
        want = [h.id for h in ref.search(world_images[i], text, k=5)]
        assert got[0] == want[0] and len(set(got) & set(want)) >= 4
    col.close()
    ref.close()


@pytest.mark.parametrize("kind", ["lincir", "pic2word", "tat", "rtd"])
def test_recipes_train_on_cuda_under_autocast(kind: str, tmp_path: Path) -> None:
    from cir_milvus.train.config import load_config
    from cir_milvus.train.lincir import LinCIRConfig, LinCIRRecipe
    from cir_milvus.train.loop import run
    from cir_milvus.train.pic2word import Pic2WordConfig, Pic2WordRecipe
    from cir_milvus.train.rtd import RTDConfig, RTDRecipe
    from cir_milvus.train.tat import TATConfig, TATRecipe

    if kind == "tat":
        pytest.importorskip("peft")
    tiny = {"batch_size": 16, "progress": False, "repeat_batch": True, "seed": 0, "device": "cuda", "steps": 12,
            "lr": 1e-3, "warmup": 0}
    classes = {"lincir": (LinCIRConfig, LinCIRRecipe), "pic2word": (Pic2WordConfig, Pic2WordRecipe),
               "tat": (TATConfig, TATRecipe), "rtd": (RTDConfig, RTDRecipe)}
    extra: dict = {}
    if kind == "rtd":
        extra = {"head": str(demo_heads()["lincir"]), "lr": 1e-4}
    if kind in ("tat", "rtd"):
        extra["grad_checkpointing"] = True
    cfg_cls, recipe_cls = classes[kind]
    cfg = load_config(cfg_cls, None, {**tiny, **extra})
    recipe = recipe_cls(cfg)
    assert recipe.precision.device == "cuda"
    assert recipe.precision.amp_dtype == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    res = run(recipe, cfg, tmp_path)
    first, last = np.mean(res.losses[:3]), np.mean(res.losses[-3:])
    assert last < first and all(np.isfinite(res.losses))
    assert res.samples_per_s > 0 and (tmp_path / "checkpoint.pt").is_file()
    assert res.summary()["device"].startswith("cuda (") and "autocast" in res.device


def test_ort_cuda_provider_matches_torch(tmp_path: Path, cpu_encoder: TorchEncoder, world_images) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
    from cir_milvus.encoders.onnx import OrtEncoder
    from cir_milvus_export import export_bundle

    bundle = export_bundle(cpu_encoder, tmp_path / "bundle")
    enc = OrtEncoder(bundle, device="cuda")
    assert "CUDAExecutionProvider" in enc.providers
    assert _cos(enc.encode_images(world_images[:8]), cpu_encoder.encode_images(world_images[:8])).min() > 0.999
