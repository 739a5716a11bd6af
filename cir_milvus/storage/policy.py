"""The one id, source and metadata policy of the store: what a row may hold, checked by the server's BYTE limits.

Milvus servers count a VARCHAR's ``max_length`` in UTF-8 bytes; Milvus Lite counts characters. The store checks
bytes, so a record that Lite accepts is never refused later by a server. A bad value is reported per record with a
reason (never retried); a good record next to it is still stored.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["IdPolicy", "MAX_ID_BYTES", "MAX_METADATA_BYTES", "MAX_SOURCE_BYTES", "MetadataError", "check_id", "jsonable",
           "safe_text", "source_text"]

MAX_ID_BYTES = 512
"""``max_length`` of the ``id`` field of collections the store creates (UTF-8 bytes)."""
MAX_SOURCE_BYTES = 65_535
"""``max_length`` of the ``source`` field (UTF-8 bytes; Milvus's VARCHAR maximum, so any real path is stored whole
and the service can find the image again); longer sources are cut on a character boundary."""
MAX_METADATA_BYTES = 65_536
"""Milvus's default limit for one JSON field value (bytes of its JSON text)."""


@dataclass(frozen=True)
class IdPolicy:
    """The id rule of one collection, picklable (Ray workers check ids with it)."""

    id_type: str = "varchar"
    max_bytes: int = MAX_ID_BYTES

    def check_id(self, value: Any) -> str | None:
        """Why ``value`` cannot be an id (``None`` when it can); see :func:`check_id`."""
        return check_id(value, id_type=self.id_type, max_bytes=self.max_bytes)


class MetadataError(ValueError):
    """Metadata that cannot be stored (a cycle, too large); the message is the skip reason."""


def safe_text(s: str) -> str:
    """``s`` as valid UTF-8 text: lone surrogates (from undecodable file names, ``os.fsdecode``) become ``\\xNN``
    escapes of the original bytes (lossless for file names) or U+FFFD."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        try:
            return os.fsencode(s).decode("utf-8", "backslashreplace")
        except UnicodeError:
            return s.encode("utf-8", "replace").decode("utf-8")


def source_text(source: Any, max_bytes: int = MAX_SOURCE_BYTES) -> str:
    """A stored ``source``: valid UTF-8, cut to ``max_bytes`` bytes on a character boundary."""
    s = safe_text(os.fspath(source) if isinstance(source, os.PathLike) else str(source or ""))
    b = s.encode("utf-8")
    return s if len(b) <= max_bytes else b[:max_bytes].decode("utf-8", "ignore")


def check_id(value: Any, *, id_type: str = "varchar", max_bytes: int = MAX_ID_BYTES) -> str | None:
    """Why ``value`` cannot be a primary key of this store (``None`` when it can).

    Args:
        value: the id.
        id_type: ``"varchar"`` (strings of 1..``max_bytes`` UTF-8 bytes) or ``"int64"``.
        max_bytes: the id field's ``max_length``.
    """
    if id_type == "int64":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"invalid id {value!r}: this collection's ids are 64-bit integers"
        if not -(2**63) <= int(value) < 2**63:
            return f"invalid id {value!r}: outside the 64-bit integer range"
        return None
    if not isinstance(value, str) or not value:
        return f"invalid id {value!r}: ids must be non-empty strings"
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"invalid id {safe_text(value)!r}: not valid UTF-8 (a lone surrogate)"
    if n > max_bytes:
        return f"invalid id {value[:40]!r}...: {n} bytes as UTF-8, the limit is {max_bytes}"
    return None


def jsonable(md: Mapping[str, Any], *, max_bytes: int = MAX_METADATA_BYTES) -> dict[str, Any]:
    """Metadata as Milvus accepts it in a JSON field.

    Non-finite floats become ``null``; integers outside int64 become their decimal string; numpy scalars and arrays become Python numbers and lists; keys become
    strings; lone surrogates in strings are replaced (:func:`safe_text`); other objects become their ``str()``.

    Raises:
        MetadataError: the metadata contains a cycle, or its JSON is larger than ``max_bytes``.
    """
    active: set[int] = set()

    def fix(v: Any) -> Any:
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, str):
            return safe_text(v)
        if isinstance(v, numbers.Integral):
            i = int(v)
            return i if -(2**63) <= i < 2**63 else str(i)  # Milvus JSON integers are int64: keep the digits
        if isinstance(v, numbers.Real):
            f = float(v)
            return f if math.isfinite(f) else None
        if hasattr(v, "tolist") and hasattr(v, "dtype"):  # numpy arrays and scalars
            return fix(v.tolist())
        if isinstance(v, (Mapping, list, tuple, set, frozenset)):
            if id(v) in active:
                raise MetadataError("metadata contains a cycle (a dict or list that contains itself)")
            active.add(id(v))
            try:
                if isinstance(v, Mapping):
                    return {safe_text(str(k)): fix(x) for k, x in v.items()}
                return [fix(x) for x in v]
            finally:
                active.discard(id(v))
        return safe_text(str(v))

    if not isinstance(md, Mapping):
        raise MetadataError(f"metadata must be a dict, got {type(md).__name__}")
    try:
        out: dict[str, Any] = fix(md)
    except RecursionError as e:
        raise MetadataError("metadata is nested too deeply to store as JSON") from e
    size = len(json.dumps(out, ensure_ascii=False).encode("utf-8"))
    if size > max_bytes:
        raise MetadataError(f"metadata is {size} bytes as JSON, larger than the limit of {max_bytes}")
    return out
