"""Batch ingestion at scale: parallel decoding, batched encoding, background upserts, resume and retries.

::

    source ──► reader thread ──► decode workers ──► main thread ──► writer thread ──► Milvus
               ids (hash),        (processes:        encoder          byte-chunked
               duplicates,        decode +           (batched)        upserts with
               "already stored?"  preprocess)                         retries/backoff

- **Reader thread**: reads records from the source in batches of ``batch_size``, gives each an id (the content
  hash unless the source names one), drops repeats of an id within the input, asks Milvus once per
  ``lookup_batches`` batches which ids are already stored (those are never decoded or encoded again: resume after a
  crash is a plain re-run), then hands the rest to the decode workers in batches of ``batch_size``.
- **Decode workers** (:class:`cir_milvus.ingest.decode.DecodePool`: ``workers`` processes, ``spawn`` start method):
  read and decode each image with :func:`cir_milvus.images.load_image` (EXIF, modes, pixel cap, first frame; JPEG
  DCT scaling when the encoder's ``preprocess_config.decode`` is ``"draft"``) and pad/resize/crop it to uint8
  ``[S, S, 3]`` (:func:`cir_milvus.preprocess.preprocess_image_uint8`), written into shared memory. Unreadable files
  come back as reasons, never as exceptions. A killed worker is restarted and its batch decoded again; workers exit
  with their parent. Encoders without ``encode_pixels`` (e.g. :class:`~cir_milvus.encoders.fake.FakeEncoder`)
  decode in the reader thread.
- **Main thread**: normalises each batch to float32 ``[N, 3, S, S]`` (:func:`cir_milvus.preprocess.normalize_uint8`)
  and encodes it (``encode_pixels``) while the next batches decode (``prefetch`` batches in flight) and the
  previous one is written.
- **Writer thread**: upserts rows in chunks of at most 16 MB (Milvus refuses RPCs over 64 MB), retrying with
  exponential backoff (capped at 10 s) for up to ``retry_timeout`` seconds when the server drops, so a server
  restart mid-job ends with the exact count. Upserts by id are idempotent: a retried batch never duplicates.

Skipped inputs (zero-byte, truncated, not an image, over the pixel cap, missing, samples without an image) are
counted by reason and written to a JSON Lines skip report as they happen.

Images whose aspect ratio exceeds :data:`MAX_ASPECT` (32:1) are centre-cropped to 32:1 along the long side before
preprocessing: the CLIP transform keeps only the centre square anyway, and the crop bounds the memory of the resize
(a 1×4,000 strip would otherwise be resized to 224×896,000).

Example:
    >>> from cir_milvus import CIRCollection, FakeEncoder  # doctest: +SKIP
    >>> col = CIRCollection.create("./cir.db", "photos", encoder=FakeEncoder())  # doctest: +SKIP
    >>> report = ingest(col, "photos/", skip_report="skipped.jsonl")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus._runtime import openmp_spins
from cir_milvus.collection.decode import MAX_ASPECT, DecodedBatch, decode_here, prepare_batch
from cir_milvus.collection.mixed import check_item_texts, encode_item_texts
from cir_milvus.collection.record import regular_file_reason as _regular_file_reason
from cir_milvus.errors import ConfigError, ImageDecodeError, StorageError
from cir_milvus.images import MAX_PIXELS, content_id, is_url, path_text, strip_name
from cir_milvus.ingest.decode import DecodePool, default_workers, encoder_threads
from cir_milvus.ingest.sources import Record, batched, open_source
from cir_milvus.preprocess import normalize_uint8
from cir_milvus.storage.policy import MetadataError, safe_text
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.store import Skipped

__all__ = ["MAX_ASPECT", "IngestReport", "ingest", "prepare_batch", "skip_kind"]

log = logging.getLogger(__name__)

_DONE = object()


# -- the report -----------------------------------------------------------------------------------------------------


def skip_kind(reason: str) -> str:
    """A short category for a skip reason (for the summary and the skip report)."""
    r = reason.lower()
    for needle, kind in (
        ("broken symlink", "broken_symlink"),
        ("symlink loop", "symlink_loop"),
        ("not a regular file", "not_a_file"),
        ("unsupported format", "unsupported_format"),
        ("empty file", "empty"),
        ("zero width", "empty"),
        ("pixel cap", "too_large"),
        ("not found", "missing"),
        ("no such file", "missing"),
        ("cannot read", "missing"),
        ("no image member", "no_image"),
        ("shard", "corrupt_shard"),
        ("not a readable image", "not_an_image"),
        ("truncated", "corrupt"),
        ("corrupt", "corrupt"),
        ("download", "download_failed"),
        ("invalid id", "invalid_id"),
        ("metadata", "bad_metadata"),
    ):
        if needle in r:
            return kind
    return "other"


@dataclass
class IngestReport:
    """What an :func:`ingest` run did. ``seen == stored + already_stored + duplicates + len(skipped)``.

    Attributes:
        seen: records read from the source.
        stored: rows encoded and written by this run.
        already_stored: ids that were in the collection before (not decoded, not encoded: resume).
        duplicates: records whose id repeats an earlier record of this input (same file twice, same key).
        skipped: unreadable inputs with reasons.
        encoded: images encoded by this run (equals ``stored`` when the job completes).
        retries: storage calls that failed transiently and were retried.
        seconds: wall time.
        skip_report: where the JSON Lines skip report was written (or ``None``).
    """

    seen: int = 0
    stored: int = 0
    already_stored: int = 0
    duplicates: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    encoded: int = 0
    retries: int = 0
    seconds: float = 0.0
    skip_report: str | None = None

    @property
    def images_per_second(self) -> float:
        """Images encoded and stored per second of wall time."""
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(sorted(collections.Counter(skip_kind(s.reason) for s in self.skipped).items()))

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "stored": self.stored, "already_stored": self.already_stored,
                "duplicates": self.duplicates, "skipped": len(self.skipped),
                "skipped_by_reason": self.skipped_by_reason, "encoded": self.encoded, "retries": self.retries,
                "seconds": round(self.seconds, 3), "images_per_second": round(self.images_per_second, 2),
                "skip_report": self.skip_report}

    def summary(self) -> str:
        by = ", ".join(f"{k} {v}" for k, v in self.skipped_by_reason.items())
        lines = [
            f"read {self.seen} records in {self.seconds:.1f}s: stored {self.stored} "
            f"({self.images_per_second:.1f} images/s), already stored {self.already_stored}, "
            f"duplicates in the input {self.duplicates}, skipped {len(self.skipped)}" + (f" ({by})" if by else ""),
        ]
        if self.retries:
            lines.append(f"{self.retries} storage calls were retried after transient failures")
        if self.skipped and self.skip_report:
            lines.append(f"skipped files and reasons: {self.skip_report}")
        return "\n".join(lines)


class _SkipLog:
    """Collects skips into the report and appends them to the JSON Lines file as they happen (thread-safe)."""

    def __init__(self, report: IngestReport, path: str | os.PathLike[str] | None) -> None:
        self.report = report
        self._lock = threading.Lock()
        self._f = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            report.skip_report = str(path)

    def add(self, name: str, reason: str, rid: Any = None) -> None:
        name, reason = safe_text(str(name)), safe_text(str(reason))
        rid = safe_text(rid) if isinstance(rid, str) else rid
        with self._lock:
            self.report.skipped.append(Skipped(name, reason))
            if self._f is not None:
                self._f.write(json.dumps({"source": name, "id": rid, "kind": skip_kind(reason), "reason": reason},
                                         ensure_ascii=False) + "\n")
                self._f.flush()
        log.info("skipped %s: %s", name, reason)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


# -- helpers --------------------------------------------------------------------------------------------------------

def read_check(path: str) -> tuple[str, str | None]:
    """``(path, why it cannot be read)``: only regular files are read."""
    return path, _regular_file_reason(path)


def record_id(rec: Record, store: Any) -> str:
    """The id of a record: the one it names (checked by the store's id policy) or its content hash.

    Raises:
        ImageDecodeError: an invalid id, or a file that cannot be read (the message is the skip reason).
    """
    if rec.id is not None:
        reason = store.check_id(rec.id)
        if reason is not None:
            raise ImageDecodeError(reason)
        return rec.id  # type: ignore[no-any-return]
    src = rec.source
    if isinstance(src, str) and is_url(src):
        rid = hashlib.sha256(f"url:{src}".encode()).hexdigest()[:32]
    else:
        assert src is not None
        if isinstance(src, str):
            _, reason = read_check(src)
            if reason is not None:  # a FIFO / socket / directory: refused, never opened (a FIFO would block)
                raise ImageDecodeError(reason)
        rid = content_id(src)
    reason = store.check_id(rid)  # e.g. an attached collection with INT64 ids: content hashes do not fit
    if reason is not None:
        raise ImageDecodeError(f"{reason}; give every record an id")
    return rid


def record_metadata(rec: Record, store: Any) -> dict[str, Any]:
    """The record's metadata as the store will keep it.

    Raises:
        ImageDecodeError: metadata the store's policy refuses (a cycle, over 64 KB...), as a skip reason.
    """
    try:
        return store.prepare_metadata(dict(rec.metadata))  # type: ignore[no-any-return]
    except (MetadataError, ValueError) as e:
        raise ImageDecodeError(f"bad metadata: {e}") from e


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _DONE


@dataclass
class _Job:
    records: int
    ids: list[str]
    sources: list[str]
    metadata: list[dict[str, Any]]
    names: list[str]
    future: Future[Any] | None = None
    items: list[tuple[int, str | bytes]] = field(default_factory=list)


def _item_texts(encoder: Any, mds: list[dict[str, Any]], column: str) -> tuple[list[str | None], list[Any]]:
    """The item texts of a batch (``column`` of each record's metadata; not a string: no text) and their
    embeddings (mixed galleries, :mod:`cir_milvus.collection.mixed`)."""
    texts = [v if isinstance(v, str) and v.strip() else None for v in (md.get(column) for md in mds)]
    return texts, encode_item_texts(encoder, texts)


def _encode_uint8(encoder: Any, pixels: np.ndarray, cfg: Any) -> Any:
    """Encode uint8 ``[N, S, S, 3]``: on the encoder's device when it can normalise there (torch: pinned-memory copy
    of a quarter of the bytes, scaling on the GPU), else normalised here to float32 ``[N, 3, S, S]``."""
    if hasattr(encoder, "encode_uint8"):
        return encoder.encode_uint8(pixels, normalize=False)
    return encoder.encode_pixels(normalize_uint8(pixels, cfg), normalize=False)


def seal(store: Any, retry: RetryPolicy | None = None) -> None:
    """Flush the collection after a job, so its rows are sealed and indexed before the first search.

    Measured on Milvus Lite right after ingesting 1,000 images (``benchmarks/bench_peers.py`` queries): top-10 search
    took 14-19 ms median and 130-320 ms at worst on the growing segment, 2.7 ms median after a 0.06 s flush. A flush
    that fails is logged, not raised: every row is stored already.
    """
    try:
        store.flush(retry=retry)
    except StorageError as e:
        log.warning("stored every row but could not flush %r (%s); searches scan unsealed rows until Milvus seals "
                    "them", store.name, e)


def _default_workers() -> int:
    return default_workers()


# -- the pipeline ---------------------------------------------------------------------------------------------------


def ingest(
    col: Any,
    source: Any,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    prefetch: int | None = None,
    skip_existing: bool = True,
    skip_report: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry_timeout: float = 300.0,
    allow_urls: bool = False,
    max_pixels: int = MAX_PIXELS,
    root: str | os.PathLike[str] | None = None,
    mp_context: str = "spawn",
    ray_address: str | None = None,
    lookup_batches: int = 8,
    text_column: str | None = None,
) -> IngestReport:
    """Ingest images from a folder, a list file, tar shards or an iterable into a :class:`CIRCollection`.

    Args:
        col: the collection (its encoder and recipe are used).
        source: a folder, a ``.csv``/``.jsonl``/``.parquet`` list, a shard spec (``"data/{00000..00009}.tar"`` or a
            glob), a source object from :mod:`cir_milvus.ingest.sources`, or an iterable of paths / bytes /
            ``(id, source, metadata)`` tuples.
        batch_size: images per encoder batch.
        workers: decode processes (default: one per usable CPU, at most 32, at low priority beside the encoder's
            threads); ``0`` decodes in a thread of this process.
            A worker killed mid-job is restarted and its batch decoded again (the count stays exact).
        prefetch: batches decoded ahead of the encoder (default ``2 × workers``, at least 2).
        skip_existing: do not decode or encode ids already stored (resume). ``False`` re-encodes and overwrites.
        skip_report: write skipped inputs and reasons here as JSON Lines (``{"source", "id", "kind", "reason"}``).
        progress: show a tqdm bar (images/s, ETA, stored / existing / skipped counts).
        retry_timeout: how long storage calls are retried with backoff when Milvus is unavailable.
        allow_urls: fetch ``http(s)://`` images named by a list (refused by default).
        max_pixels: decompression-bomb cap per image.
        root: folder that relative paths in a list file are relative to (default: the list's folder).
        mp_context: multiprocessing start method for the decode workers (``spawn`` is safe with gRPC threads).
        ray_address: run on Ray Data instead (``"auto"``, ``"ray://head:10001"`` or ``"local"``); see
            :func:`cir_milvus.ingest.ray_pipeline.ingest_ray` for the Ray-specific options.
        lookup_batches: batches per "already stored?" call (one Milvus ``get`` for ``batch_size × lookup_batches``
            ids; each read waits for this client's previous writes to become visible).
        text_column: the metadata key holding each item's text (a CSV / Parquet / JSONL column; ``"caption"`` for a
            WebDataset ``key.txt``), embedded into the item-text field of a collection created with
            ``item_text=True`` (mixed galleries; a missing or empty value: an item without text).

    Returns:
        An :class:`IngestReport`; ``report.summary()`` is a human-readable summary.

    Raises:
        ConfigError: bad arguments, or a list naming URLs without ``allow_urls``.
        StorageError: Milvus stayed unavailable for longer than ``retry_timeout``.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    store = col.store
    policy = dataclasses.replace(store.retry, timeout=float(retry_timeout))
    check_item_texts([] if text_column else None, 0, store.fields.text_vector_field is not None, col.name)
    if ray_address is not None and text_column is not None:
        raise ConfigError("text_column= is read by the local pipeline only; drop ray_address= to ingest item texts")
    if ray_address is not None:
        from cir_milvus.ingest.ray_pipeline import ingest_ray

        if workers is not None or prefetch is not None:
            raise ConfigError("workers= and prefetch= size the local pipeline; with ray_address= Ray schedules the "
                              "decode tasks itself: drop them, or call ingest_ray() with num_encoders=, "
                              "num_cpus_per_decoder=...")
        return ingest_ray(col, source, ray_address=ray_address, batch_size=batch_size, skip_existing=skip_existing,
                          skip_report=skip_report, progress=progress, retry_timeout=retry_timeout,
                          allow_urls=allow_urls, max_pixels=max_pixels, root=root)
    src = open_source(source, allow_urls=allow_urls, root=root)
    encoder = col.encoder
    pixel_mode = hasattr(encoder, "encode_pixels") and getattr(encoder, "preprocess_config", None) is not None
    n_workers = _default_workers() if workers is None else int(workers)
    if n_workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    if n_workers and not pixel_mode:
        log.info("%s has no encode_pixels; decoding in-process", type(encoder).__name__)
        n_workers = 0
    depth = prefetch if prefetch is not None else max(2, 2 * n_workers)
    lookup_size = batch_size * max(1, lookup_batches)
    pcfg = encoder.preprocess_config if pixel_mode else None

    report = IngestReport()
    skips = _SkipLog(report, skip_report)
    stop = threading.Event()
    errors: list[BaseException] = []
    decoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
    to_write: queue.Queue[Any] = queue.Queue(maxsize=2)
    try:
        total: int | None = len(src)
    except TypeError:
        total = None
    bar = tqdm(total=total, desc=f"ingest → {col.name}", unit="img", disable=not progress, smoothing=0.1)
    pool = (DecodePool(n_workers, pcfg, batch_size=batch_size, slots=depth + 1, max_pixels=max_pixels,
                       allow_urls=allow_urls, mp_context=mp_context) if n_workers and pcfg is not None else None)
    seen_ids: set[str] = set()
    lock = threading.Lock()

    def on_retry() -> None:
        with lock:
            report.retries += 1

    def postfix() -> None:
        bar.set_postfix(stored=report.stored, existing=report.already_stored, dup=report.duplicates,
                        skipped=len(report.skipped), refresh=False)

    def read() -> None:
        try:
            # ids are looked up for ``lookup_size`` records at a time: one "already stored?" call per lookup chunk.
            # Reads use Session consistency, which waits (~200 ms on a server) for this client's last write to be
            # visible; per 64-image batch that wait capped a 2.3.5 server job at ~250 images/s.
            for chunk in batched(iter(src), lookup_size):
                if stop.is_set():
                    return
                todo = _Job(len(chunk), [], [], [], [])
                raw: list[str | bytes] = []
                with lock:
                    report.seen += len(chunk)
                for rec in chunk:
                    if rec.error is not None or rec.source is None:
                        skips.add(rec.name, rec.error or "no image", rec.id)
                        continue
                    try:
                        rid = record_id(rec, store)
                        md = record_metadata(rec, store)
                    except ImageDecodeError as e:
                        skips.add(rec.name, strip_name(str(e), str(rec.source)), rec.id)
                        continue
                    if rid in seen_ids:
                        with lock:
                            report.duplicates += 1
                        continue
                    seen_ids.add(rid)
                    todo.ids.append(rid)
                    todo.sources.append(path_text(rec.source) if isinstance(rec.source, str) else rec.origin)
                    todo.metadata.append(md)
                    todo.names.append(rec.name)
                    raw.append(rec.source)
                if skip_existing and todo.ids:
                    lookup = list(todo.ids)
                    present = store.existing_ids(lookup, on_retry=on_retry, retry=policy)
                    if present:
                        keep = [i for i, rid in enumerate(todo.ids) if rid not in present]
                        with lock:
                            report.already_stored += len(todo.ids) - len(keep)
                        todo.ids = [todo.ids[i] for i in keep]
                        todo.sources = [todo.sources[i] for i in keep]
                        todo.metadata = [todo.metadata[i] for i in keep]
                        todo.names = [todo.names[i] for i in keep]
                        raw = [raw[i] for i in keep]
                # split into encoder batches; records that need no work count towards the first job's progress
                starts = range(0, len(todo.ids), batch_size) or range(1)
                for n, lo in enumerate(starts):
                    hi = lo + batch_size
                    job = _Job(min(hi, len(todo.ids)) - lo, todo.ids[lo:hi], todo.sources[lo:hi],
                               todo.metadata[lo:hi], todo.names[lo:hi])
                    if n == 0:
                        job.records += len(chunk) - len(todo.ids)
                    if job.ids:
                        job.items = list(enumerate(raw[lo:hi]))
                        job.future = _submit_decode(job.items)
                        if job.future is None:  # stopped while waiting for a free slot
                            return
                    if not _put(decoded, job, stop):
                        return
            _put(decoded, _DONE, stop)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
            stop.set()

    def _submit_decode(items: list[tuple[int, str | bytes]]) -> Future[Any] | None:
        if pool is not None:
            return pool.submit(items, stop)
        fut: Future[Any] = Future()
        if pcfg is not None:
            fut.set_result(decode_here(items, pcfg, max_pixels, allow_urls))
        else:
            fut.set_result(prepare_batch(items, None, max_pixels, allow_urls))
        return fut

    def write() -> None:
        try:
            while True:
                item = _get(to_write, stop)
                if item is _DONE:
                    return
                n, rows = item
                written = 0
                if rows is not None:
                    ids, raw_vecs, sources, mds, names, texts = rows
                    wr = store.upsert(ids, raw_vecs, sources=sources, metadata=mds, on_retry=on_retry, retry=policy,
                                      text_vectors=None if texts is None else texts[1],
                                      texts=None if texts is None else texts[0])
                    written = len(wr.written)
                    for i, sk in wr.skipped:
                        skips.add(names[i], sk.reason, ids[i])
                with lock:
                    report.stored += written
                bar.update(n)
                postfix()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
            stop.set()

    # the encoder keeps every core (the niced decode workers fill its gaps) and does not busy-wait
    if pool is not None and openmp_spins():
        log.info("torch's OpenMP threads spin while they wait, taking cores from the decode workers (torch was "
                 "imported before cir_milvus); set OMP_WAIT_POLICY=PASSIVE before importing torch for faster ingest "
                 "(see cir_milvus._runtime)")
    threads_before = (encoder.set_threads(encoder_threads(), spin=False)
                      if pool is not None and hasattr(encoder, "set_threads") else None)
    start = time.perf_counter()
    reader = threading.Thread(target=read, name="cir-ingest-reader", daemon=True)
    writer = threading.Thread(target=write, name="cir-ingest-writer", daemon=True)
    reader.start()
    writer.start()
    try:
        while True:
            job = _get(decoded, stop)
            if job is _DONE:
                break
            rows: tuple[Any, ...] | None = None
            if job.future is not None:
                got: DecodedBatch | None = None
                if pcfg is not None:
                    got = job.future.result()
                    ok, bad, data = got.ok, got.bad, got.pixels  # uint8 [N, S, S, 3]
                else:
                    ok, data, bad = job.future.result()
                for idx, reason in bad:
                    skips.add(job.names[idx], reason, job.ids[idx])
                if ok:
                    raw_vecs = (_encode_uint8(encoder, data, pcfg) if pcfg is not None
                                else encoder.encode_images(data, batch_size=batch_size, normalize=False))
                    raw_vecs = np.asarray(raw_vecs, dtype=np.float32)  # [N, D]
                    rows = ([job.ids[i] for i in ok], raw_vecs, [job.sources[i] for i in ok],
                            [job.metadata[i] for i in ok], [job.names[i] for i in ok],
                            None if text_column is None else _item_texts(encoder, [job.metadata[i] for i in ok],
                                                                         text_column))
                    with lock:
                        report.encoded += len(ok)
                if got is not None:
                    got.release()  # the shared-memory slot is free once the pixels are encoded
            if not _put(to_write, (job.records, rows), stop):
                break
        _put(to_write, _DONE, stop)
        writer.join()
        if not errors and report.stored:
            seal(store, policy)
    except BaseException as e:
        errors.insert(0, e)
    finally:
        if errors:
            stop.set()
        reader.join(timeout=30)
        writer.join(timeout=30)
        if pool is not None:
            pool.close()
        if threads_before is not None:
            encoder.set_threads(threads_before[0], spin=threads_before[1])
        postfix()
        bar.close()
        skips.close()
        report.seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    log.info("%s", report.summary())
    return report


def iter_records(source: Any, *, allow_urls: bool = False) -> Iterable[Record]:
    """The records a source yields (for inspection and tests)."""
    return iter(open_source(source, allow_urls=allow_urls))
