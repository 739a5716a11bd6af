"""The one retry policy of every Milvus call that the store makes.

Failures arrive classified (:mod:`cir_milvus.storage.classify`, at the place they are wrapped); the policy decides
by class alone:

- :class:`~cir_milvus.errors.TransientStorageError` (unavailable, timeouts, rate limits, a collection not loaded
  after a server restart) → retried with exponential backoff (0.5 s doubling to 10 s) until the policy's deadline,
  then :class:`~cir_milvus.errors.StorageUnavailableError`; a :class:`~cir_milvus.errors.CollectionNotLoadedError`
  loads the collection before the next attempt;
- anything else (:class:`~cir_milvus.errors.PermanentStorageError`, a missing collection, a locked Lite file, a
  filter that does not parse, our own validation) → raised at once, never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cir_milvus.errors import CollectionNotLoadedError, StorageUnavailableError, TransientStorageError

__all__ = ["RetryPolicy", "is_permanent"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_permanent(e: BaseException) -> bool:
    """Whether retrying ``e`` can never help: everything but a :class:`TransientStorageError`."""
    return not isinstance(e, TransientStorageError)


@dataclass(frozen=True)
class RetryPolicy:
    """How long transient failures are retried.

    Attributes:
        timeout: give up after this many seconds of failures (a server restart takes ~10-60 s).
        initial_delay: first backoff; doubles up to ``max_delay``.
        max_delay: longest wait between two attempts.
    """

    timeout: float = 300.0
    initial_delay: float = 0.5
    max_delay: float = 10.0

    def capped(self, timeout: float | None) -> RetryPolicy:
        """This policy with its deadline cut to ``timeout`` seconds (``None``: unchanged)."""
        if timeout is None or timeout >= self.timeout:
            return self
        return RetryPolicy(timeout=max(float(timeout), 0.0), initial_delay=min(self.initial_delay, 0.25),
                           max_delay=self.max_delay)

    def call(self, fn: Callable[[], T], what: str, *, on_retry: Callable[[], None] | None = None,
             reload: Callable[[], None] | None = None) -> T:
        """Call ``fn``; retry :class:`TransientStorageError` s with backoff, raise anything else at once.

        Raises:
            StorageUnavailableError: still failing after ``timeout`` seconds (the last error is chained).
            StorageError: a permanent failure, at once.
        """
        deadline = time.monotonic() + self.timeout
        delay = self.initial_delay
        attempt = 0
        while True:
            try:
                return fn()
            except TransientStorageError as e:
                attempt += 1
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailableError(
                        f"{what} still failing after {attempt} attempts over {self.timeout:.0f}s: {e}",
                        code=e.code) from e
                if on_retry is not None:
                    on_retry()
                log.warning("%s failed (%s); retry %d in %.1fs", what, str(e)[:200], attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                if reload is not None and isinstance(e, CollectionNotLoadedError):
                    try:
                        reload()
                    except Exception:  # noqa: BLE001 - best effort; the next attempt reports the real error
                        log.debug("reloading after %s", what, exc_info=True)
