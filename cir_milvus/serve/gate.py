"""The service's guard against a Milvus outage: a request's storage work is bounded by wall-clock, not by retries.

- Storage calls of a request run on a thread pool of their own (not the event loop's default pool, which decodes
  uploads) and are awaited for at most ``budget_s``; past it the request answers 503 with ``Retry-After`` while the
  stuck call ends on its thread (the store's retry policy ends it).
- A transient failure or an expired budget closes the gate: from then on requests answer 503 at once, without
  touching Milvus, and requests already waiting on storage work are answered 503 too. While it is closed a probe
  (a one-hit search on every served collection, the call requests make) runs at most every ``probe_every_s``, one
  at a time unless the last one hangs; the first that succeeds opens the gate, so answers come back as soon as a
  fresh client's would. (A count is no probe: read with Strong consistency it fails long after a restarted server
  answers searches.)

The gate decides only *whether* storage is asked, never what an answer holds: no 200 comes from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from cir_milvus.errors import StorageUnavailableError, TransientStorageError
from cir_milvus.serve.errors import STORAGE_MESSAGE, RequestError

__all__ = ["StorageGate"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StorageGate:
    """Wall-clock bound and open/closed state of the service's storage calls (one per service).

    Args:
        probe: a cheap storage call that succeeds when requests' storage calls would (run on the gate's pool).
        budget_s: the longest a request waits for one piece of storage work.
        probe_every_s: the shortest time between two probes while the gate is closed.
        workers: threads of the storage pool.
    """

    def __init__(self, probe: Callable[[], object], *, budget_s: float, probe_every_s: float = 1.0,
                 workers: int = 16) -> None:
        self.budget_s = budget_s
        self.probe_every_s = probe_every_s
        self.workers = workers
        self._probe = probe
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._waiters: set[asyncio.Future[None]] = set()  # requests waiting on storage work, told when it closes
        self._probing: Future[object] | None = None
        self._last_probe = 0.0

    @property
    def closed(self) -> bool:
        """Whether requests are answered 503 without asking Milvus."""
        return self._closed

    def start(self) -> None:
        """Open the gate with a fresh pool (the app's startup; the first storage call when the app runs without
        its lifespan)."""
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cir-storage")
        self._closed = False
        self._probing = None

    def close(self) -> None:
        """Stop the pool (the app's shutdown); calls still stuck end on their own threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def trip(self, why: BaseException | str) -> None:
        """Close the gate (a transient failure or an expired budget was seen) and answer the waiting requests."""
        if self._closed:
            return
        log.warning("storage gate closed: %s; answering 503 until Milvus answers a probe", why)
        self._closed = True
        for w in list(self._waiters):
            w.get_loop().call_soon_threadsafe(_settle, w)

    def reopen(self) -> None:
        """Open the gate (Milvus answered)."""
        if self._closed:
            log.info("storage gate open again: Milvus answers")
            self._closed = False

    def check(self) -> None:
        """Raise at once while the gate is closed (and start a probe when one is due).

        Raises:
            RequestError: the gate is closed (503 with ``Retry-After``, the body of any storage outage; not logged
                per request: the closing was).
        """
        if not self._closed:
            return
        self._maybe_probe()
        raise RequestError(503, STORAGE_MESSAGE, StorageUnavailableError.__name__)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the storage pool, awaited for at most ``budget_s``.

        Raises:
            RequestError: the gate is closed (503).
            StorageUnavailableError: the budget ran out (which closes the gate).
            TransientStorageError: the call failed transiently (which closes the gate).
        """
        self.check()
        if self._pool is None:  # an app run without its lifespan (a server that skips startup)
            self.start()
        fut = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        return await self.wait(fut)

    async def wait(self, fut: Future[T] | asyncio.Future[T], *, bounded: bool = True) -> T:
        """The result of storage work already under way, awaited only while the gate stays open and, when
        ``bounded``, for at most ``budget_s`` (work that also encodes, on an encoder thread, is not bounded here: a
        busy encoder is not an outage, and the request's own deadline bounds it).

        Raises:
            RequestError: the gate is closed, or closed meanwhile (503).
            StorageUnavailableError: the budget ran out (which closes the gate).
            TransientStorageError: the work failed transiently (which closes the gate).
        """
        self.check()
        work = asyncio.ensure_future(asyncio.wrap_future(fut) if isinstance(fut, Future) else fut)
        down: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(down)
        both: set[asyncio.Future[Any]] = {work, down}
        try:
            done, _ = await asyncio.wait(both, timeout=self.budget_s if bounded else None,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters.discard(down)
            down.cancel()
        if work not in done:
            work.cancel()
            if done:  # the gate closed meanwhile
                raise RequestError(503, STORAGE_MESSAGE, StorageUnavailableError.__name__)
            self.trip(f"storage work took longer than {self.budget_s:g} s")
            self._maybe_probe()
            raise StorageUnavailableError(f"Milvus did not answer within {self.budget_s:g} s")
        try:
            return work.result()
        except TransientStorageError as e:
            self.trip(e)
            self._maybe_probe()
            raise

    def _maybe_probe(self) -> None:
        now = time.monotonic()
        if self._pool is None or now - self._last_probe < self.probe_every_s:
            return
        if self._probing is not None and not self._probing.done() and now - self._last_probe < 2 * self.budget_s:
            return  # one probe at a time, unless the last one hangs (its call ends on its own thread)
        self._last_probe = now
        self._probing = self._pool.submit(self._probe)
        self._probing.add_done_callback(self._probed)

    def _probed(self, probing: Future[object]) -> None:  # on the pool's thread
        if probing.cancelled() or probing.exception() is not None:
            log.debug("storage probe failed: %s", None if probing.cancelled() else probing.exception())
            return
        self.reopen()


def _settle(w: asyncio.Future[None]) -> None:
    if not w.done():
        w.set_result(None)
