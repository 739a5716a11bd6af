"""Decoding user images: paths, bytes or PIL images → RGB PIL images, with clear errors for bad files.

Two loading modes (``load_image(..., mode=...)``), recorded in the encoder's preprocessing config because they
change the vectors:

- ``"product"`` (default, ingestion and queries of user data) follows the rules below.
- ``"official"`` decodes exactly as the research code's data sets do (``PIL.Image.open(path)`` handed to the
  transform): no EXIF rotation, the image keeps its own PIL mode, and the preprocessing converts it to RGB where
  the official transform does (``Image.convert("RGB")``: transparency is dropped, not composited). Used by the
  evaluation runner on benchmark images. The decoding guards (missing/empty/corrupt files, pixel cap, first
  frame of animations) apply to both.

Rules of the ``"product"`` mode:

- EXIF orientation is applied (``ImageOps.exif_transpose``).
- Any mode becomes RGB: palette and LA/RGBA images with transparency are composited on white, CMYK is
  converted, 16-bit greyscale (``I;16``/``I``) is scaled to 8 bits.
- Animated images (GIF, WebP, APNG) use their first frame.
- Images with more than :data:`MAX_PIXELS` pixels are refused (decompression-bomb guard).
- Zero-byte, truncated and non-image files raise :class:`~cir_milvus.errors.ImageDecodeError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cir_milvus.errors import ConfigError, ImageDecodeError
from cir_milvus.types import ImageInput

MAX_PIXELS = 89_478_485
"""Pixel cap per image (Pillow's own default bomb threshold); larger images are refused."""

__all__ = ["MAX_PIXELS", "content_id", "describe", "load_image", "to_rgb"]


def describe(image: ImageInput) -> str:
    """A short name for an image input, for messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, bytes):
        return f"<{len(image)} bytes>"
    if isinstance(image, Image.Image):
        return f"<PIL {image.mode} {image.size[0]}x{image.size[1]}>"
    return f"<{type(image).__name__}>"


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (transparency composited on white, 16-bit scaled to 8-bit)."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(
    image: ImageInput, max_pixels: int = MAX_PIXELS, *, name: str | None = None, mode: str = "product",
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image input into a PIL image.

    Args:
        image: a path, encoded bytes or a PIL image.
        max_pixels: refuse images with more pixels than this.
        name: what error messages call the image (default: the path, or "<N bytes>").
        mode: ``"product"`` (EXIF rotation, any mode to RGB with transparency on white) or ``"official"`` (the
            research code's ``Image.open``: no EXIF rotation, the PIL mode kept for the preprocessing to convert).
        draft: decode JPEGs at a reduced scale (DCT-domain 1/2, 1/4, 1/8) as long as both sides stay at least this
            ``(width, height)`` (``Image.draft``; see :func:`cir_milvus.preprocess.decode_size`). Other formats and
            PIL inputs are unaffected.

    Returns:
        A fully loaded image: RGB with EXIF orientation applied (``"product"``), or as decoded (``"official"``).

    Raises:
        ImageDecodeError: the file is missing, empty, truncated, not an image, or too large.
        ConfigError: the input is not a path, bytes or PIL image, or ``mode`` is unknown.
    """
    if mode not in ("product", "official"):
        raise ConfigError(f"image loading mode must be 'product' or 'official', got {mode!r}")
    name = name or describe(image)
    if isinstance(image, Image.Image):
        img = image
    else:
        if isinstance(image, (str, os.PathLike)):
            path = Path(image)
            if not path.is_file():
                raise ImageDecodeError(f"image file not found: {path}")
            data = path.read_bytes()
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
        else:
            raise ConfigError(f"images must be file paths, bytes or PIL images; got {type(image).__name__}")
        if not data:
            raise ImageDecodeError(f"{name}: empty file (0 bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                if img.size[0] * img.size[1] > max_pixels:
                    raise ImageDecodeError(
                        f"{name}: {img.size[0]}x{img.size[1]} exceeds the pixel cap of {max_pixels:,} "
                        "(possible decompression bomb); resize it or raise max_pixels"
                    )
                if getattr(img, "is_animated", False):
                    img.seek(0)
                if draft is not None and img.format == "JPEG":
                    img.draft(img.mode, draft)  # DCT-domain scaling; the mode is kept
                img.load()
        except ImageDecodeError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            # Pillow refuses before our own check can run (its limit: MAX_IMAGE_PIXELS, an error at twice that)
            raise ImageDecodeError(f"{name}: exceeds the pixel cap, possible decompression bomb ({e})") from e
        except UnidentifiedImageError as e:
            raise ImageDecodeError(f"{name}: not a readable image ({e})") from e
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageDecodeError(f"{name}: corrupt or truncated image ({e})") from e
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageDecodeError(f"{name}: {img.size[0]}x{img.size[1]} exceeds the pixel cap of {max_pixels:,}")
    if img.size[0] == 0 or img.size[1] == 0:
        raise ImageDecodeError(f"{name}: image has zero width or height")
    if mode == "official":
        return img
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
        pass
    return to_rgb(img)


def content_id(image: ImageInput) -> str:
    """A deterministic id from the image's content: sha256 of the file bytes (or of the pixels of a PIL image).

    Re-adding the same file gives the same id, so upserts never duplicate it.
    """
    h = hashlib.sha256()
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            raise ImageDecodeError(f"cannot read {path}: {e}") from e
    elif isinstance(image, (bytes, bytearray, memoryview)):
        h.update(bytes(image))
    elif isinstance(image, Image.Image):
        h.update(f"{image.mode}:{image.size}".encode())
        h.update(image.tobytes())
    else:
        raise ConfigError(f"images must be file paths, bytes or PIL images; got {type(image).__name__}")
    return h.hexdigest()[:32]
