"""The one retry policy of every Milvus call that the store makes, and the one classification of its errors.

Errors are classified once, here:

- **permanent** (the request itself is wrong: bad data, a value over a limit, a filter that does not parse, a
  schema mismatch, a missing collection, a locked Lite file) → raised at once, never retried;
- **transient** (unavailable, timeouts, a collection not loaded after a server restart, rate limits) → retried
  with exponential backoff (0.5 s doubling to 10 s) until the policy's deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cir_milvus.errors import CIRError, CollectionLockedError, CollectionNotFoundError, StorageError

__all__ = ["RetryPolicy", "is_permanent"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_PERMANENT_TYPES = ("ParamError", "DataNotMatchException", "PrimaryKeyException", "DataTypeNotMatchException",
                    "ConnectionConfigException", "DescribeCollectionException", "SchemaNotReadyException")
# what servers say about requests that can never succeed (Milvus 2.3-2.6 and Lite 3.x messages)
_PERMANENT_TEXT = ("exceeds max length", "exceeds max_length", "exceed max length", "exceeds the max length",
                   "length exceeds", "max_length", "cannot parse", "failed to parse", "parse error", "syntax error",
                   "unexpected character", "unknown escape", "invalid expression", "invalid parameter",
                   "illegal", "type mismatch", "not match", "mismatch", "does not support", "not supported",
                   "must be a field reference", "invalid utf", "invalid json", "json value", "out of range",
                   "field not exist", "not exist in schema", "is not a valid", "dimension", "dim mismatch")
_TRANSIENT_TEXT = ("unavailable", "connection refused", "connect", "timeout", "timed out", "deadline",
                   "not loaded", "released", "call load", "not ready", "shutting down", "rate limit", "try again",
                   "channel", "no available", "node not found", "server is", "socket closed", "broken pipe")


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and its causes, each once (exception chains can loop)."""
    out: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen and len(out) < 32:
        seen.add(id(cur))
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def is_permanent(e: BaseException) -> bool:
    """Whether retrying ``e`` can never help (see the module docstring)."""
    chain = _chain(e)
    for x in chain:
        if isinstance(x, (CollectionNotFoundError, CollectionLockedError)):
            return True
        if isinstance(x, CIRError) and not isinstance(x, StorageError):
            return True  # ConfigError and friends: our own validation
        if type(x).__name__ in _PERMANENT_TYPES:
            return True
        if getattr(x, "is_input_error", False) is True:
            return True
        code = getattr(x, "code", None)
        if callable(code):  # grpc.RpcError.code()
            try:
                name = getattr(code(), "name", "")
            except Exception:  # noqa: BLE001 - a half-built RpcError
                name = ""
            if name in ("INVALID_ARGUMENT", "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED",
                        "ALREADY_EXISTS", "FAILED_PRECONDITION", "OUT_OF_RANGE"):
                return True
            if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"):
                return False
    text = " ".join(str(x) for x in chain).lower()
    if any(t in text for t in _TRANSIENT_TEXT):
        return False
    return any(t in text for t in _PERMANENT_TEXT)


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

    def call(self, fn: Callable[[], T], what: str, *, on_retry: Callable[[], None] | None = None,
             reload: Callable[[], None] | None = None) -> T:
        """Call ``fn``; retry transient :class:`StorageError` s with backoff, raise permanent ones at once.

        Raises:
            StorageError: still failing after ``timeout`` seconds (the last error is chained), or a permanent error.
        """
        deadline = time.monotonic() + self.timeout
        delay = self.initial_delay
        attempt = 0
        while True:
            try:
                return fn()
            except StorageError as e:
                if is_permanent(e):
                    raise
                attempt += 1
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"{what} still failing after {attempt} attempts over {self.timeout:.0f}s: {e}") from e
                if on_retry is not None:
                    on_retry()
                log.warning("%s failed (%s); retry %d in %.1fs", what, str(e)[:200], attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                if reload is not None and any(t in str(e).lower() for t in ("not loaded", "released", "call load")):
                    try:
                        reload()
                    except Exception:  # noqa: BLE001 - best effort; the next attempt reports the real error
                        pass
