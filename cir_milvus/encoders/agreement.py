"""Does this encoder compute what a collection's vectors were computed with? Re-encode a few sources and compare.

Checksums prove which files an encoder loaded; they cannot prove that an ONNX bundle was exported from the weights
its manifest names (the manifest is the bundle's own claim). When a collection built by one backend is opened with
another (a torch-built collection served from a bundle), the collection re-encodes a few stored items whose
sources are readable and compares with their stored vectors: every cosine must reach the threshold of the less
precise side (:data:`REENCODE_MIN_COSINE`), else the encoder is refused.

Example:
    >>> reencode_threshold("fp32", "int8")
    0.999
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.encoders.base import Encoder
from cir_milvus.errors import ConfigError, RecipeMismatchError
from cir_milvus.types import ImageInput

__all__ = ["REENCODE_MIN_COSINE", "check_reencode", "reencode_cosines", "reencode_threshold"]

REENCODE_MIN_COSINE: Mapping[str, float] = {"fp32": 0.9999, "fp16": 0.9999, "bf16": 0.999, "int8": 0.999}
"""The smallest cosine between a stored vector and its source re-encoded, by precision: fp32 and fp16 at the export's
own parity threshold, bf16 and int8 looser. Measured on the demo model (cir-demo-tiny, 16 noise images, 2-core
CPU): torch fp32 against its bundles re-encodes to cosine ≥ 0.99999994 (fp32), 0.9999999 (fp16), 0.99987 (int8);
a bundle whose weights carry Gaussian noise of 3 % of their spread gives 0.99981 (refused at fp32), 1 % gives
0.99998 (accepted: such a change moves vectors less than int8 quantisation does)."""


def reencode_threshold(*precisions: str) -> float:
    """The threshold of the least precise of ``precisions`` (unknown names count as int8, the loosest).

    Raises:
        ConfigError: no precision given.
    """
    if not precisions:
        raise ConfigError("reencode_threshold needs at least one precision ('fp32', 'fp16', 'bf16' or 'int8')")
    loosest = REENCODE_MIN_COSINE["int8"]
    return min(REENCODE_MIN_COSINE.get(str(p), loosest) for p in precisions)


def reencode_cosines(encoder: Encoder, sources: Sequence[ImageInput], stored: np.ndarray) -> np.ndarray:
    """Cosine of each stored vector ``[N, D]`` with its source re-encoded by ``encoder`` (``[N]`` float32).

    Raises:
        ConfigError: ``sources`` and ``stored`` differ in length, or the dimensions differ.
    """
    ref = np.asarray(stored, dtype=np.float32)
    if ref.ndim != 2 or len(ref) != len(sources):
        raise ConfigError(f"got {len(sources)} sources for stored vectors of shape {list(ref.shape)}")
    new = np.asarray(encoder.encode_images(list(sources), normalize=True), dtype=np.float32)  # [N, D] unit rows
    if new.shape != ref.shape:
        raise ConfigError(f"the encoder makes {list(new.shape)} vectors, the stored ones are {list(ref.shape)}")
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    return np.asarray((new * ref).sum(axis=1), dtype=np.float32)  # [N]


def check_reencode(encoder: Encoder, sources: Sequence[ImageInput], stored: np.ndarray, *,
                   precisions: Sequence[str] = ("fp32",), what: str = "the collection") -> float:
    """Refuse ``encoder`` unless every source re-encodes to its stored vector within the threshold.

    Args:
        encoder: the encoder to check (decoding as the collection records).
        sources: a few stored items' images (paths, bytes or PIL).
        stored: their stored vectors ``[N, D]``.
        precisions: the precisions of both sides (the looser threshold applies, :func:`reencode_threshold`).
        what: names the collection in the message.

    Returns:
        The smallest cosine.

    Raises:
        RecipeMismatchError: an item re-encodes below the threshold (the message gives both numbers).
        ConfigError: no sources (say so to the caller: nothing can be checked).
    """
    if not len(sources):
        raise ConfigError(f"no stored item of {what} has a readable source, so the encoder cannot be checked by "
                          "re-encoding")
    cos = reencode_cosines(encoder, sources, stored)
    worst, threshold = float(cos.min()), reencode_threshold(*precisions)
    if not worst >= threshold:  # NaN (a broken encoder) is refused too: it compares False
        checked, why, fix = _checked(encoder.recipe)
        raise RecipeMismatchError(
            f"{what} was not encoded by this encoder's weights: re-encoding {len(cos)} stored item(s) with {checked} "
            f"gives cosine {worst:.4f} with the stored vectors, below {threshold} ({'/'.join(precisions)}); {why}. "
            f"{fix}, or re-ingest the collection with this encoder"
        )
    return worst


def _checked(recipe: Mapping[str, Any]) -> tuple[str, str, str]:
    """What was re-encoded with (for the message), why it can disagree, and what to do instead of re-ingesting."""
    backend = str(recipe.get("backend") or "unknown")
    if backend == "onnx" or recipe.get("bundle_sha256"):
        where = str(recipe.get("location") or recipe.get("model") or "").removeprefix("bundle:")
        return (f"the ONNX bundle {where!r}" if where else "the ONNX bundle",
                "its manifest claims weights it was not exported from, or it was exported from other weights",
                "Re-export the bundle from the collection's weights")
    name = f"model {recipe.get('model')!r}" + (f" (pretrained {recipe['pretrained']!r})"
                                                if recipe.get("pretrained") else "")
    if backend == "torch":
        return (f"the torch {name}", "its weights are not the ones the collection's vectors were computed with",
                "Open the collection with the encoder its recipe records (no model= or encoder=)")
    return (f"the {backend} encoder ({name})", "it does not compute the collection's vectors",
            "Open the collection with the encoder its recipe records (no model= or encoder=)")
