"""The one classification of Milvus failures, made where they are wrapped: by exception type and error code, never by
matching message text.

What the backends send (measured with pymilvus 3.0.2 against Milvus Lite 3.2.2 and the Milvus 2.3.5 server):

=============================  ===========================================  =========================================
failure                        Milvus Lite 3.x                              Milvus 2.3.5 server
=============================  ===========================================  =========================================
filter does not parse          ``MilvusException`` code 6 (IllegalArgument)  code 65535 (no classification)
value over ``max_length``      code 6                                       code 1100 (ParameterInvalid)
collection missing             code 100                                     code 100
collection released/loading    code 101                                     code 101
collection already exists      code 1                                       code 65535
server down / restarting       ``grpc.RpcError`` UNAVAILABLE, or pymilvus's ``MilvusException`` code 2 ("connect failed")
=============================  ===========================================  =========================================

Codes that carry no classification (1 "unexpected", 65535) are transient here, so a blip is retried within the
policy's deadline; where such an error answers a call with a user filter, the store tells a filter the server cannot
parse from a passing failure by asking the server again (see ``VectorStore``), never by reading the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cir_milvus.errors import (
    CollectionNotFoundError,
    CollectionNotLoadedError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)

__all__ = ["UNCLASSIFIED_CODES", "chain", "classify", "error_code"]

# gRPC status names (raw grpc.RpcError, or pymilvus's MilvusException carrying a grpc.StatusCode after its retries)
_GRPC_TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED",
                             "UNKNOWN", "INTERNAL"})
# Milvus error codes (pkg/util/merr in Milvus 2.3+; Lite 3.x uses the legacy enum: 6 = IllegalArgument)
_NOT_FOUND = frozenset({100})
_NOT_LOADED = frozenset({101, 103, 106, 201, 202})  # released, not fully loaded, recovering; partitions likewise
_TRANSIENT_CODES = frozenset({2, 4, 5, 8, 12, 401, 500, 501, 502, 503, 600, 601, 602, 603, 901, 902, 903, 904, 905,
                              906, 907, 1000, 1001, 1002})  # unavailable, rate limits, replicas, channels, nodes, io
UNCLASSIFIED_CODES = frozenset({1, 65535})
"""Codes that say nothing about the cause ("unexpected error"): transient unless proven otherwise."""
# pymilvus's own exception classes, by name (pymilvus is imported lazily)
_PERMANENT_TYPES = frozenset({"ParamError", "DataNotMatchException", "PrimaryKeyException", "DataTypeNotMatchException",
                              "DataTypeNotSupportException", "ConnectionConfigException", "SchemaNotReadyException",
                              "CannotInferSchemaException", "AmbiguousIndexName", "IndexNotExistException",
                              "ServerVersionIncompatibleException", "PartitionAlreadyExistException"})
_TRANSIENT_TYPES = frozenset({"MilvusUnavailableException", "ConnectError", "ConnectionNotExistException"})


def chain(e: BaseException) -> Iterator[BaseException]:
    """``e`` and its causes, each once (pymilvus raises ``e from e``: chains can loop)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen and len(seen) < 32:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def error_code(e: BaseException) -> int | str | None:
    """The Milvus error code (int) or gRPC status name (str) of one exception, if it carries one."""
    code: Any = getattr(e, "code", None)
    if callable(code):  # grpc.RpcError.code()
        try:
            code = code()
        except Exception:  # noqa: BLE001 - a half-built RpcError
            return None
    if isinstance(code, int) and not isinstance(code, bool):  # Milvus codes (pymilvus's ErrorCode is an IntEnum)
        return int(code)
    name = getattr(code, "name", None)  # grpc.StatusCode (also what pymilvus's retry wrapper puts in .code)
    return name if isinstance(name, str) else None


def _kind_of_code(code: int | str) -> type[StorageError]:
    if isinstance(code, str):
        return TransientStorageError if code in _GRPC_TRANSIENT else PermanentStorageError
    if code in _NOT_FOUND:
        return CollectionNotFoundError
    if code in _NOT_LOADED:
        return CollectionNotLoadedError
    if code in _TRANSIENT_CODES or code in UNCLASSIFIED_CODES:
        return TransientStorageError
    return PermanentStorageError  # parameters (1100s), fields (1700s), index (700s), Lite's IllegalArgument (6)...


def _kind_of(e: BaseException) -> tuple[type[StorageError], int | str | None] | None:
    name = type(e).__name__
    code = error_code(e)
    if name in _PERMANENT_TYPES or getattr(e, "is_input_error", False) is True:
        return PermanentStorageError, code
    if name in _TRANSIENT_TYPES:
        return TransientStorageError, code
    if code is not None and code != 0:
        kind = _kind_of_code(code)
        if kind is PermanentStorageError and getattr(e, "retriable", False) is True:
            kind = TransientStorageError  # the server says retrying may help
        if kind is TransientStorageError and code in UNCLASSIFIED_CODES:
            return None  # look further down the chain (pymilvus wraps gRPC errors in code-1 exceptions)
        return kind, code
    if isinstance(e, (ConnectionError, TimeoutError)):
        return TransientStorageError, None
    return None


def classify(e: BaseException) -> tuple[type[StorageError], int | str | None]:
    """The :class:`StorageError` subclass a Milvus failure is wrapped in, and its error code.

    The first exception in the chain that carries a type or code with a meaning decides; a chain of unclassified
    codes ("unexpected error") is transient.
    """
    first_code: int | str | None = None
    for x in chain(e):
        kind = _kind_of(x)
        if kind is not None:
            return kind
        if first_code is None:
            first_code = error_code(x)
    return TransientStorageError, first_code
