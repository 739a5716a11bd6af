"""THE write path's parts: records checked by the id and metadata policy, rows cut into byte-bounded chunks, and a
chunk Milvus refuses for a permanent reason bisected down to its bad rows (one bad row never costs another)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.errors import ConfigError, PermanentStorageError
from cir_milvus.storage.policy import MetadataError, source_text
from cir_milvus.storage.results import Id, Skipped, WriteResult

__all__ = ["MAX_UPSERT_BYTES", "chunk_rows_by_bytes", "prepare_rows", "write_rows"]

MAX_UPSERT_BYTES = 16 * 1024 * 1024
"""Upper bound of one upsert RPC (Milvus refuses messages over 64 MB)."""

Send = Callable[[list[dict[str, Any]]], None]
"""Upserts one chunk of rows (through the store's retry policy), raising a classified StorageError."""


def chunk_rows_by_bytes(rows: Sequence[dict[str, Any]], max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[list[int]]:
    """Split rows into chunks (lists of row indices) whose estimated payload stays under ``max_bytes``."""
    chunk: list[int] = []
    size = 0
    for i, row in enumerate(rows):
        b = 64
        for v in row.values():
            if isinstance(v, list):
                b += 4 * len(v)
            elif isinstance(v, str):
                b += len(v.encode("utf-8", "replace"))
            elif isinstance(v, dict):
                b += len(json.dumps(v))
            else:
                b += 8
        if chunk and size + b > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += b
    if chunk:
        yield chunk


def check_shapes(name: str, dim: int, ids: Sequence[Id], vectors: np.ndarray, sources: Sequence[Any] | None,
                 metadata: Sequence[Any] | None) -> np.ndarray:
    """``vectors`` as float32 ``[N, dim]`` with one id, source and metadata entry per row, or ConfigError."""
    vecs = np.asarray(vectors, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[1] != dim:
        raise ConfigError(f"vectors must be [N, {dim}] for {name!r}; got {vecs.shape}")
    n = len(ids)
    if vecs.shape[0] != n:
        raise ConfigError(f"{n} ids for {vecs.shape[0]} vectors")
    if sources is not None and len(sources) != n:
        raise ConfigError(f"{len(sources)} sources for {n} ids")
    if metadata is not None and len(metadata) != n:
        raise ConfigError(f"{len(metadata)} metadata entries for {n} ids")
    return vecs


def prepare_rows(
    vecs: np.ndarray,
    ids: Sequence[Id],
    sources: Sequence[Any] | None,
    metadata: Sequence[Mapping[str, Any] | None] | None,
    *,
    normalized: bool,
    default_norm: float | None,
    check_id: Callable[[Any], str | None],
    make_row: Callable[[Id, np.ndarray, float, Any, Mapping[str, Any] | None], dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[int], WriteResult]:
    """The rows to write (with their input positions) and a result holding the records refused by the policy."""
    n = len(ids)
    result = WriteResult()
    norms = np.linalg.norm(vecs, axis=1)  # [N]
    if normalized:
        unit = vecs
        norms = np.full(n, default_norm or 1.0, dtype=np.float32)
    else:
        unit = vecs / np.maximum(norms[:, None], 1e-12)  # [N, D]
    rows: list[dict[str, Any]] = []
    index: list[int] = []
    for i in range(n):
        src = sources[i] if sources is not None else ""
        rid = ids[i]
        reason = check_id(rid)
        known = rid if reason is None else None  # an invalid id is not reported as an id
        if reason is None and not np.all(np.isfinite(vecs[i])):
            reason = "the embedding contains NaN or inf"
        if reason is None:
            try:
                rows.append(make_row(rid, unit[i], float(norms[i]), src, metadata[i] if metadata is not None else None))
                index.append(i)
                continue
            except (MetadataError, ValueError) as e:
                reason = f"bad metadata: {e}"
        result.skipped.append((i, Skipped(source_text(src) or "<row>", reason, known)))
    return rows, index, result


def write_rows(send: Send, rows: list[dict[str, Any]]) -> dict[int, str | None]:
    """Upsert ``rows`` in byte-bounded chunks; returns ``{row index: None or the refusal reason}``."""
    out: dict[int, str | None] = {}
    for chunk in chunk_rows_by_bytes(rows):
        out.update(_write_chunk(send, rows, chunk))
    return out


def _write_chunk(send: Send, rows: list[dict[str, Any]], which: list[int]) -> dict[int, str | None]:
    try:
        send([rows[j] for j in which])
        return dict.fromkeys(which)
    except PermanentStorageError as e:  # a refused row; transient and collection-level failures propagate
        if len(which) == 1:
            msg = str(e)
            return {which[0]: f"refused by Milvus: {msg[msg.find(': ') + 2:] if ': ' in msg else msg}"[:500]}
        mid = len(which) // 2  # bisect: one bad row must not cost the others
        return {**_write_chunk(send, rows, which[:mid]), **_write_chunk(send, rows, which[mid:])}
