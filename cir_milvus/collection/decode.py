"""The record stage's decode step: an image (path, bytes, URL or PIL image) → pixels the encoder takes.

Two outputs, one set of rules (:func:`cir_milvus.images.load_image`, the aspect cap, the preprocessing):

- uint8 ``[S, S, 3]`` at the encoder's size (:func:`decode_uint8`, :func:`decode_batch_uint8`), for encoders that
  take pixels (``encode_pixels`` / ``encode_uint8``); the decode worker processes of :mod:`cir_milvus.ingest.decode`
  run exactly these functions;
- RGB PIL images (:func:`prepare_batch` without a preprocessing config), for encoders that take images only.

Unreadable inputs come back as reasons, never as exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cir_milvus.errors import ImageDecodeError
from cir_milvus.images import MAX_PIXELS, describe, is_url, load_image, read_bytes, strip_name
from cir_milvus.preprocess import PreprocessConfig, decode_size, normalize_uint8, preprocess_image_uint8
from cir_milvus.types import SkipKind

__all__ = ["MAX_ASPECT", "Bad", "DecodedBatch", "cap_aspect", "decode_batch_uint8", "decode_here", "decode_uint8",
           "prepare_batch", "skip_kind_of"]

Bad = tuple[int, SkipKind, str]
"""An input that did not decode: ``(index, kind, reason)``."""

MAX_ASPECT = 32.0
"""Aspect ratios beyond this are centre-cropped to it before preprocessing (bounds resize memory)."""


def cap_aspect(img: Any) -> Any:
    """Centre-crop an image whose aspect ratio exceeds :data:`MAX_ASPECT` to that ratio."""
    w, h = img.size
    if max(w, h) <= MAX_ASPECT * min(w, h):
        return img
    if w > h:
        keep = max(1, int(MAX_ASPECT * h))
        left = (w - keep) // 2
        return img.crop((left, 0, left + keep, h))
    keep = max(1, int(MAX_ASPECT * w))
    top = (h - keep) // 2
    return img.crop((0, top, w, top + keep))


def decode_uint8(src: Any, cfg: PreprocessConfig, max_pixels: int = MAX_PIXELS, allow_urls: bool = False) -> np.ndarray:
    """One image (path, bytes, URL or PIL image) → uint8 ``[S, S, 3]`` ready for :func:`normalize_uint8`.

    Raises:
        ImageDecodeError: unreadable input (the message names the reason).
    """
    img = load_image(_fetched(src, allow_urls), max_pixels=max_pixels, mode=cfg.loading, draft=decode_size(cfg))
    # benchmark images (official loading) are preprocessed exactly as the research code does: no aspect cap
    return preprocess_image_uint8(cap_aspect(img) if cfg.loading == "product" else img, cfg)


def decode_batch_uint8(
    items: list[tuple[int, Any]], cfg: PreprocessConfig, out: np.ndarray, max_pixels: int = MAX_PIXELS,
    allow_urls: bool = False,
) -> tuple[list[int], list[Bad]]:
    """Decode ``(index, source)`` pairs into ``out`` (uint8 ``[>= N, S, S, 3]``); the k-th good image goes to ``out[k]``.

    Returns:
        ``(ok_indices, [(index, kind, reason), ...])``; unreadable inputs are reasons, never exceptions.
    """
    ok: list[int] = []
    bad: list[Bad] = []
    for idx, src in items:
        try:
            out[len(ok)] = decode_uint8(src, cfg, max_pixels, allow_urls)
            ok.append(idx)
        except ImageDecodeError as e:  # describe: the UTF-8 spelling load_image uses
            bad.append((idx, skip_kind_of(e), strip_name(str(e), describe(src))))
        except (OSError, ValueError, MemoryError) as e:  # anything Pillow lets through must not stop the job
            bad.append((idx, SkipKind.CORRUPT, f"cannot decode ({type(e).__name__}: {e})"))
    return ok, bad


def skip_kind_of(e: ImageDecodeError) -> SkipKind:
    """The :class:`~cir_milvus.types.SkipKind` an :class:`ImageDecodeError` was raised with."""
    try:
        return SkipKind(getattr(e, "kind", "other"))
    except ValueError:
        return SkipKind.OTHER


@dataclass
class DecodedBatch:
    """A decoded job: ``pixels[k]`` (uint8 ``[S, S, 3]``) is the image of item ``ok[k]``.

    ``pixels`` may be a view of a shared-memory slot: call :meth:`release` once it has been consumed (normalised).
    """

    ok: list[int]
    pixels: Any
    bad: list[Bad]
    _release: Any = field(default=None, repr=False)

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


def decode_here(items: list[tuple[int, Any]], cfg: PreprocessConfig, max_pixels: int = MAX_PIXELS,
                allow_urls: bool = False) -> DecodedBatch:
    """Decode a batch to uint8 ``[N, S, S, 3]`` in this process (no worker processes)."""
    buf = np.empty((len(items), cfg.size, cfg.size, 3), dtype=np.uint8)  # [N, S, S, 3]
    ok, bad = decode_batch_uint8(items, cfg, buf, max_pixels, allow_urls)
    return DecodedBatch(ok, buf[: len(ok)], bad)


def _fetched(src: Any, allow_urls: bool) -> Any:
    """``src``, or the bytes of the ``http(s)://`` image it names (downloaded only with ``allow_urls``)."""
    if not (isinstance(src, str) and is_url(src)):
        return src
    try:
        return read_bytes(src, allow_urls=allow_urls)
    except OSError as e:
        raise ImageDecodeError(f"download failed ({e})", SkipKind.DOWNLOAD_FAILED) from e


def prepare_batch(
    items: list[tuple[int, Any]], preprocess: dict[str, Any] | None, max_pixels: int = MAX_PIXELS,
    allow_urls: bool = False, loading: str | None = None,
) -> tuple[list[int], Any, list[Bad]]:
    """Decode (and, with a preprocess config, preprocess) one batch in this process.

    Args:
        items: ``(index, path, bytes or PIL image)`` pairs.
        preprocess: ``PreprocessConfig.to_dict()`` of the encoder, or ``None`` to return RGB PIL images.
        max_pixels: decompression-bomb cap.
        allow_urls: fetch ``http(s)://`` sources.
        loading: the image loading mode (:func:`~cir_milvus.images.load_image`) when there is no preprocess config
            (default ``"product"``); with one, the config's ``loading`` decides.

    Returns:
        ``(ok_indices, pixels [N, 3, S, S] float32 or a list of PIL images, [(index, kind, reason), ...])``.
    """
    if preprocess is not None:
        cfg = PreprocessConfig.from_dict(preprocess)
        decoded = decode_here(items, cfg, max_pixels, allow_urls)
        return decoded.ok, normalize_uint8(decoded.pixels, cfg), decoded.bad  # [N, 3, S, S]
    ok: list[int] = []
    out: list[Any] = []
    bad: list[Bad] = []
    for idx, src in items:
        data = src
        try:
            data = _fetched(src, allow_urls)
            out.append(load_image(data, max_pixels=max_pixels, mode=loading or "product"))
            ok.append(idx)
        except ImageDecodeError as e:
            bad.append((idx, skip_kind_of(e), strip_name(str(e), describe(data))))
        except (OSError, ValueError, MemoryError) as e:  # anything Pillow lets through must not stop the job
            bad.append((idx, SkipKind.CORRUPT, f"cannot decode ({type(e).__name__}: {e})"))
    return ok, out, bad
