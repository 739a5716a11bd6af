"""The record policy of a collection: metadata split between typed fields and the JSON field, the row written for a
record, the fields read back, and a stored row turned back into ``{"id", "source", "metadata"[, "vector"]}``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.storage.policy import source_text
from cir_milvus.storage.results import Id
from cir_milvus.storage.schema import FieldMap

__all__ = ["coerce_scalar", "make_row", "output_fields", "raw_vector", "record", "split_metadata"]


def coerce_scalar(name: str, t: str, v: Any) -> Any:
    """A metadata value for a typed field (numbers from strings: CSV columns), or ValueError with a reason."""
    if t == "varchar":
        if isinstance(v, (dict, list)):
            raise ValueError(f"typed field {name!r} is a string field, got {type(v).__name__}")
        return source_text(v, 1 << 30) if not isinstance(v, str) else v
    if t == "bool":
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return v.strip().lower() in ("true", "1", "yes")
        raise ValueError(f"typed field {name!r} needs a boolean, got {v!r}")
    if isinstance(v, bool):
        raise ValueError(f"typed field {name!r} needs a number, got {v!r}")
    if t.startswith("int"):
        try:
            f = float(v) if isinstance(v, str) else v
            if not isinstance(f, numbers.Real) or not float(f).is_integer():
                raise TypeError
            return int(float(f))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"typed field {name!r} needs an integer, got {v!r}") from None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"typed field {name!r} needs a number, got {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"typed field {name!r} needs a finite number, got {v!r}")
    return f


def split_metadata(f: FieldMap, md: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values of typed scalar fields, the rest) — raises ValueError when a typed value does not convert."""
    typed: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for k, v in md.items():
        t = f.scalars.get(k)
        if t is None:
            rest[k] = v
            continue
        if v is None:
            if k not in f.nullable:
                raise ValueError(f"typed field {k!r} cannot be null on this backend")
            typed[k] = None
            continue
        val = coerce_scalar(k, t, v)
        if t == "varchar":
            limit = f.scalar_max_bytes.get(k, 65535)
            if len(val.encode("utf-8", "replace")) > limit:
                raise ValueError(f"typed field {k!r} is longer than its max_length of {limit} bytes")
        typed[k] = val
    missing = [k for k in f.scalars if k not in typed and k not in f.nullable]
    if missing:
        raise ValueError(f"typed field(s) {missing} have no value and are not nullable; give every record a value")
    return typed, rest


def make_row(f: FieldMap, collection: str, rid: Id, vec: np.ndarray, norm: float, source: str,
             md: dict[str, Any]) -> dict[str, Any]:
    """The row written for one record (ValueError with the reason when the metadata does not fit the schema)."""
    typed, rest = split_metadata(f, md)
    row: dict[str, Any] = {f.id_field: rid, f.vector_field: vec.tolist()}
    if f.norm_field:
        row[f.norm_field] = float(norm)
    if f.source_field:
        row[f.source_field] = source_text(source, f.source_max_bytes)
    for k in f.nullable:
        typed.setdefault(k, None)
    row.update(typed)
    if f.metadata_field:
        row[f.metadata_field] = rest
    elif rest:
        if not f.dynamic:
            raise ValueError(f"metadata keys {sorted(rest)[:5]} have no field in {collection!r} (no JSON metadata "
                             "field, no dynamic fields)")
        clash = sorted(set(rest) & {f.id_field, f.vector_field, f.norm_field, f.source_field})
        if clash:
            raise ValueError(f"metadata keys {clash} clash with field names of {collection!r}")
        row.update(rest)
    return row


def output_fields(f: FieldMap, wanted: Sequence[str] | None, vectors: bool = False) -> list[str]:
    """The fields to read: ``wanted`` (default: source, metadata, typed fields) plus the id, and the vector and norm
    with ``vectors``."""
    if wanted is None:
        out = [f.id_field, *[x for x in (f.source_field, f.metadata_field) if x], *f.scalars]
        if f.dynamic and not f.metadata_field:
            out.append("$meta")
    else:
        out = [f.id_field, *[x for x in wanted if x not in (f.id_field, f.vector_field)]]
    if vectors:
        out += [f.vector_field, *([f.norm_field] if f.norm_field else [])]
    return list(dict.fromkeys(out))


def raw_vector(f: FieldMap, vec: Any, norm: Any) -> np.ndarray:
    """The raw embedding of a stored row: the normalised vector × its norm (or ``default_norm``)."""
    v = np.asarray(vec, dtype=np.float32)
    if norm is not None:
        return v * np.float32(norm)
    if f.default_norm is not None:
        n = float(np.linalg.norm(v))
        return v / max(n, 1e-12) * np.float32(f.default_norm)
    return v


def record(f: FieldMap, r: Mapping[str, Any], vectors: bool = False) -> dict[str, Any]:
    """A stored row as ``{"id", "source", "metadata"[, "vector"]}``, typed and dynamic fields merged into metadata."""
    md: dict[str, Any] = dict(r.get(f.metadata_field) or {}) if f.metadata_field else {}
    skip = {f.id_field, f.vector_field, f.norm_field, f.source_field, f.metadata_field, f.text_vector_field,
            f.text_flag_field, f.text_raw_field, f.text_sparse_field, "$meta"}
    for k, v in r.items():
        if k not in skip:
            md[k] = v
    meta = r.get("$meta")
    if isinstance(meta, Mapping):
        md.update(meta)
    out: dict[str, Any] = {"id": r[f.id_field], "source": (r.get(f.source_field) or "") if f.source_field else "",
                           "metadata": md}
    if vectors and f.vector_field in r:
        out["vector"] = raw_vector(f, r[f.vector_field], r.get(f.norm_field) if f.norm_field else None)
    return out
