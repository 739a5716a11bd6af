"""One thread owns a collection's encoder: queries are composed there, and concurrent ones share one encoder pass.

Encoders are not thread-safe everywhere (torch modules with hooks, onnxruntime sessions sharing buffers, the
tokenizer caches), so the service never calls one from two threads. Each :class:`EncoderWorker` runs a single thread
that takes every queued request at once, groups them by what composes alike (composer, alpha, reference kind) and
calls :meth:`CIRCollection.compose` once per group: under load, N concurrent queries cost one batched encoder pass
instead of N (``benchmarks/bench_serve.py`` measures both). With one client nothing waits: the worker takes what is
queued now and does not hold requests back for a batching window unless ``max_wait_s`` is set.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cir_milvus.errors import CIRError

__all__ = ["ComposeJob", "EncoderWorker"]

log = logging.getLogger(__name__)


@dataclass
class ComposeJob:
    """One query to compose: a decoded reference image, a stored ``ref_id``, or neither (text-only composers)."""

    text: str
    composer: str
    alpha: float | None = None
    image: Any = None
    ref_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    future: Future[np.ndarray] = field(default_factory=Future)

    def group_key(self) -> tuple[Any, ...]:
        kind = "image" if self.image is not None else "ref" if self.ref_id is not None else "none"
        return (self.composer, self.alpha, kind, tuple(sorted((k, id(v)) for k, v in self.params.items())))


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)


class EncoderWorker:
    """The only thread that touches ``collection``'s encoder.

    Args:
        collection: a :class:`~cir_milvus.CIRCollection` (anything with ``compose``).
        max_batch: most queries per encoder pass (1 = no batching: one query at a time).
        max_wait_s: how long the worker waits for more queries after the first one (0 = take only what is queued).
        name: thread name suffix, for logs.
    """

    def __init__(self, collection: Any, *, max_batch: int = 32, max_wait_s: float = 0.0, name: str = "") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.collection = collection
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.passes = 0
        self.composed = 0
        self._q: queue.Queue[ComposeJob | _Call | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"cir-encoder-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: ComposeJob) -> Future[np.ndarray]:
        """Queue a query; the future gets its query vector ``[D]`` or the error that composing it raised."""
        if self._closed:
            raise RuntimeError("the encoder worker is closed")
        self._q.put(job)
        return job.future

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the encoder thread (e.g. ``collection.add``), alone."""
        if self._closed:
            raise RuntimeError("the encoder worker is closed")
        c = _Call(fn)
        self._q.put(c)
        return c.future

    @property
    def alive(self) -> bool:
        """Whether the encoder thread is running."""
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(None)
            self._thread.join(timeout)

    # -- the thread -------------------------------------------------------------------------------------------------
    def _take(self, first: ComposeJob) -> tuple[list[ComposeJob], list[_Call | None]]:
        jobs, rest = [first], []
        timeout = self.max_wait_s
        while len(jobs) < self.max_batch:
            try:
                item = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, ComposeJob):
                jobs.append(item)
            else:  # calls and the stop signal run after this batch, in order
                rest.append(item)
                break
        return jobs, rest

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            pending: list[_Call | None] = [item] if not isinstance(item, ComposeJob) else []
            if isinstance(item, ComposeJob):
                jobs, pending = self._take(item)
                self._run_jobs(jobs)
            for p in pending:
                if p is None:
                    return
                self._run_call(p)

    @staticmethod
    def _run_call(c: _Call) -> None:
        if not c.future.set_running_or_notify_cancel():
            return
        try:
            c.future.set_result(c.fn())
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request
            c.future.set_exception(e)

    def _run_jobs(self, jobs: Sequence[ComposeJob]) -> None:
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        groups: dict[tuple[Any, ...], list[ComposeJob]] = {}
        for j in jobs:
            groups.setdefault(j.group_key(), []).append(j)
        for group in groups.values():
            self._compose(group)

    def _compose(self, group: list[ComposeJob]) -> None:
        first = group[0]
        try:
            vecs = self.collection.compose(
                [j.image for j in group] if first.image is not None else None,
                [j.text for j in group],
                ref_ids=[j.ref_id for j in group] if first.ref_id is not None else None,
                composer=first.composer, alpha=first.alpha, **first.params)
        except CIRError as e:
            if len(group) > 1:  # one bad query (an unknown ref_id, a text too long) must not fail its neighbours
                for j in group:
                    self._compose([j])
                return
            first.future.set_exception(e)
            return
        except BaseException as e:  # noqa: BLE001 - handed to the waiting requests
            for j in group:
                j.future.set_exception(e)
            return
        self.passes += 1
        self.composed += len(group)
        for j, v in zip(group, vecs):
            j.future.set_result(v)
