"""The core every :class:`~cir_milvus.storage.store.VectorStore` operation stands on: the client, the collection's
field map and recipe, the one call wrapper (errors classified where they are wrapped, transient ones retried by the
one policy, a filter the server cannot parse blamed by asking the server again), the load-state check behind every
empty answer, and the record policy of this collection."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.errors import (
    CollectionNotFoundError,
    CollectionNotLoadedError,
    FilterError,
    StorageError,
    TransientStorageError,
)
from cir_milvus.storage.classify import UNCLASSIFIED_CODES
from cir_milvus.storage.client import Capabilities, disconnect, milvus_errors, redact_uri
from cir_milvus.storage.filters import render_filter
from cir_milvus.storage.lifecycle import Consistency
from cir_milvus.storage.policy import MAX_ID_BYTES, MAX_METADATA_BYTES, IdPolicy, jsonable
from cir_milvus.storage.recipe import Recipe
from cir_milvus.storage.results import Id
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.rows import make_row, output_fields, split_metadata
from cir_milvus.storage.schema import FieldMap

__all__ = ["StoreCore"]

log = logging.getLogger(__name__)


class StoreCore:
    """The state and the call wrapper of a store (see :class:`~cir_milvus.storage.store.VectorStore`)."""

    def __init__(self, client: Any, name: str, *, uri: str, caps: Capabilities, fields: FieldMap,
                 recipe: Recipe | None, owns_client: bool, retry: RetryPolicy | None = None,
                 consistency: Consistency = "Session") -> None:
        self._client = client
        self.name = name
        self.uri = uri
        self.capabilities = caps
        self.fields = fields
        self.recipe = recipe
        self.retry = retry or RetryPolicy()
        self.consistency = consistency
        self._owns_client = owns_client
        self._closed = False

    # -- the one call wrapper -----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any], on_retry: Callable[[], None] | None = None,
              retry: RetryPolicy | None = None, *, user_filter: str = "") -> Any:
        """Every Milvus call of the store: errors wrapped and classified, transient ones retried by the policy
        (``retry`` overrides it for one call, e.g. ``ingest(retry_timeout=...)``). A call carrying a user filter
        that fails for a permanent or unclassified reason asks the server whether the filter is to blame
        (:class:`FilterError`, never retried)."""

        def attempt() -> Any:
            try:
                with milvus_errors(what):
                    return fn()
            except StorageError as e:
                if user_filter and not isinstance(e, CollectionNotLoadedError) and (
                        not isinstance(e, TransientStorageError) or e.code in UNCLASSIFIED_CODES):
                    self._blame_filter(user_filter, e)
                raise

        def reload() -> None:
            for name in dict.fromkeys((self.name, self.fields.text_collection or self.name)):  # and a text mirror
                with milvus_errors(f"load collection {name!r}"):
                    self._client.load_collection(name)

        return (retry or self.retry).call(attempt, what, on_retry=on_retry, reload=reload)

    def _all_rows_filter(self) -> str:
        f = self.fields
        return f'{f.id_field} != ""' if f.id_type == "varchar" else f"{f.id_field} < {2**63 - 1}"

    def _blame_filter(self, expr: str, error: StorageError) -> None:
        """Raise :class:`FilterError` when the server answers a plain query but refuses ``expr`` again (decided
        by the server's answers, not by its wording); return when the failure lies elsewhere."""

        def probe(f: str) -> StorageError | None:
            try:
                with milvus_errors(f"query {self.name!r}"):
                    self._client.query(self.name, filter=f, output_fields=[self.fields.id_field], limit=1)
            except StorageError as e:
                return e
            return None

        if probe(self._all_rows_filter()) is not None:
            return  # the server or the collection is failing, not the filter
        again = probe(expr)
        if again is None or (isinstance(again, TransientStorageError) and again.code not in UNCLASSIFIED_CODES):
            return  # it runs now, or failed for a known passing reason (unavailable, not loaded)
        cause = error.__cause__ or error
        words = getattr(cause, "message", None) or str(cause)
        raise FilterError(f"Milvus cannot run the filter {expr!r} on {self.name!r}: {words}. Check the template "
                          "(field names, operators, quotes: values go in filter_params)") from error

    def _check_loaded(self, collection: str | None = None) -> None:
        """Raise :class:`CollectionNotLoadedError` when the collection (or ``collection``: its text mirror) is not
        loaded: an empty answer from a released or loading collection is not "nothing stored" (called inside a
        retried attempt, so it loads and retries)."""
        get_state = getattr(self._client, "get_load_state", None)
        if get_state is None:  # a client double without load states
            return
        which = collection or self.name
        state = get_state(which).get("state")
        name = str(getattr(state, "name", state))
        if name == "NotExist":
            raise CollectionNotFoundError(f"collection {which!r} at {redact_uri(self.uri)} no longer exists")
        if name != "Loaded":
            raise CollectionNotLoadedError(f"collection {which!r} is not loaded (state {name}); loading it",
                                           code=101)

    # -- the id / record policy ---------------------------------------------------------------------------------
    @property
    def id_policy(self) -> IdPolicy:
        """This collection's id rule (picklable, for worker processes)."""
        return IdPolicy(self.fields.id_type, self.fields.id_max_bytes or MAX_ID_BYTES)

    def check_id(self, value: Any) -> str | None:
        """Why ``value`` cannot be an id of this collection (``None`` when it can): type and UTF-8 byte length."""
        return self.id_policy.check_id(value)

    def prepare_metadata(self, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        """Metadata as it will be stored (:func:`~cir_milvus.storage.policy.jsonable`).

        Raises:
            MetadataError: a cycle, or larger than Milvus's 64 KB JSON limit (the message is the skip reason).
        """
        md = jsonable(metadata or {}, max_bytes=MAX_METADATA_BYTES)
        split_metadata(self.fields, md)  # typed values must convert
        return md

    def _row(self, rid: Id, vec: np.ndarray, norm: float, source: Any, metadata: Mapping[str, Any] | None
             ) -> dict[str, Any]:
        return make_row(self.fields, self.name, rid, vec, norm, source, self.prepare_metadata(metadata))

    def _valid_ids(self, ids: Sequence[Id]) -> list[Id]:
        return [i for i in dict.fromkeys(ids) if self.check_id(i) is None]

    def _output_fields(self, wanted: Sequence[str] | None, vectors: bool = False) -> list[str]:
        return output_fields(self.fields, wanted, vectors)

    def render_filter(self, expr: str | None, params: Mapping[str, Any] | None) -> str:
        """A filter template with its values rendered as literals for this backend (see
        :mod:`~cir_milvus.storage.filters`: ``like {p}`` matches the value exactly, ``like {p:prefix}`` by prefix).

        Raises:
            FilterError: a placeholder without a value or inside quotes, an unused value, a bad marker.
        """
        if not expr:
            if params:
                raise FilterError("filter_params given without a filter expression")
            return ""
        return render_filter(expr, params, json_in=not self.capabilities.is_lite)

    @property
    def dim(self) -> int:
        return self.fields.dim

    def close(self) -> None:
        """Release the connection (a Lite file can then be opened by another process). Idempotent; an injected
        client is left open."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            with milvus_errors("close"):
                disconnect(self._client, self.uri)

    def __repr__(self) -> str:
        return f"VectorStore({redact_uri(self.uri)!r}, {self.name!r}, dim={self.dim}, metric={self.fields.metric})"
