"""How failures become HTTP answers: one mapping from the library's exceptions to status codes, one error body.

=====================================================  ======  ==========================================
exception                                              status  message
=====================================================  ======  ==========================================
:class:`RequestError` (the service's own refusals)     its own its own
:class:`~cir_milvus.errors.CollectionNotFoundError`    404     generic (no server names)
:class:`~cir_milvus.errors.TransientStorageError`      503     generic, ``Retry-After``; details in the log
any other :class:`~cir_milvus.errors.StorageError`     500     generic; details in the log
:class:`~cir_milvus.errors.BackendUnavailableError`    501     the library's (which extra to install)
any other :class:`~cir_milvus.errors.CIRError`         400     the library's (it says what to fix)
anything else                                          500     generic; details in the server log
=====================================================  ======  ==========================================

Every error is JSON ``{"error": {"type", "message"}}``. Storage failures never say more than "try again": the
message of a Milvus error can carry a host, a user name or a path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cir_milvus.errors import (
    BackendUnavailableError,
    CIRError,
    CollectionNotFoundError,
    StorageError,
    TransientStorageError,
)

__all__ = ["RETRY_AFTER_S", "RequestError", "error_response", "install_error_handlers", "status_of"]

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 tells clients (and load balancers) to wait before trying again
STORAGE_MESSAGE = "the vector database is not answering; try again shortly (details are in the server log)"
STORAGE_FAILED = "the vector database refused the request (details are in the server log)"


class RequestError(CIRError):
    """A request the service refuses, with its HTTP status and an error type for the body."""

    def __init__(self, status: int, message: str, kind: str = "RequestError",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.headers = dict(headers or {})


def error_response(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error answer (a 503 says when to come back)."""
    h = dict(headers or {})
    if status == 503:
        h.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=h)


def status_of(e: CIRError) -> tuple[int, str]:
    """The HTTP status and the client-facing message of a library or service error."""
    if isinstance(e, RequestError):
        return e.status, str(e)
    if isinstance(e, CollectionNotFoundError):
        return 404, "no such collection on this server"
    if isinstance(e, TransientStorageError):  # unreachable, not loaded, timed out: retrying later can help
        return 503, STORAGE_MESSAGE
    if isinstance(e, StorageError):  # permanent or unclassified: retrying cannot help, and it is not the client's
        return 500, STORAGE_FAILED
    if isinstance(e, BackendUnavailableError):
        return 501, str(e)
    return 400, str(e)  # ConfigError, ImageDecodeError, ...: the library's own message says what to fix


def as_request_error(e: CIRError, prefix: str = "") -> RequestError:
    """``e`` as a :class:`RequestError` (its status and client message), the message prefixed (``queries[3]: ``)."""
    status, message = status_of(e)
    kind = e.kind if isinstance(e, RequestError) else type(e).__name__
    return RequestError(status, prefix + message, kind)


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic's errors in one line: ``invalid request: k: Input should be ...``."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


_HTTP_KINDS = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through :func:`status_of` into the one error body."""

    async def cir_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, CIRError)
        status, message = status_of(e)
        if status >= 500 and not isinstance(e, RequestError):  # the service's own refusals are not failures
            log.error("%s %s failed: %s", request.method, request.url.path, e, exc_info=e)
        kind = e.kind if isinstance(e, RequestError) else type(e).__name__
        return error_response(status, kind, message, e.headers if isinstance(e, RequestError) else None)

    async def http_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        return error_response(e.status_code, _HTTP_KINDS.get(e.status_code, "HTTPError"), str(e.detail),
                              getattr(e, "headers", None))

    async def validation_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        return error_response(422, "ValidationError", describe_validation(e.errors()))

    async def internal(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return error_response(500, "InternalError", "internal error (details are in the server log)")

    app.add_exception_handler(CIRError, cir_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal)
