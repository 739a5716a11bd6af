"""Decoding for ingestion: images → uint8 pixels at the encoder's size, in worker processes that survive a crash.

::

    submit(items) ──► dispatcher thread ──► worker process k ──► shared-memory slot (uint8 [B, S, S, 3])
                        (assigns jobs,        decode, pad,          ──► DecodedBatch(ok, pixels view, bad)
                         watches sentinels)   resize, crop             (release() frees the slot)

- **Work per image** (:func:`decode_uint8`): read the bytes (or download a URL when allowed), decode with
  :func:`cir_milvus.images.load_image` (EXIF, modes, pixel cap, first frame; with ``decode="draft"`` a JPEG is
  decoded at 1/2, 1/4 or 1/8 scale in the DCT domain when it is large enough), cap the aspect ratio at
  :data:`MAX_ASPECT`, then :func:`cir_milvus.preprocess.preprocess_image_uint8`. Normalisation to float32
  (:func:`cir_milvus.preprocess.normalize_uint8`) happens in the consumer, so workers hand over 1 byte per channel
  instead of 4, written once into shared memory (no pickling of pixels).
- **The pool** (:class:`DecodePool`): one duplex pipe per worker; a dispatcher thread sends each job to an idle
  worker together with the name of a free shared-memory slot and waits on the pipes and the process sentinels.
  When a worker dies (kill -9, the OOM killer, a crashing codec) its job is re-queued and the worker restarted;
  a job that killed workers :data:`MAX_JOB_ATTEMPTS` times, or any job once restarts are used up, is decoded in
  the dispatcher thread. Nothing waits without a timeout, so a dead worker can never hang the caller.
- **Workers die with their parent**: ``PR_SET_PDEATHSIG`` on Linux plus a thread polling ``os.getppid()``, so a
  kill -9 of the CLI leaves no decode worker (and hence no resource tracker) behind.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import types
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from cir_milvus.collection.decode import MAX_ASPECT, Bad, DecodedBatch, cap_aspect, decode_batch_uint8, decode_uint8
from cir_milvus.errors import ConfigError
from cir_milvus.images import MAX_PIXELS
from cir_milvus.preprocess import PreprocessConfig

__all__ = ["DECODE_NICE", "MAX_ASPECT", "MAX_JOB_ATTEMPTS", "DecodePool", "DecodedBatch", "cap_aspect",
           "decode_batch_uint8", "decode_uint8", "default_workers", "encoder_threads", "usable_cpus"]

log = logging.getLogger(__name__)

MAX_JOB_ATTEMPTS = 2
"""Worker deaths one job may cause before it is decoded in the parent instead."""
_POLL_S = 0.2


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2


DECODE_NICE = 10
"""Niceness of the decode workers: the encoder's threads take a core back from a worker when both want it."""
MAX_DEFAULT_WORKERS = 32

_START_LOCK = threading.Lock()


def _start_without_main(process: Any) -> None:
    """Start a decode worker that runs cir_milvus code only, never the parent's ``__main__``.

    The ``spawn`` start method re-runs the parent's main script in every child (as ``__mp_main__``) so that
    functions defined there can be unpickled; a script that calls ``ingest()`` at module level, without an
    ``if __name__ == "__main__":`` guard, would then start its whole job again in each worker. A decode worker's
    target lives in this module and needs nothing of the script, so while it starts ``sys.modules["__main__"]`` is a
    bare module (no file, no spec: nothing for the child to import). The swap lasts for ``start()`` only, under a
    lock.
    """
    with _START_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            process.start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def encoder_threads(cpus: int | None = None) -> int:
    """Intra-op threads for the encoder beside the decode workers: every usable core.

    The decode workers run at :data:`DECODE_NICE`, so the encoder's threads win a contended core and the workers
    fill whatever the encoder leaves idle. Measured on the 2-core dev CPU (``benchmarks/bench_peers.py``): giving the
    encoder only the cores the workers leave halved ViT-B-32 ingest (10.4 vs 15.5 images/s), because a
    decode-bound worker core then sits idle while the encoder is the bottleneck.
    """
    return max(1, cpus if cpus is not None else usable_cpus())


def default_workers(cpus: int | None = None) -> int:
    """Decode processes for this machine: one per usable core (1 to :data:`MAX_DEFAULT_WORKERS`), at low priority.

    The workers share the cores with the encoder (see :func:`encoder_threads`): with a cheap encoder (the demo
    model) decoding is the bottleneck and every core decodes; with a costly one (ViT-B-32) the encoder keeps the
    cores and the workers use the gaps. Measured on the 2-core dev CPU, 500 photo-like JPEGs, demo model: 2 niced
    workers + 2 encoder threads ingest 155 images/s vs 116 for 1 worker + 1 thread (exact decode), 219 vs 164
    (``decode="reduce"``); ViT-B-32: 15.5 vs 10.4.
    """
    return max(1, min(MAX_DEFAULT_WORKERS, cpus if cpus is not None else usable_cpus()))


