"""Reads of a store: the "already stored?" lookup, rows and raw vectors by id, filtered queries, iteration in
primary-key order and counts. A failed lookup is an error, never "not stored"."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.storage.core import StoreCore
from cir_milvus.storage.filters import in_filter
from cir_milvus.storage.results import Id
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.rows import record
from cir_milvus.storage.search import check_k

__all__ = ["LOOKUP_CHUNK", "StoreReads"]

LOOKUP_CHUNK = 1000
"""Ids per ``id in [...]`` lookup / delete call."""


class StoreReads(StoreCore):
    """Lookups, queries, iteration and counts (see :class:`~cir_milvus.storage.store.VectorStore`)."""

    def _lookup(self, what: str, ids: list[Id], fields: list[str], on_retry: Callable[[], None] | None = None,
                retry: RetryPolicy | None = None) -> Iterator[dict[str, Any]]:
        """The stored rows of ``ids`` (``id in [...]`` with escaped literals, ``LOOKUP_CHUNK`` per call). An empty
        answer is checked against the collection's load state: a released collection is an error, never "not
        stored"."""
        for s in range(0, len(ids), LOOKUP_CHUNK):
            expr = in_filter(self.fields.id_field, ids[s : s + LOOKUP_CHUNK])

            def fetch(expr: str = expr) -> list[dict[str, Any]]:
                rows: list[dict[str, Any]] = self._client.query(self.name, filter=expr, output_fields=fields,
                                                                consistency_level=self.consistency)
                if not rows:
                    self._check_loaded()
                return rows

            yield from self._call(what, fetch, on_retry, retry)

    def existing_ids(self, ids: Sequence[Id], on_retry: Callable[[], None] | None = None,
                     retry: RetryPolicy | None = None) -> set[Id]:
        """The "already stored?" lookup: which of ``ids`` are stored (ids are values: escaped literals).

        Raises:
            StorageError: the lookup failed (a failure is never reported as "not stored").
        """
        f = self.fields.id_field
        return {r[f] for r in self._lookup(f"look up ids in {self.name!r}", self._valid_ids(ids), [f], on_retry,
                                           retry)}

    def get(self, ids: Sequence[Id], *, output_fields: Sequence[str] | None = None,
            vectors: bool = False) -> list[dict[str, Any]]:
        """Stored rows by id, in the order of ``ids`` (missing ids are left out): ``{"id", "source", "metadata",
        ...}`` with typed fields merged into ``metadata``; ``vectors=True`` adds ``"vector"`` (the raw embedding,
        see :meth:`vectors`).

        Raises:
            StorageError: the lookup failed (a failure is never reported as missing ids).
        """
        valid = self._valid_ids(ids)
        fields = self._output_fields(output_fields, vectors)
        found = {r[self.fields.id_field]: record(self.fields, r, vectors)
                 for r in self._lookup(f"get rows from {self.name!r}", valid, fields)}
        return [found[i] for i in valid if i in found]

    def vectors(self, ids: Sequence[Id]) -> dict[Id, np.ndarray]:
        """Stored RAW embeddings by id: the normalised vector × the stored norm (or ``default_norm`` for attached
        collections without a norm field; un-normalised stored vectors are returned as they are)."""
        return {r["id"]: r["vector"] for r in self.get(ids, output_fields=[], vectors=True)}

    def query(self, filter: str = "", filter_params: Mapping[str, Any] | None = None, *,
              output_fields: Sequence[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows matching a filter template (``'price < {p}'`` with ``filter_params={"p": 20}``), as :meth:`get`."""
        expr = self.render_filter(filter, filter_params)
        if not expr and limit is None:
            raise ConfigError("query() without a filter needs limit= (or use iter_rows())")
        fields = self._output_fields(output_fields)
        kw: dict[str, Any] = {"limit": check_k(limit, "limit")} if limit is not None else {}
        rows = self._call(f"query {self.name!r}", lambda: self._client.query(
            self.name, filter=expr, output_fields=fields, consistency_level=self.consistency, **kw),
            user_filter=expr)
        return [record(self.fields, r) for r in rows]

    def iter_rows(self, batch_size: int = 1000, *, filter: str = "", filter_params: Mapping[str, Any] | None = None,
                  output_fields: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every matching row, as :meth:`get` returns them, in primary-key order, ``batch_size`` per query.

        Pages by primary key like pymilvus's query iterator (the server returns each page in key order), but the
        cursor goes into the next filter as an escaped literal: pymilvus pastes the last key in unescaped, so an id
        such as ``x" or id != "`` made its iterator page forever.
        """
        size = check_k(batch_size, "batch_size")
        f = self.fields
        user = self.render_filter(filter, filter_params)
        fields = self._output_fields(output_fields)
        if f.id_field not in fields:
            fields = [f.id_field, *fields]
        last: Any = None
        while True:
            cursor = "" if last is None else self.render_filter(f"{f.id_field} > {{last}}", {"last": last})
            expr = " and ".join(f"({e})" for e in (cursor, user) if e) or self._all_rows_filter()

            def fetch(expr: str = expr) -> list[dict[str, Any]]:
                return self._client.query(  # type: ignore[no-any-return]
                    self.name, filter=expr, output_fields=fields, limit=size, consistency_level=self.consistency,
                    iterator="True", reduce_stop_for_best="True")

            page = self._call(f"iterate {self.name!r}", fetch, user_filter=user)
            if not page:
                return
            page = sorted(page, key=lambda r: r[f.id_field])  # key order, whatever the backend returned
            for r in page:
                yield record(f, r)
            last = page[-1][f.id_field]

    def iter_ids(self, batch_size: int = 1000) -> Iterator[Id]:
        """Every stored id."""
        for r in self.iter_rows(batch_size, output_fields=[]):
            yield r["id"]

    def count(self, filter: str = "", filter_params: Mapping[str, Any] | None = None) -> int:
        """Number of rows (matching a filter), read with Strong consistency."""
        expr = self.render_filter(filter, filter_params)
        res = self._call(f"count {self.name!r}", lambda: self._client.query(
            self.name, filter=expr, output_fields=["count(*)"], consistency_level="Strong"), user_filter=expr)
        return int(res[0]["count(*)"])

    def __len__(self) -> int:
        return self.count()
