"""Proving, at open, that an encoder of another kind computes the vectors a collection holds.

The recipe comparison (:func:`~cir_milvus.storage.recipe.check_compatible`) trusts what each side records. Two
cases are not covered by it: an ONNX bundle serving a collection that records no bundle id (a torch-built one: the
bundle's ``weights_sha256`` is its manifest's claim, not a hash of the bytes it runs), and any change of backend.
Then :func:`verify_serving_encoder` reads a few stored items whose sources are readable files, re-encodes them with
the serving encoder (which already decodes as the collection records, see
:func:`~cir_milvus.collection.build.adopt_recorded_decode`) and refuses it below the cosine threshold of
:data:`~cir_milvus.encoders.agreement.REENCODE_MIN_COSINE` (:func:`~cir_milvus.encoders.agreement.check_reencode`).

When no stored source is readable here (bytes or PIL inputs store no path, or the images live on another machine)
nothing can be re-encoded: the collection opens and a warning says that the encoder is unverified and how to verify
it (run where the sources are readable).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from cir_milvus.encoders.agreement import check_reencode
from cir_milvus.encoders.base import Encoder
from cir_milvus.encoders.capabilities import HasPrecision
from cir_milvus.errors import ImageDecodeError
from cir_milvus.images import read_image_file
from cir_milvus.storage.store import VectorStore

__all__ = ["SAMPLE", "SCAN", "needs_reencode", "readable_sample", "verify_serving_encoder"]

log = logging.getLogger(__name__)

SAMPLE = 4
"""Stored items re-encoded when an encoder of another kind opens a collection."""
SCAN = 64
"""Stored rows looked at to find :data:`SAMPLE` readable sources."""


def needs_reencode(stored: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether the recipes alone cannot tell that ``current`` computes ``stored``'s vectors: the encoder is an ONNX
    bundle and the collection records no bundle id, or the backends differ. Two bundle ids are compared by
    :func:`~cir_milvus.storage.recipe.check_compatible` instead."""
    if stored.get("bundle_sha256") and current.get("bundle_sha256"):
        return False  # both sides are bundles: their content ids decide
    if current.get("bundle_sha256"):
        return True
    return stored.get("backend") != current.get("backend")


def readable_sample(store: VectorStore, n: int = SAMPLE, scan: int = SCAN) -> tuple[list[Any], list[bytes]]:
    """Up to ``n`` stored ids whose source is a readable regular file here, with the files' bytes (read once).

    Only the first ``scan`` rows are looked at; URLs are never fetched.
    """
    if store.fields.source_field is None:
        return [], []
    ids: list[Any] = []
    data: list[bytes] = []
    for row in store.query("", output_fields=[store.fields.source_field], limit=scan):
        src = row["source"]
        if not src or "://" in src:
            continue
        try:
            content = read_image_file(src)  # regular files only, opened non-blocking (a FIFO never blocks)
        except ImageDecodeError:
            continue
        ids.append(row["id"])
        data.append(content)
        if len(ids) == n:
            break
    return ids, data


def _precision(encoder: Encoder, recipe: Mapping[str, Any]) -> str:
    # an encoder that says no precision (HasPrecision) and a recipe that records none mean fp32
    own = encoder.precision if isinstance(encoder, HasPrecision) else None
    return str(own or recipe.get("precision") or "fp32")


def verify_serving_encoder(store: VectorStore, name: str, stored: Mapping[str, Any], encoder: Encoder) -> float | None:
    """Refuse ``encoder`` for collection ``name`` unless a few stored items re-encode to their stored vectors
    (only when :func:`needs_reencode`).

    Args:
        store: the collection's store.
        name: the collection (for messages).
        stored: the collection's recipe ``encoder`` dict.
        encoder: the encoder that will serve it, decoding as the collection records.

    Returns:
        The smallest cosine, or ``None`` when nothing was checked (no need, or no readable source: logged).

    Raises:
        RecipeMismatchError: a stored item re-encodes below the threshold (see :func:`check_reencode`).
    """
    current = encoder.recipe
    if not needs_reencode(stored, current):
        return None
    ids, data = readable_sample(store)
    vectors = store.vectors(ids) if ids else {}
    kept = [(v, d) for i, d in zip(ids, data) if (v := vectors.get(i)) is not None]
    if not kept:
        log.warning(
            "collection %r was built by a %s encoder and is opened with a %s one (%s); no stored item's source is "
            "a readable file here, so the encoder's weights could not be checked by re-encoding. Open it once where "
            "the images are readable (the stored paths, relative to the working folder) to verify the encoder",
            name, stored.get("backend"), current.get("backend"), current.get("location") or current.get("model"))
        return None
    sample = np.stack([v for v, _ in kept])  # [N, D] raw stored vectors
    worst = check_reencode(encoder, [d for _, d in kept], sample,
                           precisions=(str(stored.get("precision") or "fp32"), _precision(encoder, current)),
                           what=f"collection {name!r}")
    log.info("collection %r: %d stored item(s) re-encode with the %s encoder at cosine >= %.6f", name, len(kept),
             current.get("backend"), worst)
    return worst
