"""The device-side pixel paths of the torch encoder, run on CPU: uint8 normalisation in torch and torchvision JPEG
decoding. The same code runs on CUDA in ``tests/gpu/test_gpu_pixels.py``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("torchvision")

from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.images import load_image  # noqa: E402
from cir_milvus.ingest.decode import decode_uint8  # noqa: E402
from cir_milvus.preprocess import normalize_uint8  # noqa: E402


@pytest.fixture(scope="module")
def enc() -> TorchEncoder:
    return TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")


def _jpeg(w: int, h: int, seed: int) -> bytes:
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([(xx * (c + 1) + yy * (3 - c)) % 256 for c in range(3)], -1).astype(np.float32)  # [H, W, 3]
    img += rng.normal(0, 8, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_normalising_uint8_on_the_device_equals_the_numpy_path(enc: TorchEncoder) -> None:
    u8 = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    ref = normalize_uint8(u8, enc.preprocess_config)
    np.testing.assert_allclose(enc.normalize_on_device(u8).numpy(), ref, atol=1e-5)
    a = enc.encode_uint8(u8)
    b = enc.encode_pixels(ref)
    assert np.abs(a - b).max() < 1e-5


def test_torchvision_jpeg_decode_is_close_to_the_exact_path(enc: TorchEncoder) -> None:
    data = [_jpeg(320, 200, 1), _jpeg(150, 260, 2)]
    u8 = enc.decode_jpegs(data)
    assert tuple(u8.shape) == (2, 64, 64, 3) and str(u8.dtype) == "torch.uint8"
    exact = np.stack([decode_uint8(d, enc.preprocess_config) for d in data])
    assert np.abs(u8.numpy().astype(int) - exact.astype(int)).mean() < 3.0  # another IDCT and resize kernel
    cos = (enc.encode_uint8(u8) * enc.encode_uint8(exact)).sum(1)
    assert cos.min() > 0.99
    assert load_image(data[0]).size == (320, 200)
