"""``VectorStore``: the encoder-free store under every write and read of cir_milvus.

It owns the Milvus client (a URI, or an injected ``MilvusClient``), the collection's schema and field names
(:mod:`~cir_milvus.storage.schema`), the recipe property, the id / source / metadata policy
(:mod:`~cir_milvus.storage.policy`, :mod:`~cir_milvus.storage.rows`), THE upsert path (byte-chunked, one retry
policy, bad rows isolated by bisection: :mod:`~cir_milvus.storage.write`), the "already stored?" lookup, reads
(``get``, ``query``, ``search_vectors`` with filters, reference exclusion and group-by, iterators), ``delete``
returning true counts, ``update_metadata`` without re-encoding, ``info`` and ``close``.
:class:`~cir_milvus.CIRCollection`, ``ingest()``, ``ingest_ray()`` and the evaluation runner all write through it.
It never imports an encoder or torch.

Two kinds of collections:

- **created by the store** (:meth:`VectorStore.create`): ``id`` VARCHAR(512 bytes) primary key, ``vector``
  FLOAT_VECTOR (L2-normalised), ``norm`` FLOAT (the raw embedding's norm: pseudo-token heads need raw embeddings),
  ``source`` VARCHAR(65,535 bytes: whole paths), ``metadata`` JSON, optional typed scalar fields (``fields={"price": "double"}``),
  an optional partition key, dynamic fields on. The recipe is a collection property. Mixed galleries
  (``item_text=True``) add the item-text fields, or on servers before Milvus 2.4 a text mirror collection that this
  store writes, deletes and drops with the main one (:mod:`~cir_milvus.storage.mirror`).
- **attached** (:meth:`VectorStore.open` with ``schema={"vector_field": ..., "id_field": ..., "metric": ...}``):
  someone else's collection (INT64 or VARCHAR ids, any metric). Without a norm field, raw embeddings are rebuilt
  with ``default_norm`` (see :class:`FieldMap`).

Every Milvus call goes through one wrapper: failures are classified where they are wrapped
(:mod:`~cir_milvus.storage.classify`) and retried by the one :class:`~cir_milvus.storage.retry.RetryPolicy`. A
lookup or search never turns a failure into "nothing stored": a collection that is released or still loading
raises :class:`~cir_milvus.errors.CollectionNotLoadedError` (loaded and retried), and a filter the server cannot
parse raises :class:`~cir_milvus.errors.FilterError` at once.

Example:
    >>> import numpy as np
    >>> from cir_milvus.storage import VectorStore
    >>> store = VectorStore.create("./vec.db", "items", dim=4, fields={"price": "double"})  # doctest: +SKIP
    >>> store.upsert(["a", "b"], np.eye(4)[:2], metadata=[{"price": 5}, {"price": 30}])  # doctest: +SKIP
    >>> store.search_vectors(np.eye(4)[:1], k=1, filter="price < {p}", filter_params={"p": 20})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.errors import (
    CollectionNotFoundError,
    ConfigError,
    StorageError,
)
from cir_milvus.storage.client import Capabilities, redact_uri
from cir_milvus.storage.filters import in_filter
from cir_milvus.storage.hybrid import StoreHybrid, text_columns
from cir_milvus.storage.lifecycle import (
    Connection,
    Consistency,
    check_consistency,
    check_converged,
    check_index,
    check_mirror_slot,
    create_collection,
    database_call,
    drop_collection,
    drop_with_mirror,
    plan_create,
    wait_for_index,
)
from cir_milvus.storage.mirror import (
    TEXT_COLLECTION_KEY,
    flush_with_mirror,
    hide_mirrors,
    mirror_owner,
    not_a_collection,
    open_mirror,
    user_collection_exists,
    write_mirrored,
)
from cir_milvus.storage.policy import source_text
from cir_milvus.storage.reads import LOOKUP_CHUNK
from cir_milvus.storage.recipe import PROPERTY_KEY, Recipe
from cir_milvus.storage.results import Hit, Hits, Id, Skipped, WriteResult
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.schema import ATTACH_KEYS, DEFAULT_SEARCH_PARAMS, FieldMap, field_map, is_own, read_recipe
from cir_milvus.storage.search import collect_hits, plan_search, query_matrix
from cir_milvus.storage.write import MAX_UPSERT_BYTES, check_shapes, chunk_rows_by_bytes, prepare_rows

__all__ = ["MAX_UPSERT_BYTES", "Consistency", "FieldMap", "Hit", "Hits", "Id", "Skipped", "VectorStore", "WriteResult",
           "chunk_rows_by_bytes"]

log = logging.getLogger(__name__)

SEARCH_CHUNK = 1024
"""Query vectors per search call."""


class VectorStore(StoreHybrid):
    """A Milvus collection of image vectors: schema, recipe, ids, writes, reads and deletes; no encoder.

    Build with :meth:`create` or :meth:`open`.

    Attributes:
        name: collection name.
        uri: where it lives (credentials redacted in every message).
        recipe: the stored :class:`~cir_milvus.storage.recipe.Recipe` (``None`` for a plain vector store).
        dim: vector dimension.
        capabilities: what the connected Milvus can do.
        fields: the :class:`FieldMap`.
        retry: the one :class:`~cir_milvus.storage.retry.RetryPolicy` of every write and lookup.
        consistency: consistency level of searches and lookups.
    """

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def exists(cls, uri: Any, name: str, *, token: str | None = None, timeout: float | None = 10.0,
               connect_kwargs: Mapping[str, Any] | None = None) -> bool:
        """Whether the collection exists: THE existence check (the connection is released afterwards, so a Lite
        file stays free; a Lite path that does not exist is ``False`` and nothing is created there). Agrees with
        :meth:`list_collections`: a mixed gallery's text mirror is part of its collection, not one of its own.

        Raises:
            StorageUnavailableError: the server did not answer within ``timeout``.
        """
        return database_call(uri, f"check collection {name!r}", lambda c: user_collection_exists(c, name), False,
                             token=token, timeout=timeout, connect_kwargs=connect_kwargs)

    @classmethod
    def list_collections(cls, uri: Any, *, token: str | None = None, timeout: float | None = 10.0,
                         connect_kwargs: Mapping[str, Any] | None = None) -> list[str]:
        """The collections at ``uri``, sorted, including ones cir_milvus did not create (``[]`` for a Lite path that
        does not exist: nothing is created there), without the text mirrors of mixed galleries
        (:mod:`~cir_milvus.storage.mirror`). Retried within ``timeout``, like :meth:`exists`."""
        nothing: list[str] = []
        return database_call(uri, "list collections", lambda c: hide_mirrors(list(map(str, c.list_collections()))),
                             nothing, token=token, timeout=timeout, connect_kwargs=connect_kwargs)

    @classmethod
    def drop_collection(cls, uri: Any, name: str, *, missing_ok: bool = False, token: str | None = None,
                        timeout: float | None = 10.0, connect_kwargs: Mapping[str, Any] | None = None) -> None:
        """Drop a collection and its rows (and its text mirror) without opening it (:meth:`drop` drops an open
        store's).

        Raises:
            CollectionNotFoundError: no such collection (the message lists the existing ones), unless
                ``missing_ok``.
        """
        drop_collection(uri, name, missing_ok=missing_ok, token=token, timeout=timeout,
                        connect_kwargs=connect_kwargs)

    @classmethod
    def create(
        cls,
        uri: Any,
        name: str,
        *,
        dim: int,
        recipe: Recipe | None = None,
        metric: str | None = None,
        index: str | None = None,
        index_params: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
        dynamic: bool = True,
        item_text: bool = False,
        full_text: bool = False,
        overwrite: bool = False,
        exist_ok: bool = False,
        token: str | None = None,
        timeout: float | None = 10.0,
        connect_kwargs: Mapping[str, Any] | None = None,
        consistency: Consistency = "Session",
        retry: RetryPolicy | None = None,
    ) -> VectorStore:
        """Create a collection (everything is validated before anything is dropped or created).

        ``exist_ok=True`` is create-or-open, safe when several processes create the same collection at once: the
        first creates it, the others open it, and each checks that the collection is the one it asked for (dim,
        metric and the recipe's encoder; the image decode mode is the collection's own), refusing otherwise with
        :class:`~cir_milvus.errors.RecipeMismatchError` naming both (the metric only when ``metric=`` is given). The first calls (server version, "exists?")
        are retried within ``timeout`` (a server that is restarting is waited for). A create that fails leaves no
        partial collection behind, and no Milvus Lite folder when it made a new one.

        Args:
            uri: a Milvus Lite file (``"./cir.db"``), a server URI, or a ``MilvusClient`` (not closed by
                :meth:`close`).
            name: collection name.
            dim: vector dimension.
            recipe: how the vectors are made (stored as a collection property); its ``metric`` and ``index`` are
                used unless ``metric`` / ``index`` are given.
            metric: ``IP`` (default; cosine on the normalised vectors), ``COSINE`` or ``L2``.
            index: ``HNSW`` (default), ``IVF_FLAT``, ``FLAT``... checked against what the backend builds.
            index_params: build parameters (HNSW: ``M``, ``efConstruction``).
            fields: typed scalar fields ``{"price": "double", "brand": ("varchar", 128), "year": "int64"}``;
                metadata keys of these names are stored in them (filter as ``price < 20``) and returned merged
                into ``Hit.metadata``.
            partition_key: one of ``fields`` (``varchar`` or ``int64``) to partition by (multi-tenant catalogues).
            dynamic: enable dynamic fields.
            item_text: add the item-text vector field (mixed galleries, see :mod:`~cir_milvus.storage.hybrid`).
            full_text: also keep the item text with a BM25 sparse field (target ``"bm25"``; Milvus Lite 3.x or
                Milvus >= 2.5).
            overwrite: drop an existing collection of this name (after validation).
            exist_ok: open the collection when it exists (create-or-open, see above).
            token, timeout, connect_kwargs: connection options (timeout in seconds; TLS options...).
            consistency: consistency level of searches and lookups (``"Session"``: read-your-own-writes).
            retry: the retry policy (default: 300 s of backoff).

        Raises:
            ConfigError: bad dim / metric / index / fields, or the collection exists (without ``exist_ok`` /
                ``overwrite``).
            RecipeMismatchError: ``exist_ok`` and the existing collection is another one (dim, metric, encoder).
            StorageError: Milvus failed (connections opened here are released).
        """
        plan = plan_create(dim, recipe, metric, index, index_params, fields, partition_key, dynamic, item_text,
                           full_text)
        check_consistency(consistency)
        conn = Connection.open(uri, token, timeout, connect_kwargs, retry, create=True)
        try:
            caps = conn.capabilities()
            check_index(plan, caps)
            plan = plan.on(caps, name)
            exists = conn.call(f"check collection {name!r}", lambda: bool(conn.client.has_collection(name)))
            check_mirror_slot(conn, name, plan)
            if exists and overwrite:  # everything above is validated; only now drop
                conn.call(f"drop collection {name!r}", lambda: drop_with_mirror(conn.client, name))
            elif exists and not exist_ok:
                raise ConfigError(f"collection {name!r} already exists at {redact_uri(conn.where)}; open it, pass "
                                  "exist_ok=True, or overwrite=True to drop it")
            if recipe is not None and (not exists or overwrite):
                recipe.metric = plan.metric
                recipe.index = {"type": plan.index_type, "params": plan.index_params}
                if recipe.item_text is not None and plan.text_collection is not None:
                    recipe.item_text = {**recipe.item_text, "collection": plan.text_collection}
            if (not exists or overwrite) and create_collection(conn, caps, name, plan, recipe):
                return cls(conn.client, name, uri=conn.where, caps=caps, fields=plan.field_map(caps), recipe=recipe,
                           owns_client=conn.owns, retry=retry, consistency=consistency)
            if not exist_ok:  # another creator got there between our check and our create
                raise ConfigError(f"collection {name!r} was created at {redact_uri(conn.where)} by someone else "
                                  "meanwhile; pass exist_ok=True to open it")
            wait_for_index(conn, name, "vector")
            store = cls._open_client(conn, caps, name, schema=None, recipe=None, consistency=consistency,
                                     retry=retry)
            check_converged(name, conn.where, plan, store.fields, store.recipe, recipe, metric_given=metric is not None)
            return store
        except BaseException:
            conn.release(failed=True)
            raise

    @classmethod
    def open(
        cls,
        uri: Any,
        name: str,
        *,
        schema: Mapping[str, Any] | None = None,
        recipe: Recipe | None = None,
        store_recipe: bool = True,
        token: str | None = None,
        timeout: float | None = 10.0,
        connect_kwargs: Mapping[str, Any] | None = None,
        consistency: Consistency = "Session",
        retry: RetryPolicy | None = None,
    ) -> VectorStore:
        """Open a collection created by the store, or attach to someone else's.

        The first calls (server version, "exists?", describe, load) are retried within ``timeout``, so opening
        right after a server restart waits for it. A Milvus Lite path that does not exist is not created.

        Args:
            uri: Lite file, server URI or ``MilvusClient``.
            name: collection name.
            schema: to attach a collection the store did not create: ``{"vector_field": "emb", "id_field": "pk",
                "metric": "COSINE"}`` plus optionally ``norm_field``, ``source_field``, ``metadata_field`` and
                ``default_norm``. Field types and limits are read from the collection.
            recipe: the recipe of an attached collection (stored as its property when ``store_recipe`` and the
                server allows it, so later opens need no ``recipe=``).
            store_recipe: write ``recipe`` into the attached collection's properties.
            token, timeout, connect_kwargs, consistency, retry: as for :meth:`create`.

        Raises:
            CollectionNotFoundError: no such collection (the message lists the existing ones), or no Lite database
                at the path.
            ConfigError: the collection has no recipe and no ``schema=`` names its fields (the message says how to
                attach it), or a named field does not exist.
        """
        check_consistency(consistency)
        if schema is not None:
            unknown = sorted(set(schema) - ATTACH_KEYS)
            if unknown:
                raise ConfigError(f"schema= keys {unknown} are unknown; use {sorted(ATTACH_KEYS)}")
        conn = Connection.open(uri, token, timeout, connect_kwargs, retry, create=False)
        try:
            caps = conn.capabilities()
            store = cls._open_client(conn, caps, name, schema=schema, recipe=recipe, consistency=consistency,
                                     retry=retry)
            if recipe is not None and store_recipe and schema is not None and caps.collection_properties:
                try:
                    store.set_recipe(recipe)
                except StorageError as e:  # a read-only user, a managed service: keep it in memory
                    log.warning("could not store the recipe in %r (%s); pass recipe= on every open", name, e)
            return store
        except BaseException:
            conn.release()
            raise

    @classmethod
    def _open_client(cls, conn: Connection, caps: Capabilities, name: str, *, schema: Mapping[str, Any] | None,
                     recipe: Recipe | None, consistency: Consistency, retry: RetryPolicy | None) -> VectorStore:
        client = conn.client
        owner = conn.call(f"check collection {name!r}", lambda: mirror_owner(client, name))
        if owner is not None:
            raise not_a_collection(name, owner, conn.where)
        if not conn.call(f"check collection {name!r}", lambda: bool(client.has_collection(name))):
            existing = conn.call("list collections", lambda: hide_mirrors(list(map(str, client.list_collections()))))
            raise CollectionNotFoundError(
                f"no collection {name!r} at {redact_uri(conn.where)}; existing: {', '.join(existing) or 'none'}. "
                "Create it first (VectorStore.create / CIRCollection.create)."
            )
        desc = conn.call(f"describe collection {name!r}", lambda: client.describe_collection(name))
        stored = read_recipe(desc)
        if stored is None and schema is None and not is_own(desc):
            raise ConfigError(
                f"collection {name!r} at {redact_uri(conn.where)} was not created by cir_milvus (no recipe property). "
                "To attach it, name its fields: schema={'vector_field': ..., 'id_field': ..., 'metric': 'COSINE'} "
                "and say how its vectors were made (model=/pretrained= or encoder= with CIRCollection.open, or "
                "recipe= with VectorStore.open)."
            )
        fmap = field_map(client, name, desc, schema, stored)
        mirror = (desc.get("properties") or {}).get(TEXT_COLLECTION_KEY)
        if mirror is not None and schema is None:
            fmap = open_mirror(conn.call, client, name, conn.where, str(mirror), fmap)
        conn.call(f"load collection {name!r}", lambda: client.load_collection(name))
        return cls(client, name, uri=conn.where, caps=caps, fields=fmap, recipe=recipe or stored,
                   owns_client=conn.owns, retry=retry, consistency=consistency)

    def set_recipe(self, recipe: Recipe) -> None:
        """Store ``recipe`` as the collection's property (and use it from now on).

        Raises:
            ConfigError: the server cannot alter collection properties (Milvus < 2.3).
        """
        if not self.capabilities.collection_properties:
            raise ConfigError(f"Milvus {self.capabilities.version} cannot alter collection properties; pass the "
                              "recipe on every open instead (or upgrade to Milvus >= 2.3)")
        text = recipe.to_json()
        self._call(f"update the recipe of {self.name!r}",
                   lambda: self._client.alter_collection_properties(self.name, properties={PROPERTY_KEY: text}))
        self.recipe = recipe

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


    # -- THE write path -----------------------------------------------------------------------------------------
    def upsert(
        self,
        ids: Sequence[Id],
        vectors: np.ndarray,
        *,
        sources: Sequence[Any] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        normalized: bool = False,
        text_vectors: Sequence[np.ndarray | None] | None = None,
        texts: Sequence[str | None] | None = None,
        on_retry: Callable[[], None] | None = None,
        retry: RetryPolicy | None = None,
    ) -> WriteResult:
        """Write rows (insert or replace by id): the one write path of cir_milvus.

        Each row is checked by the id and metadata policy first (bad rows are skipped with a reason). Rows go to
        Milvus in chunks of at most 16 MB; transient failures are retried by :attr:`retry`; a chunk refused for a
        permanent reason is split in halves until the bad rows are found, so one bad row never costs another. A
        mixed gallery with a text mirror gets the mirror's rows first, then the main rows
        (:mod:`~cir_milvus.storage.mirror`): an upsert cut short between the two is repaired by upserting the same
        ids again.

        Args:
            ids: primary keys (validated by :meth:`check_id`).
            vectors: ``[N, D]`` raw embeddings (normalised here; the norm is stored when the schema has a norm
                field), or already normalised with ``normalized=True``.
            sources: where each image came from.
            metadata: one dict per row (made JSON-safe; typed-field keys go to their fields).
            normalized: ``vectors`` are already L2-normalised (the stored norm is then 1, or ``default_norm``).
            text_vectors: per row, the raw item-text embedding or ``None`` (collections with ``item_text``; see
                :func:`~cir_milvus.storage.hybrid.text_columns`).
            texts: per row, the item text or ``None`` (kept for BM25 in collections with ``full_text``).
            on_retry: called once per retried call (progress reporting).
            retry: a policy for this call instead of :attr:`retry`.

        Returns:
            A :class:`WriteResult` with the ids written and the rows skipped, with reasons.

        Raises:
            ConfigError: wrong shapes / lengths.
            StorageUnavailableError: Milvus stayed unavailable for longer than the retry policy allows.
        """
        vecs = check_shapes(self.name, self.dim, ids, vectors, sources, metadata)
        rows, index, result = prepare_rows(vecs, ids, sources, metadata, normalized=normalized,
                                           default_norm=self.fields.default_norm, check_id=self.check_id,
                                           make_row=self._row)
        text_columns(self.fields, rows, index, text_vectors, len(ids), texts)
        counter = [0]

        def retried() -> None:
            counter[0] += 1
            if on_retry is not None:
                on_retry()

        def into(collection: str) -> Callable[[list[dict[str, Any]]], None]:
            def send(part: list[dict[str, Any]]) -> None:
                self._call(f"upsert {len(part)} rows into {collection!r}",
                           lambda: self._client.upsert(collection, part), retried, retry)
            return send

        refused = write_mirrored(self.fields, rows, into(self.name), into(self.fields.text_collection or self.name))
        for j, i in enumerate(index):
            reason = refused.get(j)
            if reason is not None:
                src = sources[i] if sources is not None else ""
                result.skipped.append((i, Skipped(source_text(src) or "<row>", reason, ids[i])))
            else:
                result.written.append(ids[i])
        result.skipped.sort(key=lambda t: t[0])
        result.retries = counter[0]
        return result

    # -- deletes and updates ----------------------------------------------------------------------------------------
    def delete(self, ids: Sequence[Id] | None = None, *, filter: str | None = None,
               filter_params: Mapping[str, Any] | None = None) -> int:
        """Delete by ids (values, never code) or by a filter template; returns how many rows were deleted."""
        if (ids is None) == (filter is None):
            raise ConfigError("delete needs exactly one of ids= or filter=")
        if ids is not None:
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
                raise ConfigError("ids must be a list of ids (wrap a single id in a list)")
            present = self._valid_ids([i for i in ids if i in self.existing_ids(ids)])
            for s in range(0, len(present), LOOKUP_CHUNK):
                expr = in_filter(self.fields.id_field, present[s : s + LOOKUP_CHUNK])
                self._call(f"delete from {self.name!r}",
                           lambda expr=expr: self._client.delete(self.name, filter=expr))  # type: ignore[misc]
            self.delete_text_rows(ids=self._valid_ids(ids))  # after main (the mirror's commit record), all given ids
            return len(present)
        expr = self.render_filter(filter or "", filter_params)
        if not expr.strip():
            raise ConfigError("delete(filter=...) needs a non-empty filter")
        n = self.count(filter or "", filter_params)
        if n:
            self._call(f"delete from {self.name!r}", lambda: self._client.delete(self.name, filter=expr),
                       user_filter=expr)
        self.delete_text_rows(expr=expr)
        return n

    def update_metadata(self, ids: Sequence[Id], metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
                        replace: bool = False) -> WriteResult:
        """Change stored metadata without re-encoding: the stored vectors are read and written back.

        Args:
            ids: rows to change.
            metadata: one dict for all rows, or one per id; merged into the stored metadata (``replace=True``
                replaces it).

        Returns:
            A :class:`WriteResult`: ``written`` are the ids updated; ids not stored are in ``skipped``.
        """
        per = [metadata] * len(ids) if isinstance(metadata, Mapping) else list(metadata)
        if len(per) != len(ids):
            raise ConfigError(f"{len(per)} metadata entries for {len(ids)} ids")
        want = dict(zip(ids, per))
        rows = {r["id"]: r for r in self.get(list(want), output_fields=self._output_fields(None), vectors=True)}
        keep = [i for i in want if i in rows]
        result = WriteResult()
        if keep:
            mds = [dict(want[i]) if replace else {**rows[i]["metadata"], **dict(want[i])} for i in keep]
            raw = np.stack([rows[i]["vector"] for i in keep])  # [N, D] raw: the norm round-trips
            tv = self.stored_text_vectors(keep) if self.fields.text_vector_field else None
            raw_texts = self.stored_texts(keep) if self.fields.text_raw_field else None
            result = self.upsert(keep, raw, sources=[rows[i]["source"] for i in keep], metadata=mds,
                                 text_vectors=[tv.get(i) for i in keep] if tv is not None else None,
                                 texts=[raw_texts.get(i) for i in keep] if raw_texts is not None else None)
        for n, i in enumerate(want):
            if i not in rows:
                result.skipped.append((n, Skipped(str(i), "not stored", i)))
        return result

    # -- search -----------------------------------------------------------------------------------------------------
    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        *,
        filter: str | None = None,
        filter_params: Mapping[str, Any] | None = None,
        group_by: str | None = None,
        exclude_ids: Sequence[Any] | None = None,
        output_fields: Sequence[str] | None = None,
        search_params: Mapping[str, Any] | None = None,
        partition_names: Sequence[str] | None = None,
    ) -> list[Hits]:
        """ANN search with ready query vectors ``[N, D]``.

        Args:
            vectors: query vectors (finite; normalised for IP).
            k: hits per query (an integer in 1..16384).
            filter, filter_params: a filter template and its values.
            group_by: a typed scalar field: at most one hit per value (e.g. one per product). Native on Milvus
                Lite and Milvus ≥ 2.4; emulated on older servers by deduplicating ``k × 8`` candidates.
            exclude_ids: per query, a stored id (or a list of ids) to drop from its hits (the reference image).
            output_fields: fields to return besides the id (default: source, metadata, typed fields).
            search_params: index search parameters (HNSW ``ef``, IVF ``nprobe``).
            partition_names: restrict to these partitions.

        Returns:
            One :class:`Hits` per query.

        Raises:
            ConfigError: wrong shape, non-finite values, bad ``k``, unknown group-by field, bad filter params.
            FilterError: the server cannot parse the filter (its words in the message; never retried).
            StorageError: the search failed; a released or loading collection is an error, never an empty answer.
        """
        q = query_matrix(vectors, self.dim)
        plan = plan_search(self.fields, self.name, len(q), k, exclude_ids=exclude_ids, group_by=group_by,
                           output_fields=self._output_fields(output_fields),
                           native_group_by=self.capabilities.group_by)
        expr = self.render_filter(filter, filter_params)
        idx_type = (self.recipe.index.get("type", "HNSW") if self.recipe is not None else "HNSW")
        params = dict(search_params or DEFAULT_SEARCH_PARAMS.get(idx_type, {}))
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), plan.limit)
        kw: dict[str, Any] = {"group_by_field": group_by} if plan.native_group else {}
        if partition_names:
            kw["partition_names"] = list(partition_names)
        out: list[Hits] = []
        for s in range(0, len(q), SEARCH_CHUNK):
            data = q[s : s + SEARCH_CHUNK].tolist()

            def run(data: list[list[float]] = data) -> Any:
                res = self._client.search(
                    self.name, data=data, limit=plan.limit, filter=expr, output_fields=plan.output_fields,
                    search_params={"metric_type": self.fields.metric, "params": params},
                    anns_field=self.fields.vector_field, consistency_level=self.consistency, **kw)
                if not any(len(hits) for hits in res):
                    self._check_loaded()  # no hits at all: make sure the collection answered for real
                return res

            res = self._call(f"search {self.name!r}", run, user_filter=expr)
            out.extend(collect_hits(self.fields, self.name, plan, s + j, hits) for j, hits in enumerate(res))
        return out

    # -- housekeeping -----------------------------------------------------------------------------------------------
    def drop(self) -> None:
        """Drop the collection (all its rows, and its text mirror) and close the store."""
        self._call(f"drop collection {self.name!r}", lambda: drop_with_mirror(self._client, self.name))
        self.close()

    def flush(self, *, retry: RetryPolicy | None = None) -> None:
        """Seal growing segments so they get indexed (``retry`` overrides the store's retry policy for this call); a
        text mirror is flushed at the same time (:func:`~cir_milvus.storage.mirror.flush_with_mirror`)."""
        flush_with_mirror(lambda n: self._call(f"flush {n!r}", lambda: self._client.flush(n), retry=retry), self.name,
                          self.fields.text_collection)

    def index_info(self) -> dict[str, Any]:
        """The vector index's description (type, metric, indexed / total rows where the backend says)."""
        return dict(self._call(f"describe the index of {self.name!r}",
                               lambda: self._client.describe_index(self.name, self.fields.vector_field)))

    def wait_for_index(self, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """Flush, then wait until ``indexed_rows == total_rows`` (search is slow until then)."""
        self.flush()
        deadline = time.monotonic() + timeout
        while True:
            info = self.index_info()
            if info.get("indexed_rows", 0) >= info.get("total_rows", 0) or info.get("state") == "Finished":
                return info
            if time.monotonic() > deadline:
                raise StorageError(f"index of {self.name!r} not finished after {timeout}s: {info}")
            time.sleep(poll)

    def info(self) -> dict[str, Any]:
        """Name, backend, count, index, fields and recipe (no encoder needed: ``cir-milvus info``, the service)."""
        r = self.recipe
        return {
            "name": self.name,
            "uri": redact_uri(self.uri),
            "backend": "Milvus Lite" if self.capabilities.is_lite else "Milvus server",
            "server_version": self.capabilities.version,
            "count": self.count(),
            "index": self.index_info(),
            "fields": self.fields.to_dict(),
            "recipe": None if r is None else {"encoder": r.encoder, "composer": r.composer, "metric": r.metric,
                                              "index": r.index, "package_version": r.package_version},
        }
