"""The ASGI middleware in front of every route: Bearer token, body cap, deadline, requests in flight.

One pass over each HTTP request, outermost first:

1. the token (``Authorization: Bearer …``) unless the path is the public page or its static files (401);
2. more requests in flight than ``max_inflight`` → 503 with ``Retry-After`` at once (no queue without end);
3. the body is counted as it streams in, declared (``Content-Length``) or not (413 past the cap), and must have
   arrived ``body_timeout_s`` after the request began (408 after it: a body trickled byte by byte);
4. the whole request, reading its body included, has a deadline (504 after it).

Every error answer (4xx and 5xx: a deadline, a refused or malformed request, an outage) and any answer sent before
the request's body was read to its end carry ``Connection: close``: the socket closes after the answer, so a client
trickling a body, a stuck request or a misbehaving client cannot keep it. (Sockets that never finish a request head are closed by :mod:`cir_milvus.serve.server`.)
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cir_milvus.serve.errors import error_response

__all__ = ["PUBLIC_PATHS", "LimitsMiddleware"]

log = logging.getLogger(__name__)

PUBLIC_PATHS = ("/", "/favicon.ico", "/favicon.svg")
PUBLIC_PREFIXES = ("/static/",)


class BodyTimeout(Exception):
    """The request body did not arrive in time."""


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in; an HTTPException so that FastAPI's own body parsing passes it on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit:,} bytes; send a smaller image (the server's upload "
                              "cap)")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return bytes(v)
    return None


class LimitsMiddleware:
    """Bearer token, in-flight cap, request-body cap and per-request deadline, for every HTTP request.

    Args:
        app: the ASGI app behind it.
        token: the API token (``None``: no token needed).
        max_body: most request-body bytes.
        timeout_s: deadline of a whole request.
        max_inflight: most requests handled at once (more get 503 with ``Retry-After``).
        body_timeout_s: the time a request's body has to arrive in full.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int, timeout_s: float,
                 max_inflight: int = 256, body_timeout_s: float = 20.0) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.token = token
        self.max_body = max_body
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.inflight = 0

    def _authorised(self, scope: Scope) -> bool:
        if not self.token:
            return True
        path = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return True
        v = _header(scope, b"authorization")
        if v is None:
            return False
        scheme, _, given = v.decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        close = {"Connection": "close"}
        if scope.get("method") != "OPTIONS" and not self._authorised(scope):
            await error_response(401, "Unauthorized", "missing or wrong API token: send 'Authorization: Bearer "
                                 "<token>'", {"WWW-Authenticate": "Bearer", **close})(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            await error_response(503, "Overloaded", f"the server is answering {self.max_inflight} requests; try "
                                 "again shortly", close)(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            size = int(declared) if declared.isdigit() else -1
            if size < 0 or size > self.max_body:
                await self._too_large(scope, receive, send)
                return
        self.inflight += 1
        try:
            await self._guarded(scope, receive, send, expects_body=declared not in (None, b"0")
                                or _header(scope, b"transfer-encoding") is not None)
        finally:
            self.inflight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, *, expects_body: bool) -> None:
        seen = 0
        body_done = not expects_body
        started = False
        body_deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:
                return await receive()  # after the body: a disconnect, waited for without a deadline
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, body_deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                raise BodyTimeout from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
                if not msg.get("more_body", False):
                    body_done = True
            return msg

        async def tracked_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                if not body_done or msg["status"] >= 400:  # an error, or the rest of the body would follow: close
                    msg = {**msg, "headers": [*msg.get("headers", []), (b"connection", b"close")]}
            await send(msg)

        try:
            await asyncio.wait_for(self.app(scope, limited_receive, tracked_send), self.timeout_s)
        except BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send)
        except BodyTimeout:
            log.warning("request %s %s: its body did not arrive within %.1f s", scope.get("method"),
                        scope.get("path"), self.body_timeout_s)
            if not started:
                await error_response(408, "RequestTimeout", f"the request body did not arrive within "
                                     f"{self.body_timeout_s:g} s; send it faster or smaller",
                                     {"Connection": "close"})(scope, receive, send)
        except asyncio.TimeoutError:
            log.warning("request %s %s passed its %.1f s deadline", scope.get("method"), scope.get("path"),
                        self.timeout_s)
            if not started:
                await error_response(504, "Timeout", f"the request took longer than {self.timeout_s:g} s; try "
                                     "again or ask for fewer hits", {"Connection": "close"})(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, "PayloadTooLarge", str(BodyTooLarge(self.max_body).detail),
                             {"Connection": "close"})(scope, receive, send)