# -- worker process -------------------------------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` goes away (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG: fires when the spawning thread exits

    def watch() -> None:  # portable fallback, and covers a parent that died before prctl ran
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(_POLL_S)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="cir-decode-parent-watch", daemon=True).start()


def _worker_main(conn: Any, parent_pid: int, cfg_dict: dict[str, Any], max_pixels: int, allow_urls: bool) -> None:
    _die_with_parent(parent_pid)
    with contextlib.suppress(OSError, AttributeError):  # decoding yields to the encoder (see encoder_threads)
        os.nice(DECODE_NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it closes the pool)
    cfg = PreprocessConfig.from_dict(cfg_dict)
    slots: dict[str, SharedMemory] = {}
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            job_id, items, slot_name, capacity = msg
            shm = slots.get(slot_name)
            if shm is None:
                shm = slots[slot_name] = SharedMemory(name=slot_name)
            out = np.ndarray((capacity, cfg.size, cfg.size, 3), dtype=np.uint8, buffer=shm.buf)  # [B, S, S, 3]
            ok, bad = decode_batch_uint8(items, cfg, out, max_pixels, allow_urls)
            del out
            conn.send((job_id, ok, bad))
    finally:
        for shm in slots.values():
            with contextlib.suppress(Exception):
                shm.close()


# -- the pool -------------------------------------------------------------------------------------------------------


@dataclass
class _PoolJob:
    job_id: int
    items: list[tuple[int, Any]]
    slot: int
    future: Future[DecodedBatch]
    attempts: int = 0


class _Worker:
    def __init__(self, ctx: Any, args: tuple[Any, ...]) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, *args), daemon=True, name="cir-decode")
        _start_without_main(self.process)
        child.close()
        self.job: _PoolJob | None = None


