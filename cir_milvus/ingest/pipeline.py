"""Batch ingestion at scale: the record stage (:mod:`cir_milvus.collection.stage`) over parallel decoding,
batched encoding and background upserts.

::

    source ──► reader thread ──► decode workers ──► main thread ──► writer thread ──► Milvus
               admit: id,         (processes:        encode           the store's one
               metadata, dedupe,  decode +           (batched)        write path (chunks,
               "already stored?"  preprocess)                         retries/backoff)

- **Reader** (:meth:`_Run.read`): reads records in chunks of ``batch_size × lookup_batches`` and admits them
  (:meth:`RecordStage.admit`: one "already stored?" call per chunk; stored ids are never decoded or encoded again,
  so resuming after a crash is a plain re-run), then submits encoder batches to the decoder.
- **Decode workers** (:class:`cir_milvus.ingest.decode.DecodePool`: ``workers`` processes, ``spawn`` start method)
  run :func:`cir_milvus.collection.decode.decode_batch_uint8` into shared memory. A killed worker is restarted and
  its batch decoded again; workers exit with their parent. Encoders without ``encode_pixels`` (e.g.
  :class:`~cir_milvus.encoders.fake.FakeEncoder`) decode in the reader thread.
- **Main thread** (:meth:`_Run.encode_loop`): :meth:`RecordStage.encode` while the next batches decode
  (``prefetch`` batches in flight) and the previous one is written.
- **Writer** (:meth:`_Run.write`): :meth:`RecordStage.write`, the store's upsert (chunks of at most 16 MB, retried
  with backoff for up to ``retry_timeout`` seconds, so a server restart mid-job ends with the exact count).

Skipped inputs are counted by :class:`~cir_milvus.types.SkipKind` and written to a JSON Lines skip report as they
happen. Images whose aspect ratio exceeds :data:`MAX_ASPECT` (32:1) are centre-cropped to it before preprocessing.

Example:
    >>> from cir_milvus import CIRCollection, FakeEncoder  # doctest: +SKIP
    >>> col = CIRCollection.create("./cir.db", "photos", encoder=FakeEncoder())  # doctest: +SKIP
    >>> report = ingest(col, "photos/", skip_report="skipped.jsonl")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from cir_milvus._runtime import openmp_spins
from cir_milvus.collection.decode import MAX_ASPECT, DecodedBatch, prepare_batch
from cir_milvus.collection.mixed import check_item_texts
from cir_milvus.collection.report import IngestReport, SkipLog
from cir_milvus.collection.stage import Batch, Record, RecordStage, seal
from cir_milvus.errors import ConfigError
from cir_milvus.ingest.decode import DecodePool, default_workers, encoder_threads
from cir_milvus.ingest.options import IngestOptions, RayOptions
from cir_milvus.ingest.ray_pipeline import ingest_ray
from cir_milvus.ingest.sources import batched, open_source, warn_textless

__all__ = ["MAX_ASPECT", "IngestOptions", "IngestReport", "RayOptions", "ingest", "prepare_batch"]

log = logging.getLogger(__name__)

_DONE = object()


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


def _default_workers() -> int:
    return default_workers()


class _Run:
    """One :func:`ingest` run: a reader and a writer thread around the encode loop, over one :class:`RecordStage`.

    The threads share only the queues, the stop event and the stage (whose counters are locked); the first error
    of any of them stops the others and is raised by :meth:`run`.
    """

    def __init__(self, stage: RecordStage, records: Iterable[Record], pool: DecodePool | None, depth: int,
                 lookup_size: int, bar: Any) -> None:
        self.stage = stage
        self.records = records
        self.pool = pool
        self.lookup_size = lookup_size
        self.bar = bar
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.decoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.to_write: queue.Queue[Any] = queue.Queue(maxsize=2)

    def _guard(self, step: Any) -> None:
        try:
            step()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.errors.append(e)
            self.stop.set()

    def read(self) -> None:
        """Admit records chunk by chunk (one "already stored?" call each) and submit encoder batches to decode.

        Reads use Session consistency, which waits (~200 ms on a server) for this client's last write to be
        visible; one lookup per 64-image batch capped a 2.3.5 server job at ~250 images/s, hence the chunks.
        """
        first = 0
        for chunk in batched(iter(self.records), self.lookup_size):
            if self.stop.is_set():
                return
            admitted = self.stage.admit(chunk, first)
            first += len(chunk)
            for job in admitted.split(self.stage.batch_size):
                future = self._submit(job) if job.ids else None
                if (job.ids and future is None) or not _put(self.decoded, (job, future), self.stop):
                    return  # stopped while waiting for a free slot
        _put(self.decoded, _DONE, self.stop)

    def _submit(self, job: Batch) -> Future[DecodedBatch] | None:
        if self.pool is not None:
            return self.pool.submit(job.items(), self.stop)
        fut: Future[DecodedBatch] = Future()
        fut.set_result(self.stage.decode(job))
        return fut

    def encode_loop(self) -> None:
        """Encode decoded batches in this thread (the encoder's) and hand the rows to the writer."""
        while True:
            item = _get(self.decoded, self.stop)
            if item is _DONE:
                break
            job, future = item
            rows = self.stage.encode(job, future.result()) if future is not None else None
            if not _put(self.to_write, (job.records, rows), self.stop):
                return
        _put(self.to_write, _DONE, self.stop)

    def write(self) -> None:
        """Upsert encoded rows and advance the progress bar."""
        while True:
            item = _get(self.to_write, self.stop)
            if item is _DONE:
                return
            records, rows = item
            self.stage.write(rows)
            self.bar.update(records)
            self.postfix()

    def postfix(self) -> None:
        r = self.stage.report
        self.bar.set_postfix(stored=r.stored, existing=r.already_stored, dup=r.duplicates, skipped=len(r.skipped),
                             refresh=False)

    def run(self) -> None:
        """Start the threads, run the encode loop here, and wait for the writer; raise the first error."""
        reader = threading.Thread(target=self._guard, args=(self.read,), name="cir-ingest-reader", daemon=True)
        writer = threading.Thread(target=self._guard, args=(self.write,), name="cir-ingest-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            self.encode_loop()
            writer.join()
        except BaseException as e:
            self.errors.insert(0, e)
        finally:
            if self.errors:
                self.stop.set()
            reader.join(timeout=30)
            writer.join(timeout=30)
            self.postfix()
        if self.errors:
            raise self.errors[0]


def _check_args(batch_size: int, workers: int | None, options: IngestOptions, ray: RayOptions | None) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if workers is not None and workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    if ray is not None and (workers is not None or options.prefetch is not None):
        raise ConfigError("workers= and prefetch= size the local pipeline; with ray= Ray schedules the decode tasks "
                          "itself: drop them, or size Ray's stages with RayOptions(num_encoders=..., "
                          "num_cpus_per_decoder=...)")


def _decode_pool(encoder: Any, stage: RecordStage, workers: int | None, depth: int, batch_size: int,
                 options: IngestOptions) -> DecodePool | None:
    n_workers = _default_workers() if workers is None else int(workers)
    if n_workers and stage.pixels is None:
        log.info("%s has no encode_pixels; decoding in-process", type(encoder).__name__)
        return None
    if not n_workers or stage.pixels is None:
        return None
    return DecodePool(n_workers, stage.pixels, batch_size=batch_size, slots=depth + 1, max_pixels=options.max_pixels,
                      allow_urls=options.allow_urls, mp_context=options.mp_context)


def _encoder_threads(encoder: Any, pool: DecodePool | None) -> tuple[int, bool] | None:
    """Give the encoder every core (the niced decode workers fill its gaps), not busy-waiting; returns the old
    setting to restore."""
    if pool is None or not hasattr(encoder, "set_threads"):
        return None
    if openmp_spins():
        log.info("torch's OpenMP threads spin while they wait, taking cores from the decode workers (torch was "
                 "imported before cir_milvus); set OMP_WAIT_POLICY=PASSIVE before importing torch for faster ingest "
                 "(see cir_milvus._runtime)")
    before: tuple[int, bool] = encoder.set_threads(encoder_threads(), spin=False)
    return before


def ingest(
    col: Any,
    source: Any,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    skip_existing: bool = True,
    skip_report: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry_timeout: float = 300.0,
    options: IngestOptions | None = None,
    ray: RayOptions | None = None,
) -> IngestReport:
    """Ingest images from a folder, a list file, tar shards or an iterable into a :class:`CIRCollection`.

    Args:
        col: the collection (its encoder and store are used).
        source: a folder, a ``.csv``/``.jsonl``/``.parquet`` list, a shard spec (``"data/{00000..00009}.tar"`` or a
            glob), a source object from :mod:`cir_milvus.ingest.sources`, or an iterable of paths / bytes /
            ``(id, source, metadata)`` tuples.
        batch_size: images per encoder batch.
        workers: decode processes (default: one per usable CPU, at most 32, at low priority beside the encoder's
            threads); ``0`` decodes in a thread of this process. A worker killed mid-job is restarted and its batch
            decoded again (the count stays exact).
        skip_existing: do not decode or encode ids already stored (resume). ``False`` re-encodes and overwrites.
        skip_report: write skipped inputs and reasons here as JSON Lines (``{"source", "id", "kind", "reason"}``).
        progress: show a tqdm bar (images/s, ETA, stored / existing / skipped counts).
        retry_timeout: how long storage calls are retried with backoff when Milvus is unavailable.
        options: the less common knobs (:class:`IngestOptions`: ``prefetch``, ``allow_urls``, ``max_pixels``,
            ``root``, ``mp_context``, ``lookup_batches``, ``text_column``: item texts of a mixed gallery).
        ray: run on Ray Data instead (:class:`RayOptions`, e.g. ``RayOptions(address="auto")``); see
            :func:`cir_milvus.ingest.ray_pipeline.ingest_ray`.

    Returns:
        An :class:`~cir_milvus.collection.report.IngestReport` (the report ``add()`` returns too);
        ``report.summary()`` is a human-readable summary.

    Raises:
        ConfigError: bad arguments, or a list naming URLs without ``allow_urls``; a ``text_column`` with a collection
            that has no item-text field, a folder source, a list file without that column (all before anything is
            stored), or a text value that is not a string (naming the row; rows before it are stored, a re-run
            resumes).
        StorageError: Milvus stayed unavailable for longer than ``retry_timeout``.
    """
    from tqdm.auto import tqdm

    opts = options or IngestOptions()
    _check_args(batch_size, workers, opts, ray)
    if ray is not None:
        return ingest_ray(col, source, batch_size=batch_size, skip_existing=skip_existing, skip_report=skip_report,
                          progress=progress, retry_timeout=retry_timeout, options=opts, ray=ray)
    check_item_texts([] if opts.text_column else None, 0, col.store.fields.text_vector_field is not None, col.name)
    src = open_source(source, allow_urls=opts.allow_urls, root=opts.root, text_column=opts.text_column)
    policy = dataclasses.replace(col.store.retry, timeout=float(retry_timeout))
    report = IngestReport()
    skips = SkipLog(report, skip_report)
    stage = RecordStage(col.store, col.encoder, skips, skip_existing=skip_existing, retry=policy,
                        batch_size=batch_size, max_pixels=opts.max_pixels, allow_urls=opts.allow_urls,
                        item_texts=opts.text_column is not None)
    depth = opts.prefetch if opts.prefetch is not None else max(2, 2 * (_default_workers() if workers is None
                                                                          else int(workers)))
    try:
        total: int | None = len(src)
    except TypeError:
        total = None
    bar = tqdm(total=total, desc=f"ingest → {col.name}", unit="img", disable=not progress, smoothing=0.1)
    pool = _decode_pool(col.encoder, stage, workers, depth, batch_size, opts)
    threads_before = _encoder_threads(col.encoder, pool)
    start = time.perf_counter()
    try:
        _Run(stage, src, pool, depth, batch_size * max(1, opts.lookup_batches), bar).run()
        if report.stored:
            seal(col.store, policy)
    finally:
        if pool is not None:
            pool.close()
        if threads_before is not None:
            col.encoder.set_threads(threads_before[0], spin=threads_before[1])
        bar.close()
        skips.close()
        stage.finish(start)
    log.info("%s", report.summary())
    warn_textless(report, opts.text_column)
    return report


def iter_records(source: Any, *, allow_urls: bool = False) -> Iterable[Record]:
    """The records a source yields (for inspection and tests)."""
    return iter(open_source(source, allow_urls=allow_urls))
