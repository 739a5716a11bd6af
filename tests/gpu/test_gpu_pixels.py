"""GPU pixel paths: nvJPEG decoding, normalisation on the device from pinned memory, fp16, ingestion with a CUDA
encoder. Marked ``gpu``; skips where torch sees no CUDA device. The same code is checked on CPU in
``tests/unit/test_device_pixels.py``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("torchvision")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.ingest.decode import decode_uint8  # noqa: E402
from cir_milvus.preprocess import normalize_uint8  # noqa: E402


def _jpegs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:480, 0:640]
        img = np.stack([(xx * (c + 1) + yy * (i % 5 + 1)) % 256 for c in range(3)], -1) + rng.normal(0, 6, (480, 640, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def gpu_enc() -> TorchEncoder:
    return TorchEncoder("cir-demo-tiny", "cir-demo", device="cuda")


def test_nvjpeg_decode_matches_the_cpu_path(gpu_enc: TorchEncoder) -> None:
    data = _jpegs(8)
    u8 = gpu_enc.decode_jpegs(data)
    assert u8.device.type == "cuda" and tuple(u8.shape) == (8, 64, 64, 3)
    exact = np.stack([decode_uint8(d, gpu_enc.preprocess_config) for d in data])
    cos = (gpu_enc.encode_uint8(u8) * gpu_enc.encode_uint8(exact)).sum(1)
    assert cos.min() > 0.99


def test_device_normalisation_in_fp16_matches_cpu_fp32(gpu_enc: TorchEncoder) -> None:
    cpu = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")
    u8 = np.stack([decode_uint8(d, cpu.preprocess_config) for d in _jpegs(16)])
    a = gpu_enc.encode_uint8(u8)
    b = cpu.encode_pixels(normalize_uint8(u8, cpu.preprocess_config))
    assert gpu_enc.precision == "fp16"
    assert (a * b).sum(1).min() > 0.999


def test_ingest_with_a_cuda_encoder_stores_every_image(tmp_path: Path, gpu_enc: TorchEncoder) -> None:
    from cir_milvus import CIRCollection
    from cir_milvus.ingest import ingest

    paths = []
    for i, d in enumerate(_jpegs(40)):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(d)
        paths.append(p)
    col = CIRCollection.create(str(tmp_path / "gpu.db"), "gpu", encoder=gpu_enc)
    rep = ingest(col, [str(p) for p in paths], batch_size=16, progress=False)
    assert rep.stored == 40 and len(col) == 40