class DecodePool:
    """Decode worker processes that write uint8 pixels into shared memory and survive the death of a worker.

    Args:
        workers: processes (≥ 1).
        cfg: the encoder's preprocessing.
        batch_size: most items per job (sizes the shared-memory slots).
        slots: jobs in flight at most (each holds one slot until :meth:`DecodedBatch.release`).
        max_pixels: decompression-bomb cap.
        allow_urls: fetch ``http(s)://`` sources.
        mp_context: start method (``spawn`` is safe with gRPC threads).
        max_restarts: worker restarts allowed (default ``4 × workers``); after that, jobs decode in the parent.

    Example:
        >>> pool = DecodePool(1, PreprocessConfig(size=64), batch_size=8, slots=2)  # doctest: +SKIP
        >>> batch = pool.submit(list(enumerate(paths))).result()  # doctest: +SKIP
        >>> x = normalize_uint8(batch.pixels, cfg); batch.release()  # doctest: +SKIP
        >>> pool.close()  # doctest: +SKIP
    """

    def __init__(
        self, workers: int, cfg: PreprocessConfig, *, batch_size: int, slots: int, max_pixels: int = MAX_PIXELS,
        allow_urls: bool = False, mp_context: str = "spawn", max_restarts: int | None = None,
    ) -> None:
        if workers < 1 or batch_size < 1 or slots < 1:
            raise ConfigError(f"DecodePool needs workers, batch_size and slots >= 1; got {workers}, {batch_size}, "
                              f"{slots}")
        self.cfg = cfg
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.allow_urls = allow_urls
        self.restarts = 0
        self._initial_workers = workers
        self.max_restarts = 4 * workers if max_restarts is None else max_restarts
        self.in_process = 0
        """Jobs decoded in the parent after worker deaths."""
        self._ctx = get_context(mp_context)
        nbytes = batch_size * cfg.size * cfg.size * 3
        self._shm = [SharedMemory(create=True, size=max(1, nbytes)) for _ in range(slots)]  # starts the tracker
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(slots):
            self._free.put(i)
        self._args = (os.getpid(), cfg.to_dict(), max_pixels, allow_urls)
        self._pending: collections.deque[_PoolJob] = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._closed = threading.Event()
        self._next_id = 0
        self._completed = 0
        """Jobs finished by a worker (0 while no worker has ever got going)."""
        self._cannot_start = False
        """Every worker exited with an error before any finished a job: no more restarts, decode in-process."""
        self._workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self._workers.append(_Worker(self._ctx, self._args))
        except BaseException:
            self._stop_workers()
            self._free_shm()
            raise
        self._thread = threading.Thread(target=self._dispatch, name="cir-decode-dispatch", daemon=True)
        self._thread.start()

    # -- public ---------------------------------------------------------------------------------------------------
    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._workers if w.process.pid is not None and w.process.is_alive()]

    def submit(self, items: list[tuple[int, Any]], stop: threading.Event | None = None) -> Future[DecodedBatch] | None:
        """Queue a job of at most ``batch_size`` ``(index, source)`` pairs; blocks while every slot is in use.

        Returns:
            A future of the :class:`DecodedBatch`, or ``None`` when ``stop`` was set while waiting for a slot.
        """
        if len(items) > self.batch_size:
            raise ConfigError(f"a decode job holds at most batch_size={self.batch_size} items, got {len(items)}")
        while True:
            if self._closed.is_set():
                raise RuntimeError("DecodePool is closed")
            try:
                slot = self._free.get(timeout=0.1)
                break
            except queue.Empty:
                if stop is not None and stop.is_set():
                    return None
        fut: Future[DecodedBatch] = Future()
        with self._lock:
            job = _PoolJob(self._next_id, items, slot, fut)
            self._next_id += 1
            self._pending.append(job)
        self._wake()
        return fut

    def close(self) -> None:
        """Stop the workers (politely, then by force) and free the shared memory. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        self._thread.join(timeout=10)
        self._stop_workers()
        self._free_shm()
        with self._lock:
            left = list(self._pending)
            self._pending.clear()
        for job in left:
            job.future.cancel()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stop_workers(self) -> None:
        for w in self._workers:
            with contextlib.suppress(Exception):
                w.conn.send(None)
        deadline = time.monotonic() + 2.0
        for w in self._workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=2.0)
            with contextlib.suppress(Exception):
                w.conn.close()

    def _free_shm(self) -> None:
        for shm in self._shm:
            with contextlib.suppress(Exception):
                shm.close()
                shm.unlink()

    # -- dispatcher -----------------------------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(Exception):
            self._wake_w.send(None)

    def _view(self, slot: int) -> np.ndarray:
        s = self.cfg.size
        return np.ndarray((self.batch_size, s, s, 3), dtype=np.uint8, buffer=self._shm[slot].buf)  # [B, S, S, 3]

    def _finish(self, job: _PoolJob, ok: list[int], bad: list[Bad]) -> None:
        pixels = self._view(job.slot)[: len(ok)]
        free = self._free

        def release(slot: int = job.slot) -> None:
            free.put(slot)

        if not job.future.set_running_or_notify_cancel():
            release()
            return
        job.future.set_result(DecodedBatch(ok, pixels, bad, release))

    def _decode_here(self, job: _PoolJob) -> None:
        self.in_process += 1
        try:
            ok, bad = decode_batch_uint8(job.items, self.cfg, self._view(job.slot), self.max_pixels, self.allow_urls)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(e)
            self._free.put(job.slot)
            return
        self._finish(job, ok, bad)

    def _on_death(self, w: _Worker) -> None:
        job, w.job = w.job, None
        with contextlib.suppress(Exception):
            w.conn.close()
        w.process.join(timeout=1.0)
        code = w.process.exitcode
        if job is not None:
            job.attempts += 1
            log.warning("decode worker %s died (exit code %s) during a job of %d images; %s", w.process.pid, code,
                        len(job.items), "retrying it" if job.attempts < MAX_JOB_ATTEMPTS else "decoding it here")
            if job.attempts >= MAX_JOB_ATTEMPTS:
                self._decode_here(job)
            else:
                with self._lock:
                    self._pending.appendleft(job)
        self._workers.remove(w)
        if self._closed.is_set():
            return
        if code == 1 and self._completed == 0 and self.restarts + 1 >= self._initial_workers:
            # every worker has exited with an error before any finished a job: they cannot start; restarting them
            # would fail the same way
            if not self._cannot_start:
                log.warning("decode workers exit with an error as they start (exit code 1); decoding in this process "
                            "instead")
            self._cannot_start = True
        if self._cannot_start:
            return
        if self.restarts < self.max_restarts:
            self.restarts += 1
            self._workers.append(_Worker(self._ctx, self._args))
        else:
            log.warning("decode workers died %d times; decoding the rest in this process", self.restarts + 1)

    def _dispatch(self) -> None:
        while not self._closed.is_set():
            # hand pending jobs to idle workers (or decode here when no worker is left)
            while True:
                with self._lock:
                    if not self._pending:
                        break
                    idle = next((w for w in self._workers if w.job is None), None)
                    if idle is None and self._workers:
                        break
                    job = self._pending.popleft()
                if idle is None:
                    self._decode_here(job)
                    continue
                idle.job = job
                try:
                    idle.conn.send((job.job_id, job.items, self._shm[job.slot].name, self.batch_size))
                except (OSError, ValueError):
                    self._on_death(idle)  # broken pipe: it died while idle; the job is re-queued
            waits: list[Any] = [self._wake_r]
            for w in self._workers:
                waits += [w.conn, w.process.sentinel]
            ready = mp_connection.wait(waits, timeout=1.0)
            if self._wake_r in ready:
                with contextlib.suppress(Exception):
                    while self._wake_r.poll():
                        self._wake_r.recv()
            for w in list(self._workers):
                if w.conn in ready and w.job is not None:
                    try:
                        job_id, ok, bad = w.conn.recv()
                    except (EOFError, OSError):
                        self._on_death(w)
                        continue
                    job, w.job = w.job, None
                    self._completed += 1
                    if job.job_id == job_id:
                        self._finish(job, ok, bad)
                elif w.process.sentinel in ready or not w.process.is_alive():
                    self._on_death(w)
