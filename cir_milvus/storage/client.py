"""Connecting to Milvus (Lite file or server URI), backend capabilities, and error wrapping."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cir_milvus.errors import (
    CollectionLockedError,
    ConfigError,
    StorageError,
    StorageUnavailableError,
    TransientStorageError,
)
from cir_milvus.storage.classify import chain, classify
from cir_milvus.storage.retry import RetryPolicy

__all__ = ["Capabilities", "connect", "disconnect", "lite_file", "milvus_errors", "redact_uri"]

log = logging.getLogger(__name__)

# Index types each backend can actually build (Lite accepts others and silently falls back to brute force).
LITE_INDEXES = frozenset({"HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "FLAT", "AUTOINDEX"})
SERVER_INDEXES = frozenset(
    {"FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "HNSW_SQ", "HNSW_PQ", "HNSW_PRQ", "SCANN", "DISKANN",
     "AUTOINDEX", "GPU_CAGRA", "GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_BRUTE_FORCE"}
)


@dataclass(frozen=True)
class Capabilities:
    """What the connected Milvus can do.

    Attributes:
        is_lite: Milvus Lite (local ``.db`` file).
        version: server version string.
        index_types: index types that really get built.
        filter_templates: the server parses ``{name}`` placeholders with ``filter_params`` (Milvus ≥ 2.5).
        collection_properties: collections take key/value properties at creation and through
            ``alter_collection_properties`` (Lite, Milvus ≥ 2.3). Without them the recipe is kept in the collection
            description (see ``CIRCollection``).
        group_by: searches take ``group_by_field`` (Lite, Milvus ≥ 2.4); otherwise the store emulates it.
        nullable: scalar fields can be nullable (Lite, Milvus ≥ 2.5).
        hybrid_search: ``hybrid_search`` over several vector fields (Lite, Milvus ≥ 2.4); otherwise the store fuses
            one search per field itself (:mod:`~cir_milvus.storage.hybrid`).
        multi_vector: a collection may hold several vector fields (Lite, Milvus ≥ 2.4): mixed galleries.
        full_text: BM25 full-text search (a BM25 Function into a sparse field): Milvus Lite 3.x, Milvus ≥ 2.5.
    """

    is_lite: bool
    version: str
    index_types: frozenset[str]
    filter_templates: bool
    collection_properties: bool = True
    group_by: bool = True
    nullable: bool = True
    hybrid_search: bool = True
    multi_vector: bool = True
    full_text: bool = True


class _LiteUnimplementedFilter(logging.Filter):
    """Drop the in-process Lite gRPC server's tracebacks for RPCs pymilvus probes but Lite does not implement
    (``AllocTimestamp`` while waiting for an index); they are harmless and would clutter every create()."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        return "Method not implemented" not in text


_GRPC_FILTER_INSTALLED = False


def _quiet_lite_grpc() -> None:
    global _GRPC_FILTER_INSTALLED
    if not _GRPC_FILTER_INSTALLED:
        logging.getLogger("grpc._server").addFilter(_LiteUnimplementedFilter())
        _GRPC_FILTER_INSTALLED = True


def _parse_version(v: str) -> tuple[int, int]:
    m = re.search(r"(\d+)\.(\d+)", v)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def capabilities(client: Any, retry: RetryPolicy | None = None) -> Capabilities:
    """What the connected Milvus can do, from its version (asked through ``retry``: a restarting server is waited
    for; a server that refuses the question is taken for an old one)."""

    def ask() -> str:
        with milvus_errors("ask the server version"):
            return str(client.get_server_version())

    try:
        version = ask() if retry is None else retry.call(ask, "ask the server version")
    except TransientStorageError:
        raise
    except Exception:  # noqa: BLE001 - some servers do not answer; assume an old one
        version = "unknown"
    is_lite = version.startswith("milvus_lite") or version.startswith("milvus-lite")
    major_minor = _parse_version(version.split("-", 1)[-1] if is_lite else version)
    return Capabilities(
        is_lite=is_lite,
        version=version,
        index_types=LITE_INDEXES if is_lite else SERVER_INDEXES,
        filter_templates=(not is_lite) and major_minor >= (2, 5),
        collection_properties=is_lite or major_minor >= (2, 3) or major_minor == (0, 0),
        group_by=is_lite or major_minor >= (2, 4),
        nullable=is_lite or major_minor >= (2, 5),
        hybrid_search=is_lite or major_minor >= (2, 4),
        multi_vector=is_lite or major_minor >= (2, 4),
        full_text=is_lite or major_minor >= (2, 5),
    )


_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def redact_uri(uri: str) -> str:
    """The URI without credentials (``https://user:pass@host`` → ``https://***@host``), for messages and logs.

    Example:
        >>> redact_uri("https://root:secret@db.example.com:19530")
        'https://***@db.example.com:19530'
    """
    return _USERINFO.sub(r"\1***@", uri)


