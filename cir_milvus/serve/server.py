"""Running the app with uvicorn, with the socket-level limits the ASGI app cannot set itself.

uvicorn's h11 protocol starts no timer before a connection's first request, and every byte a client sends restarts
its keep-alive timer: a socket that connects and stays silent, or trickles a request head byte by byte, would be
held for ever, and enough of them (``limit_concurrency``) turn every other client away. :class:`GuardedH11Protocol`
gives each connection ``head_timeout_s`` to send a complete request head, counted from the moment it connects or its
previous answer was sent, and closes it otherwise; a trickled body is the request deadline's business
(:class:`~cir_milvus.serve.middleware.LimitsMiddleware`: 504 with ``Connection: close``). Connections are capped at
``max_connections``; requests in flight are capped by the middleware.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cir_milvus._optional import require

__all__ = ["guarded_protocol", "run", "server_config"]

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 2048


def guarded_protocol(head_timeout_s: float = HEAD_TIMEOUT_S) -> type:
    """uvicorn's h11 protocol with a request-head deadline (``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):  # type: ignore[misc]
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(head_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            busy = self.cycle is not None and not self.cycle.response_complete
            if not busy and not self.transport.is_closing():  # no request head within the limit: silent or slow
                log.info("closing a connection from %s: no complete request within %.0f s", self.client,
                         head_timeout_s)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request head has the same time as the first

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
                  head_timeout_s: float = HEAD_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> Any:
    """The ``uvicorn.Config`` the service runs with: the guarded h11 protocol, a 5 s keep-alive, no server header,
    at most ``max_connections`` connections (more get 503).

    Raises:
        BackendUnavailableError: uvicorn is not installed (``pip install 'cir_milvus[serve]'``).
    """
    uvicorn = require("uvicorn", extra="serve", purpose="cir-milvus serve")
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=guarded_protocol(head_timeout_s),
                          timeout_keep_alive=5, server_header=False, limit_concurrency=max_connections)


def _raise_open_files(need: int) -> None:
    """Let the process hold ``need`` sockets (the soft limit is often 1,024; the hard one much higher)."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("cannot raise the open-file limit to %d (at %d): fewer connections will be accepted", need,
                        soft)


def run(app: Any, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
        head_timeout_s: float = HEAD_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve ``app`` with uvicorn until interrupted (binds 127.0.0.1 unless told otherwise).

    Raises:
        BackendUnavailableError: uvicorn is not installed (``pip install 'cir_milvus[serve]'``).
    """
    config = server_config(app, host=host, port=port, log_level=log_level, head_timeout_s=head_timeout_s,
                           max_connections=max_connections)
    _raise_open_files(max_connections + 256)
    require("uvicorn", extra="serve", purpose="cir-milvus serve").Server(config).run()
