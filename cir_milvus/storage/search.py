"""Search requests and their hits: query vectors checked, ``k`` checked, reference exclusion, group-by (native, or
emulated by over-fetching on servers without it), and Milvus's hit dicts turned into :class:`Hits`."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cir_milvus.errors import ConfigError, StorageError
from cir_milvus.storage.results import Hit, Hits
from cir_milvus.storage.rows import record
from cir_milvus.storage.schema import FieldMap

__all__ = ["GROUP_BY_OVERFETCH", "MAX_K", "SearchPlan", "check_k", "collect_hits", "plan_search", "query_matrix"]

MAX_K = 16384
"""Milvus's largest ``limit`` (and ``nq``)."""
GROUP_BY_OVERFETCH = 8
"""Servers without native group-by (Milvus < 2.4) get ``k × 8`` candidates, deduplicated client-side."""


def check_k(k: Any, what: str = "k") -> int:
    """``k`` as an int in 1..16384, or ConfigError."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ConfigError(f"{what} must be an integer, got {k!r}")
    if not 1 <= int(k) <= MAX_K:
        raise ConfigError(f"{what} must be between 1 and {MAX_K}, got {k}")
    return int(k)


def query_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Query vectors as finite float32 ``[N, dim]`` (one vector becomes ``[1, dim]``), or ConfigError."""
    q = np.asarray(vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ConfigError(f"query vectors must be [N, {dim}] for this collection; got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ConfigError("query vectors contain NaN or inf")
    return q


@dataclass(frozen=True)
class SearchPlan:
    """What one ``search_vectors`` call asks Milvus for, and how its hits are trimmed.

    Attributes:
        k: hits kept per query.
        limit: candidates asked for per query (``k`` + excluded ids, × 8 for emulated group-by).
        exclude: per query, the ids dropped from its hits.
        group_by: the field of at most one hit per value, or ``None``.
        native_group: Milvus groups (else the plan deduplicates candidates).
        output_fields: the fields read with each hit.
    """

    k: int
    limit: int
    exclude: list[set[Any]]
    group_by: str | None
    native_group: bool
    output_fields: list[str]


def plan_search(f: FieldMap, collection: str, n_queries: int, k: Any, *, exclude_ids: Sequence[Any] | None,
                group_by: str | None, output_fields: list[str], native_group_by: bool) -> SearchPlan:
    """Check ``k``, ``exclude_ids`` and ``group_by`` against the collection, and size the request."""
    k = check_k(k)
    raw_ex = list(exclude_ids) if exclude_ids is not None else [None] * n_queries
    if len(raw_ex) != n_queries:
        raise ConfigError(f"{len(raw_ex)} exclude_ids for {n_queries} queries")
    exclude: list[set[Any]] = [set() if e is None else set(e) if isinstance(e, (list, tuple, set, frozenset))
                               else {e} for e in raw_ex]
    limit = k + max((len(e) for e in exclude), default=0)
    native = False
    if group_by is not None:
        if group_by not in f.scalars:
            raise ConfigError(f"group_by={group_by!r} must be a typed scalar field of {collection!r} "
                              f"(fields: {sorted(f.scalars)}); declare it with fields= at creation")
        if f.scalars[group_by] in ("float", "double"):
            raise ConfigError(f"group_by={group_by!r} is a {f.scalars[group_by]} field; Milvus groups by integer, "
                              "string or bool fields only")
        output_fields = list(dict.fromkeys([*output_fields, group_by]))
        native = native_group_by
        if not native:
            limit *= GROUP_BY_OVERFETCH
    return SearchPlan(k=k, limit=min(limit, MAX_K), exclude=exclude, group_by=group_by, native_group=native,
                      output_fields=output_fields)


def hit_id(f: FieldMap, collection: str, h: Mapping[str, Any]) -> Any:
    """A search hit's primary key (pymilvus names it by the primary field: ``id``, ``pk``...)."""
    ent = h.get("entity", {}) or {}
    for key in (f.id_field, "id"):
        if key in ent:
            return ent[key]
        try:
            return h[key]
        except KeyError:
            continue
    raise StorageError(f"a search hit of {collection!r} has no primary key {f.id_field!r}: {h!r}")


def _hit(f: FieldMap, collection: str, h: Mapping[str, Any]) -> Hit:
    ent = dict(h.get("entity", {}) or {})
    hid = hit_id(f, collection, h)
    ent.setdefault(f.id_field, hid)
    rec = record(f, ent)
    return Hit(id=hid, score=float(h["distance"]), metadata=rec["metadata"], source=rec["source"])


def collect_hits(f: FieldMap, collection: str, plan: SearchPlan, query: int, hits: Sequence[Mapping[str, Any]]) -> Hits:
    """The :class:`Hits` of query number ``query``: excluded ids dropped, one hit per group, at most ``k``."""
    ex = plan.exclude[query]
    row = Hits()
    groups: set[Any] = set()
    for h in hits:
        if hit_id(f, collection, h) in ex:
            continue
        hit = _hit(f, collection, h)
        if plan.group_by is not None:
            g = hit.metadata.get(plan.group_by)
            if g in groups:
                continue
            groups.add(g)
        row.append(hit)
        if len(row) == plan.k:
            break
    return row
