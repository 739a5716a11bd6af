"""The add path: ids, decode (skipping bad files with reasons), batched encoding, byte-chunked upserts."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cir_milvus.errors import ConfigError, ImageDecodeError
from cir_milvus.images import content_id, describe, load_image, path_text, read_image_file
from cir_milvus.types import ImageInput

__all__ = ["AddResult", "Skipped", "chunk_rows_by_bytes"]

log = logging.getLogger(__name__)

MAX_UPSERT_BYTES = 16 * 1024 * 1024
"""Upper bound of one upsert RPC (Milvus refuses messages over 64 MB)."""


@dataclass(frozen=True)
class Skipped:
    """An input that was not stored, and why."""

    source: str
    reason: str


class AddResult(list[str]):
    """The ids stored by :meth:`CIRCollection.add` (a list), plus a report.

    Attributes:
        skipped: inputs that could not be read, with reasons.
        already_stored: ids that were present before and were not re-encoded.
        encoded: number of images encoded in this call.
        seconds: wall time.
    """

    def __init__(self, ids: Sequence[str] = ()) -> None:
        super().__init__(ids)
        self.skipped: list[Skipped] = []
        self.already_stored: list[str] = []
        self.encoded = 0
        self.seconds = 0.0

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"stored {len(self)} ({self.encoded} encoded, {len(self.already_stored)} already stored), "
            f"skipped {len(self.skipped)}, {self.images_per_second:.1f} images/s"
        )


@dataclass
class PreparedBatch:
    ids: list[str] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)


def source_name(image: ImageInput) -> str:
    return path_text(image) if isinstance(image, (str, os.PathLike)) else ""  # valid UTF-8, lossless


def resolve_ids(images: Sequence[ImageInput], ids: Sequence[str] | None, result: AddResult) -> list[str | None]:
    """User ids (validated) or content hashes; ``None`` where the image cannot be read (reported in result)."""
    if ids is not None:
        if len(ids) != len(images):
            raise ConfigError(f"ids has {len(ids)} entries but there are {len(images)} images")
        bad = [i for i in ids if not isinstance(i, str) or not i or len(i) > 512]
        if bad:
            raise ConfigError(f"ids must be non-empty strings of at most 512 characters; got {bad[0]!r}")
        return list(ids)
    out: list[str | None] = []
    for im in images:
        try:
            out.append(content_id(im))
        except ImageDecodeError as e:
            result.skipped.append(Skipped(describe(im), str(e)))
            out.append(None)
    return out


def read_paths(images: Sequence[ImageInput]) -> list[ImageInput]:
    """File paths replaced by their bytes (read once, for both the content id and the decode); a file that cannot be
    read stays a path, so the id step reports it."""
    out: list[ImageInput] = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            try:
                out.append(read_image_file(im))  # never blocks on a FIFO
                continue
            except ImageDecodeError:
                pass
        out.append(im)
    return out


def decode_batch(
    images: Sequence[ImageInput], ids: Sequence[str], metadata: Sequence[dict[str, Any]], result: AddResult,
    names: Sequence[ImageInput] | None = None,
) -> PreparedBatch:
    """Decode images; unreadable ones are logged and recorded in ``result.skipped``.

    ``names``: the inputs as the caller gave them (paths), when ``images`` holds their bytes (:func:`read_paths`);
    messages and the stored ``source`` use them.
    """
    batch = PreparedBatch()
    for im, i, md, name in zip(images, ids, metadata, names if names is not None else images):
        try:
            pil = load_image(im, name=describe(name))
        except ImageDecodeError as e:
            log.warning("skipping %s: %s", describe(name), e)
            result.skipped.append(Skipped(describe(name), str(e)))
            continue
        batch.ids.append(i)
        batch.images.append(pil)
        batch.sources.append(source_name(name))
        batch.metadata.append(md)
    return batch


def make_rows(batch: PreparedBatch, raw: np.ndarray) -> list[dict[str, Any]]:
    """Rows with the L2-normalised vector and the raw norm (pseudo-token heads need the raw embedding)."""
    norms = np.linalg.norm(raw, axis=1)
    vecs = raw / np.maximum(norms[:, None], 1e-12)
    return [
        {"id": i, "vector": v.astype(np.float32).tolist(), "norm": float(n), "source": s[:2048], "metadata": md}
        for i, v, n, s, md in zip(batch.ids, vecs, norms, batch.sources, batch.metadata)
    ]


def row_bytes(row: dict[str, Any]) -> int:
    return 4 * len(row["vector"]) + len(row["id"]) + len(row["source"]) + len(json.dumps(row["metadata"])) + 64


def chunk_rows_by_bytes(rows: list[dict[str, Any]], max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[list[dict[str, Any]]]:
    """Split rows into chunks whose estimated payload stays under ``max_bytes``."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        b = row_bytes(row)
        if chunk and size + b > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += b
    if chunk:
        yield chunk


def with_retries(fn: Callable[[], Any], what: str, retries: int = 5, base_delay: float = 0.5) -> Any:
    """Call ``fn`` retrying transient failures with exponential backoff (a server restart mid-ingest)."""
    from cir_milvus.errors import StorageError

    for attempt in range(retries + 1):
        try:
            return fn()
        except StorageError as e:
            if attempt == retries:
                raise
            delay = base_delay * 2**attempt
            log.warning("%s failed (%s); retrying in %.1fs (%d/%d)", what, e, delay, attempt + 1, retries)
            time.sleep(delay)
    raise AssertionError("unreachable")
