"""Shared fixtures: the fake encoder, a random-weight demo-architecture torch encoder, and image factories."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cir_milvus.encoders.fake import FakeEncoder


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    """A deterministic 32-d fake encoder (cheap; a fresh one per test)."""
    return FakeEncoder(dim=32, seed=0)


@pytest.fixture(scope="session")
def tiny_torch_encoder():  # type: ignore[no-untyped-def]
    """The demo architecture (``cir-demo-tiny``, 128-d) with random weights on CPU, built once per session.

    Treat it as read-only: tests that need to change it must build their own.
    """
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    import torch

    from cir_milvus.encoders.torch import TorchEncoder

    torch.manual_seed(0)
    return TorchEncoder("cir-demo-tiny", None, device="cpu")


def _noise_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "CMYK": 4}[mode]
    arr = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    if channels == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr, mode=mode)


@pytest.fixture
def make_image() -> Callable[..., Image.Image]:
    """Factory: ``make_image(width=32, height=24, mode="RGB", seed=0)`` → a seeded random-noise PIL image."""

    def make(width: int = 32, height: int = 24, mode: str = "RGB", seed: int = 0) -> Image.Image:
        return _noise_image(width, height, mode, seed)

    return make


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    """Factory: ``image_bytes(img, format="PNG", **save_kwargs)`` → the encoded file contents."""

    def encode(img: Image.Image, format: str = "PNG", **save_kwargs: object) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=format, **save_kwargs)
        return buf.getvalue()

    return encode


@pytest.fixture
def image_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``image_file(img_or_bytes, name="img.png", **save_kwargs)`` → a file under ``tmp_path``."""

    def write(content: Image.Image | bytes, name: str = "img.png", **save_kwargs: object) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path, **save_kwargs)
        return path

    return write
