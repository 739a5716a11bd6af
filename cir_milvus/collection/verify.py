"""Proving, at open, that an encoder of another kind computes the vectors a collection holds.

The recipe comparison (:func:`~cir_milvus.storage.recipe.check_compatible`) trusts what each side records. Two
cases are not covered by it: an ONNX bundle serving a collection that records no bundle id (a torch-built one: the
bundle's ``weights_sha256`` is its manifest's claim, not a hash of the bytes it runs), and any change of backend.
Then :func:`verify_serving_encoder` reads a few stored items whose sources are readable files, re-encodes them with
the serving encoder (which already decodes as the collection records, see
:func:`~cir_milvus.collection.build.adopt_recorded_decode`) and refuses it below the cosine threshold of
:data:`~cir_milvus.encoders.agreement.REENCODE_MIN_COSINE` (:func:`~cir_milvus.encoders.agreement.check_reencode`).

A stored source is the path as it was given to ``add``/``ingest``: a relative one is relative to the folder the
writer ran in, which nothing records. It is tried against the working folder, then the Lite file's folder, then the
open call's ``search_path`` and ``$CIR_MILVUS_PATH`` (:func:`source_bases`). When no stored source is readable here
(bytes or PIL inputs store no path, or the images live on another machine) nothing can be re-encoded: the collection
opens and a warning names the folders tried, says that the encoder is unverified and how to verify it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus.artifacts import PACKAGE_DATA_DIR, SearchPath, search_dirs
from cir_milvus.encoders.agreement import check_reencode
from cir_milvus.encoders.base import Encoder
from cir_milvus.encoders.capabilities import HasPrecision
from cir_milvus.errors import ImageDecodeError
from cir_milvus.images import read_image_file
from cir_milvus.storage.recipe import lite_base_dir
from cir_milvus.storage.store import VectorStore

__all__ = ["SAMPLE", "SCAN", "needs_reencode", "readable_sample", "source_bases", "verify_serving_encoder"]

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


def source_bases(uri: Any, search_path: SearchPath = None) -> list[Path]:
    """The folders a relative stored source is tried against, in order: the working folder, the folder of the Lite
    file at ``uri`` (none for a server), then ``search_path`` and ``$CIR_MILVUS_PATH``."""
    lite = lite_base_dir(uri)
    found = [Path.cwd(), *([lite] if lite is not None else []), *search_dirs(search_path)]
    return [d for d in dict.fromkeys(Path(os.path.abspath(d)) for d in found) if d != PACKAGE_DATA_DIR]


def _read_source(src: str, bases: list[Path]) -> bytes | None:
    candidates = [Path(src)] if os.path.isabs(src) else [b / src for b in bases]
    for path in candidates:
        try:
            return read_image_file(path)  # regular files only, opened non-blocking (a FIFO never blocks)
        except ImageDecodeError:
            continue
    return None


def readable_sample(store: VectorStore, n: int = SAMPLE, scan: int = SCAN, *,
                    bases: list[Path] | None = None) -> tuple[list[Any], list[bytes]]:
    """Up to ``n`` stored ids whose source is a readable regular file here, with the files' bytes (read once).

    Relative sources are tried against each of ``bases`` in turn (default: :func:`source_bases` of the store). Only
    the first ``scan`` rows are looked at; URLs are never fetched.
    """
    if store.fields.source_field is None:
        return [], []
    bases = source_bases(store.uri) if bases is None else bases
    ids: list[Any] = []
    data: list[bytes] = []
    for row in store.query("", output_fields=[store.fields.source_field], limit=scan):
        src = row["source"]
        if not src or "://" in src:
            continue
        content = _read_source(src, bases)
        if content is None:
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


def verify_serving_encoder(store: VectorStore, name: str, stored: Mapping[str, Any], encoder: Encoder, *,
                           search_path: SearchPath = None) -> float | None:
    """Refuse ``encoder`` for collection ``name`` unless a few stored items re-encode to their stored vectors
    (only when :func:`needs_reencode`).

    Args:
        store: the collection's store.
        name: the collection (for messages).
        stored: the collection's recipe ``encoder`` dict.
        encoder: the encoder that will serve it, decoding as the collection records.
        search_path: more folders relative stored sources are tried against (see :func:`source_bases`).

    Returns:
        The smallest cosine, or ``None`` when nothing was checked (no need, or no readable source: logged).

    Raises:
        RecipeMismatchError: a stored item re-encodes below the threshold (see :func:`check_reencode`).
    """
    current = encoder.recipe
    if not needs_reencode(stored, current):
        return None
    bases = source_bases(store.uri, search_path)
    ids, data = readable_sample(store, bases=bases)
    vectors = store.vectors(ids) if ids else {}
    kept = [(v, d) for i, d in zip(ids, data) if (v := vectors.get(i)) is not None]
    if not kept:
        log.warning(
            "collection %r was built by a %s encoder and is opened with a %s one (%s); no stored item's source is "
            "a readable file here (relative sources were tried against %s), so the encoder's weights could not be "
            "checked by re-encoding. Open it once with search_path= naming the folder the images were added from "
            "(or from that folder) to verify the encoder",
            name, stored.get("backend"), current.get("backend"), current.get("location") or current.get("model"),
            ", ".join(str(b) for b in bases))
        return None
    sample = np.stack([v for v, _ in kept])  # [N, D] raw stored vectors
    worst = check_reencode(encoder, [d for _, d in kept], sample,
                           precisions=(str(stored.get("precision") or "fp32"), _precision(encoder, current)),
                           what=f"collection {name!r}")
    log.info("collection %r: %d stored item(s) re-encode with the %s encoder at cosine >= %.6f", name, len(kept),
             current.get("backend"), worst)
    return worst