@contextlib.contextmanager
def milvus_errors(action: str) -> Iterator[None]:
    """Re-raise pymilvus / gRPC failures as the :class:`StorageError` subclass their type and code call for
    (:func:`~cir_milvus.storage.classify.classify`), with the action in the message."""
    try:
        yield
    except (StorageError, ConfigError):
        raise
    except Exception as e:  # noqa: BLE001 - MilvusException and grpc.RpcError have no common base
        from_milvus = any(c.__module__.startswith(("pymilvus", "grpc", "milvus_lite")) for c in type(e).__mro__)
        if from_milvus or isinstance(e, (ConnectionError, TimeoutError)):
            kind, code = classify(e)
            raise kind(f"Milvus failed to {action}: {e}", code=code) from e
        raise


def _lock_holder(e: BaseException) -> bool:
    """Whether ``e`` (or an exception in its chain) is Milvus Lite's lock error (by type)."""
    return any(type(x).__name__ == "DataDirLockedError" for x in chain(e))


def _lite_file_locked(uri: str) -> bool:
    """Whether another process holds Milvus Lite 3.x's lock file inside the ``.db`` folder."""
    lock = Path(uri).expanduser() / "LOCK"
    if not lock.is_file():
        return False
    try:
        import fcntl
    except ImportError:  # Windows: cannot probe; fall back to the message
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def lite_file(uri: str) -> Path | None:
    """The Milvus Lite database a URI names (``None`` for a server URI).

    Raises:
        ConfigError: a file path that does not end in ``.db``.
    """
    if "://" in uri or uri.startswith("unix:"):
        return None
    if not uri.endswith(".db"):
        raise ConfigError(f"a Milvus Lite path must end in '.db' (got {uri!r}); servers need http(s)://host:port")
    return Path(uri).expanduser()


DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds :func:`connect` waits for a server before failing (pymilvus's default)."""


def connect(uri: str, *, token: str | None = None, timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
            **kwargs: Any) -> Any:
    """Open a ``MilvusClient``.

    Args:
        uri: a Milvus Lite file (``./cir.db``) or a server URI (``http://host:19530``, ``https://...``).
        token: ``"user:password"`` or an API key (servers only); never logged.
        timeout: seconds to wait for the server before failing with :class:`StorageError` (``None``: pymilvus's
            default).
        **kwargs: passed to ``MilvusClient`` (``secure``, ``server_pem_path``, ``server_name``, ``ca_pem_path``,
            ``client_pem_path``, ``client_key_path``, ``db_name``...).

    Raises:
        CollectionLockedError: the Lite file is open in another process.
        StorageError: the server cannot be reached.
    """
    from pymilvus import MilvusClient

    is_file = lite_file(uri) is not None
    if is_file:
        _quiet_lite_grpc()
        Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    args: dict[str, Any] = dict(kwargs)
    if is_file:
        # Milvus Lite serves the file from a gRPC server in this process: keep-alive pings (pymilvus sends one every
        # 10 s) buy nothing there, and after a few idle minutes its server answers them with GOAWAY
        # "too_many_pings", which gRPC prints to stderr. INT_MAX turns client keep-alive off.
        args["grpc_options"] = {"grpc.keepalive_time_ms": 2**31 - 1, **dict(args.get("grpc_options") or {})}
    if token:
        args["token"] = token
    if timeout is not None:
        args["timeout"] = timeout
    try:
        client = MilvusClient(uri=uri, **args)
    except Exception as e:  # noqa: BLE001
        if _lock_holder(e) or (is_file and _lite_file_locked(uri)):
            raise CollectionLockedError(
                f"the Milvus Lite file {uri} is open in another process (Milvus Lite allows one process per file). "
                "Close the other process, use a copy of the file, or run a Milvus server "
                "(`milvus-lite server --data-dir ...` or a real Milvus) and connect by URI."
            ) from e
        where = "Milvus Lite file" if is_file else "Milvus server"
        msg = str(e).replace(token, "***") if token else str(e)
        kind, code = classify(e)
        if issubclass(kind, TransientStorageError):  # the client waited its timeout already
            kind = StorageUnavailableError
        raise kind(f"could not connect to the {where} at {redact_uri(uri)}: {msg}", code=code) from e
    if is_file:
        with _LITE_LOCK:
            key = os.path.abspath(uri)
            _LITE_CLIENTS[key] = _LITE_CLIENTS.get(key, 0) + 1
    return client


# -- releasing Milvus Lite files ------------------------------------------------------------------------------------
# Milvus Lite 3.x serves a .db file from a gRPC server thread inside this process, shared by every client of the
# file, and keeps the file lock until that server stops (at exit by default). Closing the last client of a file
# stops its server so another process (a worker, a re-run) can open the file.
_LITE_LOCK = threading.Lock()
_LITE_CLIENTS: dict[str, int] = {}


def disconnect(client: Any, uri: str) -> None:
    """Close a client from :func:`connect`; for a Milvus Lite file, release the file when no client of this process
    uses it any more."""
    try:
        client.close()
    finally:
        key = os.path.abspath(uri)
        with _LITE_LOCK:
            left = _LITE_CLIENTS.get(key)
            if left is not None:
                left -= 1
                if left > 0:
                    _LITE_CLIENTS[key] = left
                else:
                    del _LITE_CLIENTS[key]
        if left is not None and left <= 0:
            try:
                from milvus_lite.server_manager import server_manager_instance
            except ImportError:  # milvus-lite 2.x (a subprocess) or no Lite at all
                return
            server_manager_instance.release_server(uri)
