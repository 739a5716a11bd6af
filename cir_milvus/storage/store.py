"""``VectorStore``: the encoder-free store under every write and read of cir_milvus.

It owns the Milvus client (a URI, or an injected ``MilvusClient``), the collection's schema and field names, the
recipe property, the id / source / metadata policy (:mod:`cir_milvus.storage.policy`), THE upsert path (byte-chunked,
one retry policy, bad rows isolated by bisection), the "already stored?" lookup, reads (``get``, ``query``,
``search_vectors`` with filters, reference exclusion and group-by, iterators), ``delete`` returning true counts,
``update_metadata`` without re-encoding, ``info`` and ``close``. :class:`~cir_milvus.CIRCollection`, ``ingest()``,
``ingest_ray()`` and the evaluation runner all write through it. It never imports an encoder or torch.

Two kinds of collections:

- **created by the store** (:meth:`VectorStore.create`): ``id`` VARCHAR(512 bytes) primary key, ``vector``
  FLOAT_VECTOR (L2-normalised), ``norm`` FLOAT (the raw embedding's norm: pseudo-token heads need raw embeddings),
  ``source`` VARCHAR(65,535 bytes: whole paths), ``metadata`` JSON, optional typed scalar fields (``fields={"price": "double"}``),
  an optional partition key, dynamic fields on. The recipe is a collection property.
- **attached** (:meth:`VectorStore.open` with ``schema={"vector_field": ..., "id_field": ..., "metric": ...}``):
  someone else's collection (INT64 or VARCHAR ids, any metric). Without a norm field, raw embeddings are rebuilt
  with ``default_norm`` (see :class:`FieldMap`).

Example:
    >>> import numpy as np
    >>> from cir_milvus.storage import VectorStore
    >>> store = VectorStore.create("./vec.db", "items", dim=4, fields={"price": "double"})  # doctest: +SKIP
    >>> store.upsert(["a", "b"], np.eye(4)[:2], metadata=[{"price": 5}, {"price": 30}])  # doctest: +SKIP
    >>> store.search_vectors(np.eye(4)[:1], k=1, filter="price < {p}", filter_params={"p": 20})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cir_milvus.errors import CollectionNotFoundError, ConfigError, StorageError
from cir_milvus.storage.client import Capabilities, capabilities, connect, disconnect, milvus_errors, redact_uri
from cir_milvus.storage.filters import in_filter, render_filter
from cir_milvus.storage.policy import (
    MAX_ID_BYTES,
    MAX_METADATA_BYTES,
    MAX_SOURCE_BYTES,
    IdPolicy,
    MetadataError,
    jsonable,
    source_text,
)
from cir_milvus.storage.recipe import PROPERTY_KEY, Recipe
from cir_milvus.storage.retry import RetryPolicy, is_permanent

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["FieldMap", "Hit", "Hits", "Id", "Skipped", "VectorStore", "WriteResult", "chunk_rows_by_bytes"]

log = logging.getLogger(__name__)

Id = str | int
"""A primary key: a string (collections the store creates) or a 64-bit integer (attached collections)."""
Consistency = Literal["Strong", "Session", "Bounded", "Eventually"]

MAX_UPSERT_BYTES = 16 * 1024 * 1024
"""Upper bound of one upsert RPC (Milvus refuses messages over 64 MB)."""
LOOKUP_CHUNK = 1000
"""Ids per ``id in [...]`` lookup / delete call."""
DESCRIPTION_PREFIX = "cir_milvus.recipe="
"""Where the recipe goes on servers without collection properties (Milvus < 2.3): the collection description."""
STORE_KEY = "cir_milvus.store"
"""Collection property marking a collection the store created (its own field layout), with or without a recipe."""
STORE_DESCRIPTION = "cir_milvus.store"
DEFAULT_INDEX_PARAMS: dict[str, dict[str, Any]] = {"HNSW": {"M": 16, "efConstruction": 200}}
DEFAULT_SEARCH_PARAMS: dict[str, dict[str, Any]] = {"HNSW": {"ef": 128}, "HNSW_SQ": {"ef": 128},
                                                    "IVF_FLAT": {"nprobe": 32}, "IVF_SQ8": {"nprobe": 32}}
METRICS = ("IP", "COSINE", "L2")
SCALAR_TYPES = ("bool", "int8", "int16", "int32", "int64", "float", "double", "varchar")
GROUP_BY_OVERFETCH = 8
"""Servers without native group-by (Milvus < 2.4) get ``k × 8`` candidates, deduplicated client-side."""


# -- results --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """An input that was not stored, and why.

    Attributes:
        source: the input as given (a path, ``<N bytes>``...), valid UTF-8.
        reason: why it was not stored.
        id: its id when one was resolved.
    """

    source: str
    reason: str
    id: Id | None = None


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: the stored id.
        score: the metric's score (IP / cosine: higher is better; L2: lower is better).
        metadata: the stored metadata dict, with typed and dynamic fields merged in.
        source: the file path the image came from ("" when added as bytes/PIL).
        vector: the stored (L2-normalised) vector, when the search asked for it (``output_vectors=True``).
        query_vector: the query vector that found the hit, when asked for (``return_query_vector=True``).
    """

    id: Id
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    query_vector: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "score", "source", "metadata"}`` plus ``"vector"`` / ``"query_vector"`` (lists of floats) when
        set (JSON-able)."""
        out: dict[str, Any] = {"id": self.id, "score": self.score, "source": self.source,
                               "metadata": dict(self.metadata)}
        for key in ("vector", "query_vector"):
            value = getattr(self, key)
            if value is not None:
                out[key] = [float(x) for x in value]
        return out


class Hits(list[Hit]):
    """The hits of one query, best first; convertible to dicts, a pandas DataFrame or an Arrow table."""

    def to_dicts(self) -> list[dict[str, Any]]:
        return [h.to_dict() for h in self]

    def _columns(self) -> dict[str, list[Any]]:
        keys: list[str] = []
        for h in self:
            keys.extend(k for k in h.metadata if k not in keys and k not in ("id", "score", "source"))
        cols: dict[str, list[Any]] = {"id": [h.id for h in self], "score": [h.score for h in self],
                                      "source": [h.source for h in self]}
        for k in keys:
            cols[k] = [h.metadata.get(k) for h in self]
        return cols

    def to_pandas(self) -> pd.DataFrame:
        """One row per hit: ``id``, ``score``, ``source`` and one column per metadata key (needs pandas)."""
        from cir_milvus._optional import require

        pd = require("pandas", extra="ingest", purpose="hits as a DataFrame")
        return pd.DataFrame(self._columns())

    def to_arrow(self) -> pa.Table:
        """The same table as :meth:`to_pandas`, as a ``pyarrow.Table`` (needs pyarrow)."""
        from cir_milvus._optional import require

        pa = require("pyarrow", extra="ingest", purpose="hits as an Arrow table")
        cols = self._columns()
        for k, v in list(cols.items()):
            if k not in ("id", "score", "source") and any(isinstance(x, (dict, list)) for x in v):
                cols[k] = [json.dumps(x) if isinstance(x, (dict, list)) else x for x in v]
        return pa.table(cols)


@dataclass
class WriteResult:
    """What one :meth:`VectorStore.upsert` did.

    Attributes:
        written: ids written, in input order.
        skipped: rows refused by the id / metadata policy or by Milvus (permanent errors), with reasons; ``index``
            is the row's position in the call.
        retries: calls retried after transient failures.
    """

    written: list[Id] = field(default_factory=list)
    skipped: list[tuple[int, Skipped]] = field(default_factory=list)
    retries: int = 0


# -- the field map --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldMap:
    """Which field holds what in a collection (the store's own layout, or the names of an attached schema).

    Attributes:
        id_field: primary key field.
        id_type: ``"varchar"`` or ``"int64"``.
        id_max_bytes: the id field's ``max_length`` (checked in UTF-8 bytes, as servers do).
        vector_field: FLOAT_VECTOR field searched.
        dim: its dimension.
        metric: ``IP``, ``COSINE`` or ``L2``.
        norm_field: raw-embedding norm (``None`` in attached collections without one).
        source_field: where the image came from (``None`` when absent).
        source_max_bytes: its ``max_length``.
        metadata_field: JSON metadata (``None`` when absent: metadata then goes to typed or dynamic fields).
        scalars: typed scalar fields ``{name: type}`` (``"double"``, ``"int64"``, ``"varchar"``, ``"bool"``...).
        scalar_max_bytes: ``max_length`` of VARCHAR scalar fields.
        nullable: scalar fields that may be missing in a row.
        partition_key: the partition-key field, if any.
        dynamic: the collection has dynamic fields (``$meta``).
        default_norm: the raw-embedding norm assumed when there is no norm field and stored vectors are
            normalised (the attach default: the mean image-embedding norm of the encoder, see
            :meth:`CIRCollection.open`); ``None`` keeps stored vectors as they are.
    """

    id_field: str = "id"
    id_type: str = "varchar"
    id_max_bytes: int = MAX_ID_BYTES
    vector_field: str = "vector"
    dim: int = 0
    metric: str = "IP"
    norm_field: str | None = "norm"
    source_field: str | None = "source"
    source_max_bytes: int = MAX_SOURCE_BYTES
    metadata_field: str | None = "metadata"
    scalars: Mapping[str, str] = field(default_factory=dict)
    scalar_max_bytes: Mapping[str, int] = field(default_factory=dict)
    nullable: frozenset[str] = frozenset()
    partition_key: str | None = None
    dynamic: bool = False
    default_norm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id_field": self.id_field, "id_type": self.id_type, "vector_field": self.vector_field,
                "dim": self.dim, "metric": self.metric, "norm_field": self.norm_field,
                "source_field": self.source_field, "metadata_field": self.metadata_field,
                "scalars": dict(self.scalars), "partition_key": self.partition_key, "dynamic": self.dynamic,
                "default_norm": self.default_norm}


_TYPE_NAMES = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
               "FLOAT": "float", "DOUBLE": "double", "VARCHAR": "varchar", "JSON": "json",
               "FLOAT_VECTOR": "float_vector", "ARRAY": "array"}
_ATTACH_KEYS = frozenset({"vector_field", "id_field", "metric", "norm_field", "source_field", "metadata_field",
                          "default_norm"})


def _type_name(t: Any) -> str:
    name = getattr(t, "name", None) or str(t).rsplit(".", 1)[-1]
    return _TYPE_NAMES.get(str(name).upper(), str(name).lower())


def _scalar_spec(name: str, spec: Any) -> tuple[str, int]:
    """``"double"`` | ``("varchar", 256)`` | ``{"type": "varchar", "max_length": 256}`` → (type, max_length)."""
    if isinstance(spec, str):
        t, n = spec, 512
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        t, n = spec
    elif isinstance(spec, Mapping):
        t, n = spec.get("type", ""), spec.get("max_length", 512)
    else:
        raise ConfigError(f"fields[{name!r}] must be a type name such as 'double' or ('varchar', 256); got {spec!r}")
    t = str(t).lower()
    t = {"str": "varchar", "string": "varchar", "int": "int64", "float64": "double", "float32": "float",
         "boolean": "bool"}.get(t, t)
    if t not in SCALAR_TYPES:
        raise ConfigError(f"fields[{name!r}] has type {t!r}; choose one of {', '.join(SCALAR_TYPES)}")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 65535:
        raise ConfigError(f"fields[{name!r}] max_length must be an integer in 1..65535, got {n!r}")
    return t, n


_RESERVED = frozenset({"id", "vector", "norm", "source", "metadata"})


def _coerce_scalar(name: str, t: str, v: Any) -> Any:
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


def chunk_rows_by_bytes(rows: Sequence[dict[str, Any]], max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[list[int]]:
    """Split rows into chunks (lists of row indices) whose estimated payload stays under ``max_bytes``."""
    chunk: list[int] = []
    size = 0
    for i, row in enumerate(rows):
        b = 64
        for v in row.values():
            if isinstance(v, list):
                b += 4 * len(v)
            elif isinstance(v, str):
                b += len(v.encode("utf-8", "replace"))
            elif isinstance(v, dict):
                b += len(json.dumps(v))
            else:
                b += 8
        if chunk and size + b > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += b
    if chunk:
        yield chunk


# -- the store ------------------------------------------------------------------------------------------------------


class VectorStore:
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

    # -- construction -------------------------------------------------------------------------------------------
    @staticmethod
    def _connect(uri: Any, token: str | None, timeout: float | None,
                 connect_kwargs: Mapping[str, Any] | None) -> tuple[Any, str, bool]:
        if isinstance(uri, str):
            return connect(uri, token=token, timeout=timeout, **dict(connect_kwargs or {})), uri, True
        if uri is None or not hasattr(uri, "has_collection"):
            raise ConfigError(f"uri must be a Milvus Lite path, a server URI or a MilvusClient; got {uri!r}")
        return uri, str(getattr(uri, "_cir_uri", "") or "(injected MilvusClient)"), False

    def _release_on_error(self) -> None:
        if self._owns_client:
            try:
                disconnect(self._client, self.uri)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.debug("closing after a failed open", exc_info=True)

    @classmethod
    def exists(cls, uri: Any, name: str, *, token: str | None = None, timeout: float | None = 10.0,
               connect_kwargs: Mapping[str, Any] | None = None) -> bool:
        """Whether the collection exists (the connection is released afterwards: a Lite file stays free)."""
        client, where, owns = cls._connect(uri, token, timeout, connect_kwargs)
        try:
            with milvus_errors(f"check collection {name!r}"):
                return bool(client.has_collection(name))
        finally:
            if owns:
                disconnect(client, where)

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
        overwrite: bool = False,
        exist_ok: bool = False,
        token: str | None = None,
        timeout: float | None = 10.0,
        connect_kwargs: Mapping[str, Any] | None = None,
        consistency: Consistency = "Session",
        retry: RetryPolicy | None = None,
    ) -> VectorStore:
        """Create a collection (everything is validated before anything is dropped or created).

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
            overwrite: drop an existing collection of this name (after validation).
            exist_ok: open the collection when it exists.
            token, timeout, connect_kwargs: connection options (timeout in seconds; TLS options...).
            consistency: consistency level of searches and lookups (``"Session"``: read-your-own-writes).
            retry: the retry policy (default: 300 s of backoff).

        Raises:
            ConfigError: bad dim / metric / index / fields, or the collection exists (without ``exist_ok`` /
                ``overwrite``).
            StorageError: Milvus failed (connections opened here are released).
        """
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not 1 <= int(dim) <= 32768:
            raise ConfigError(f"dim must be an integer in 1..32768, got {dim!r}")
        if recipe is not None and not isinstance(recipe, Recipe):
            raise ConfigError(f"recipe must be a cir_milvus Recipe, got {type(recipe).__name__}")
        metric = (metric or (recipe.metric if recipe is not None else "IP")).upper()
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        index_type = (index or (recipe.index.get("type") if recipe is not None else None) or "HNSW").upper()
        if index_params is None and recipe is not None and index is None:
            index_params = recipe.index.get("params")
        idx_params = dict(index_params if index_params is not None else DEFAULT_INDEX_PARAMS.get(index_type, {}))
        scalars: dict[str, tuple[str, int]] = {}
        for fname, spec in dict(fields or {}).items():
            if not isinstance(fname, str) or not fname.isidentifier() or fname in _RESERVED or fname.startswith("$"):
                raise ConfigError(f"field name {fname!r} is not allowed (reserved: {sorted(_RESERVED)}); use a "
                                  "Python-identifier-like name")
            scalars[fname] = _scalar_spec(fname, spec)
        if partition_key is not None and (partition_key not in scalars
                                          or scalars[partition_key][0] not in ("varchar", "int64")):
            raise ConfigError(f"partition_key {partition_key!r} must be one of fields= of type varchar or int64 "
                              f"(fields: {sorted(scalars)})")
        if consistency not in ("Strong", "Session", "Bounded", "Eventually"):
            raise ConfigError(f"consistency must be Strong, Session, Bounded or Eventually, got {consistency!r}")
        if recipe is not None:
            rdim = recipe.encoder.get("dim")
            if rdim is not None and int(rdim) != int(dim):
                raise ConfigError(f"dim={dim} but the recipe's encoder makes {rdim}-d vectors")
        client, where, owns = cls._connect(uri, token, timeout, connect_kwargs)
        try:
            caps = capabilities(client)
            if index_type not in caps.index_types:
                backend = "Milvus Lite" if caps.is_lite else f"Milvus {caps.version}"
                raise ConfigError(f"index {index_type!r} is not built by {backend}; choose one of "
                                  f"{sorted(caps.index_types)}")
            with milvus_errors(f"check collection {name!r}"):
                exists = client.has_collection(name)
            if exists and not overwrite:
                if not exist_ok:
                    raise ConfigError(f"collection {name!r} already exists at {redact_uri(where)}; open it, pass "
                                      "exist_ok=True, or overwrite=True to drop it")
                store = cls._open_client(client, where, owns, caps, name, schema=None, recipe=None,
                                         consistency=consistency, retry=retry)
                return store
            if recipe is not None:
                recipe.metric = metric
                recipe.index = {"type": index_type, "params": idx_params}
            nullable = frozenset(scalars) - {partition_key} if caps.nullable else frozenset()
            fmap = FieldMap(dim=int(dim), metric=metric, scalars={k: v[0] for k, v in scalars.items()},
                            scalar_max_bytes={k: v[1] for k, v in scalars.items() if v[0] == "varchar"},
                            nullable=nullable, partition_key=partition_key, dynamic=dynamic)
            schema, ip = cls._schema(client, fmap, recipe, caps, index_type, idx_params)
            if exists:  # overwrite: everything above is validated; only now drop
                with milvus_errors(f"drop collection {name!r}"):
                    client.drop_collection(name)
            with milvus_errors(f"create collection {name!r}"):
                props = {STORE_KEY: "1", **({PROPERTY_KEY: recipe.to_json()} if recipe is not None else {})}
                extra = {"properties": props} if caps.collection_properties else {}
                client.create_collection(name, schema=schema, index_params=ip, consistency_level="Strong", **extra)
                client.load_collection(name)
        except BaseException:
            if owns:
                try:
                    disconnect(client, where)
                except Exception:  # noqa: BLE001
                    log.debug("closing after a failed create", exc_info=True)
            raise
        return cls(client, name, uri=where, caps=caps, fields=fmap, recipe=recipe, owns_client=owns, retry=retry,
                   consistency=consistency)

    @staticmethod
    def _schema(client: Any, f: FieldMap, recipe: Recipe | None, caps: Capabilities, index_type: str,
                idx_params: Mapping[str, Any]) -> tuple[Any, Any]:
        from pymilvus import CollectionSchema, DataType, FieldSchema

        description = "" if caps.collection_properties else (
            DESCRIPTION_PREFIX + recipe.to_json() if recipe is not None else STORE_DESCRIPTION)
        cols = [FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES),
                FieldSchema("vector", DataType.FLOAT_VECTOR, dim=f.dim),
                FieldSchema("norm", DataType.FLOAT),
                FieldSchema("source", DataType.VARCHAR, max_length=MAX_SOURCE_BYTES),
                FieldSchema("metadata", DataType.JSON)]
        types = {"bool": DataType.BOOL, "int8": DataType.INT8, "int16": DataType.INT16, "int32": DataType.INT32,
                 "int64": DataType.INT64, "float": DataType.FLOAT, "double": DataType.DOUBLE,
                 "varchar": DataType.VARCHAR}
        for fname, t in f.scalars.items():
            kw: dict[str, Any] = {}
            if t == "varchar":
                kw["max_length"] = f.scalar_max_bytes.get(fname, 512)
            if fname in f.nullable:
                kw["nullable"] = True
            if fname == f.partition_key:
                kw["is_partition_key"] = True
            cols.append(FieldSchema(fname, types[t], **kw))
        schema = CollectionSchema(cols, enable_dynamic_field=f.dynamic, auto_id=False, description=description)
        ip = client.prepare_index_params()
        ip.add_index("vector", index_type=index_type, metric_type=f.metric, params=dict(idx_params))
        return schema, ip

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
            CollectionNotFoundError: no such collection (the message lists the existing ones).
            ConfigError: the collection has no recipe and no ``schema=`` names its fields (the message says how to
                attach it), or a named field does not exist.
        """
        if consistency not in ("Strong", "Session", "Bounded", "Eventually"):
            raise ConfigError(f"consistency must be Strong, Session, Bounded or Eventually, got {consistency!r}")
        if schema is not None:
            unknown = sorted(set(schema) - _ATTACH_KEYS)
            if unknown:
                raise ConfigError(f"schema= keys {unknown} are unknown; use {sorted(_ATTACH_KEYS)}")
        client, where, owns = cls._connect(uri, token, timeout, connect_kwargs)
        try:
            caps = capabilities(client)
            store = cls._open_client(client, where, owns, caps, name, schema=schema, recipe=recipe,
                                     consistency=consistency, retry=retry)
            if recipe is not None and store_recipe and schema is not None and caps.collection_properties:
                try:
                    store.set_recipe(recipe)
                except StorageError as e:  # a read-only user, a managed service: keep it in memory
                    log.warning("could not store the recipe in %r (%s); pass recipe= on every open", name, e)
            return store
        except BaseException:
            if owns:
                try:
                    disconnect(client, where)
                except Exception:  # noqa: BLE001
                    log.debug("closing after a failed open", exc_info=True)
            raise

    @classmethod
    def _open_client(cls, client: Any, where: str, owns: bool, caps: Capabilities, name: str, *,
                     schema: Mapping[str, Any] | None, recipe: Recipe | None, consistency: Consistency,
                     retry: RetryPolicy | None) -> VectorStore:
        with milvus_errors(f"check collection {name!r}"):
            if not client.has_collection(name):
                existing = client.list_collections()
                raise CollectionNotFoundError(
                    f"no collection {name!r} at {redact_uri(where)}; existing: {', '.join(existing) or 'none'}. "
                    "Create it first (VectorStore.create / CIRCollection.create)."
                )
            desc = client.describe_collection(name)
        stored = cls._read_recipe(desc)
        own = STORE_KEY in (desc.get("properties") or {}) or str(desc.get("description") or "") == STORE_DESCRIPTION
        if stored is None and schema is None and not own:
            raise ConfigError(
                f"collection {name!r} at {redact_uri(where)} was not created by cir_milvus (no recipe property). "
                "To attach it, name its fields: schema={'vector_field': ..., 'id_field': ..., 'metric': 'COSINE'} "
                "and say how its vectors were made (model=/pretrained= or encoder= with CIRCollection.open, or "
                "recipe= with VectorStore.open)."
            )
        fmap = cls._field_map(client, name, desc, schema, stored)
        store = cls(client, name, uri=where, caps=caps, fields=fmap, recipe=recipe or stored, owns_client=owns,
                    retry=retry, consistency=consistency)
        store._call(f"load collection {name!r}", lambda: client.load_collection(name))
        return store

    @staticmethod
    def _read_recipe(desc: Mapping[str, Any]) -> Recipe | None:
        props = desc.get("properties", {}) or {}
        if PROPERTY_KEY in props:
            return Recipe.from_json(props[PROPERTY_KEY])
        text = str(desc.get("description") or "")
        if text.startswith(DESCRIPTION_PREFIX):  # created on a server without collection properties
            return Recipe.from_json(text[len(DESCRIPTION_PREFIX):])
        return None

    @staticmethod
    def _field_map(client: Any, name: str, desc: Mapping[str, Any], schema: Mapping[str, Any] | None,
                   stored: Recipe | None) -> FieldMap:
        by_name = {f["name"]: f for f in desc.get("fields", [])}
        s = dict(schema or {})
        pk = next((f["name"] for f in desc.get("fields", []) if f.get("is_primary")), "id")
        id_field = s.get("id_field", pk)
        vector_field = s.get("vector_field", "vector")
        for role, fname in (("id_field", id_field), ("vector_field", vector_field)):
            if fname not in by_name:
                raise ConfigError(f"{role}={fname!r} is not a field of {name!r}; fields: {sorted(by_name)}")
        if id_field != pk:
            raise ConfigError(f"id_field={id_field!r} is not the primary key of {name!r} (that is {pk!r})")
        id_type = _type_name(by_name[id_field]["type"])
        if id_type not in ("varchar", "int64"):
            raise ConfigError(f"the primary key {id_field!r} of {name!r} is {id_type}; only VARCHAR and INT64 "
                              "primary keys are supported")
        vtype = _type_name(by_name[vector_field]["type"])
        if vtype != "float_vector":
            raise ConfigError(f"vector_field={vector_field!r} of {name!r} is {vtype}; a FLOAT_VECTOR is needed")
        params = by_name[vector_field].get("params", {}) or {}
        dim = int(params.get("dim", 0))

        def opt(role: str, default: str) -> str | None:
            if role in s:
                fname = s[role]
                if fname is not None and fname not in by_name:
                    raise ConfigError(f"{role}={fname!r} is not a field of {name!r}; fields: {sorted(by_name)}")
                return fname  # type: ignore[no-any-return]
            return default if default in by_name and schema is None else None

        metric = s.get("metric") or (stored.metric if stored is not None else None)
        if metric is None:
            try:
                with milvus_errors(f"describe the index of {name!r}"):
                    metric = dict(client.describe_index(name, vector_field)).get("metric_type")
            except StorageError:
                metric = None
        metric = str(metric or "").upper()
        if metric not in METRICS:
            raise ConfigError(f"could not tell the metric of {name!r} ({metric or 'no index'}); pass "
                              f"schema={{'metric': 'COSINE' | 'IP' | 'L2', ...}}")
        roles = {id_field, vector_field}
        norm_field = opt("norm_field", "norm")
        source_field = opt("source_field", "source")
        metadata_field = opt("metadata_field", "metadata")
        roles |= {f for f in (norm_field, source_field, metadata_field) if f}
        scalars: dict[str, str] = {}
        max_bytes: dict[str, int] = {}
        nullable: set[str] = set()
        partition_key = None
        for fname, f in by_name.items():
            if f.get("is_partition_key"):
                partition_key = fname
            t = _type_name(f["type"])
            if fname in roles or t not in SCALAR_TYPES:
                continue
            scalars[fname] = t
            if t == "varchar":
                max_bytes[fname] = int((f.get("params") or {}).get("max_length", 65535))
            if f.get("nullable"):
                nullable.add(fname)
        id_params = by_name[id_field].get("params", {}) or {}
        src_params = (by_name[source_field].get("params", {}) or {}) if source_field else {}
        default_norm = s.get("default_norm")
        if default_norm is not None and (not isinstance(default_norm, numbers.Real) or not float(default_norm) > 0):
            raise ConfigError(f"default_norm must be a positive number, got {default_norm!r}")
        return FieldMap(id_field=id_field, id_type=id_type, id_max_bytes=int(id_params.get("max_length", 0) or 0),
                        vector_field=vector_field, dim=dim, metric=metric, norm_field=norm_field,
                        source_field=source_field,
                        source_max_bytes=int(src_params.get("max_length", MAX_SOURCE_BYTES) or MAX_SOURCE_BYTES),
                        metadata_field=metadata_field, scalars=scalars, scalar_max_bytes=max_bytes,
                        nullable=frozenset(nullable), partition_key=partition_key,
                        dynamic=bool(desc.get("enable_dynamic_field", False)),
                        default_norm=float(default_norm) if default_norm is not None else None)

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

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VectorStore({redact_uri(self.uri)!r}, {self.name!r}, dim={self.dim}, metric={self.fields.metric})"

    # -- the one call wrapper -----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any], on_retry: Callable[[], None] | None = None,
              retry: RetryPolicy | None = None) -> Any:
        """Every Milvus call of the store: errors wrapped as StorageError, transient ones retried by the policy
        (``retry`` overrides its timeouts for one call, e.g. ``ingest(retry_timeout=...)``)."""

        def attempt() -> Any:
            with milvus_errors(what):
                return fn()

        def reload() -> None:
            with milvus_errors(f"load collection {self.name!r}"):
                self._client.load_collection(self.name)

        return (retry or self.retry).call(attempt, what, on_retry=on_retry, reload=reload)

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
        self._split_metadata(md)  # typed values must convert
        return md

    def _split_metadata(self, md: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(values of typed scalar fields, the rest) — raises ValueError when a typed value does not convert."""
        typed: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for k, v in md.items():
            t = self.fields.scalars.get(k)
            if t is None:
                rest[k] = v
                continue
            if v is None:
                if k not in self.fields.nullable:
                    raise ValueError(f"typed field {k!r} cannot be null on this backend")
                typed[k] = None
                continue
            val = _coerce_scalar(k, t, v)
            if t == "varchar":
                limit = self.fields.scalar_max_bytes.get(k, 65535)
                if len(val.encode("utf-8", "replace")) > limit:
                    raise ValueError(f"typed field {k!r} is longer than its max_length of {limit} bytes")
            typed[k] = val
        missing = [k for k in self.fields.scalars if k not in typed and k not in self.fields.nullable]
        if missing:
            raise ValueError(f"typed field(s) {missing} have no value and are not nullable; give every record a "
                             "value")
        return typed, rest

    def _row(self, rid: Id, vec: np.ndarray, norm: float, source: str, md: dict[str, Any]) -> dict[str, Any]:
        f = self.fields
        typed, rest = self._split_metadata(md)
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
                raise ValueError(f"metadata keys {sorted(rest)[:5]} have no field in {self.name!r} (no JSON "
                                 "metadata field, no dynamic fields)")
            clash = sorted(set(rest) & {f.id_field, f.vector_field, f.norm_field, f.source_field})
            if clash:
                raise ValueError(f"metadata keys {clash} clash with field names of {self.name!r}")
            row.update(rest)
        return row

    # -- THE write path -----------------------------------------------------------------------------------------
    def upsert(
        self,
        ids: Sequence[Id],
        vectors: np.ndarray,
        *,
        sources: Sequence[Any] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        normalized: bool = False,
        on_retry: Callable[[], None] | None = None,
        retry: RetryPolicy | None = None,
    ) -> WriteResult:
        """Write rows (insert or replace by id): the one write path of cir_milvus.

        Each row is checked by the id and metadata policy first (bad rows are skipped with a reason). Rows go to
        Milvus in chunks of at most 16 MB; transient failures are retried by :attr:`retry`; a chunk refused for a
        permanent reason is split in halves until the bad rows are found, so one bad row never costs another.

        Args:
            ids: primary keys (validated by :meth:`check_id`).
            vectors: ``[N, D]`` raw embeddings (normalised here; the norm is stored when the schema has a norm
                field), or already normalised with ``normalized=True``.
            sources: where each image came from.
            metadata: one dict per row (made JSON-safe; typed-field keys go to their fields).
            normalized: ``vectors`` are already L2-normalised (the stored norm is then 1, or ``default_norm``).
            on_retry: called once per retried call (progress reporting).
            retry: a policy for this call instead of :attr:`retry`.

        Returns:
            A :class:`WriteResult` with the ids written and the rows skipped, with reasons.

        Raises:
            ConfigError: wrong shapes / lengths.
            StorageError: Milvus stayed unavailable for longer than the retry policy allows.
        """
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ConfigError(f"vectors must be [N, {self.dim}] for {self.name!r}; got {vecs.shape}")
        n = len(ids)
        if vecs.shape[0] != n:
            raise ConfigError(f"{n} ids for {vecs.shape[0]} vectors")
        if sources is not None and len(sources) != n:
            raise ConfigError(f"{len(sources)} sources for {n} ids")
        if metadata is not None and len(metadata) != n:
            raise ConfigError(f"{len(metadata)} metadata entries for {n} ids")
        result = WriteResult()
        norms = np.linalg.norm(vecs, axis=1)  # [N]
        if normalized:
            unit = vecs
            norms = np.full(n, self.fields.default_norm or 1.0, dtype=np.float32)
        else:
            unit = vecs / np.maximum(norms[:, None], 1e-12)  # [N, D]
        rows: list[dict[str, Any]] = []
        index: list[int] = []
        for i in range(n):
            src = sources[i] if sources is not None else ""
            rid = ids[i]
            reason = self.check_id(rid)
            known = rid if reason is None else None  # an invalid id is not reported as an id
            if reason is None and not np.all(np.isfinite(vecs[i])):
                reason = "the embedding contains NaN or inf"
            if reason is None:
                try:
                    md = self.prepare_metadata(metadata[i] if metadata is not None else None)
                    rows.append(self._row(rid, unit[i], float(norms[i]), src, md))
                    index.append(i)
                    continue
                except (MetadataError, ValueError) as e:
                    reason = f"bad metadata: {e}"
            result.skipped.append((i, Skipped(source_text(src) or "<row>", reason, known)))
        counter = [0]

        def retried() -> None:
            counter[0] += 1
            if on_retry is not None:
                on_retry()

        ok = self._write_rows(rows, list(range(len(rows))), retried, retry)
        bad = {j: reason for j, reason in ok.items() if reason is not None}
        for j, i in enumerate(index):
            if j in bad:
                src = sources[i] if sources is not None else ""
                result.skipped.append((i, Skipped(source_text(src) or "<row>", bad[j], ids[i])))
            else:
                result.written.append(ids[i])
        result.skipped.sort(key=lambda t: t[0])
        result.retries = counter[0]
        return result

    def _write_rows(self, rows: list[dict[str, Any]], which: list[int], on_retry: Callable[[], None],
                    retry: RetryPolicy | None) -> dict[int, str | None]:
        """Upsert ``rows[which]`` in byte-bounded chunks; returns ``{row index: None or the refusal reason}``."""
        out: dict[int, str | None] = {}
        sub = [rows[j] for j in which]
        for chunk in chunk_rows_by_bytes(sub):
            out.update(self._write_chunk(rows, [which[c] for c in chunk], on_retry, retry))
        return out

    def _write_chunk(self, rows: list[dict[str, Any]], which: list[int], on_retry: Callable[[], None],
                     retry: RetryPolicy | None) -> dict[int, str | None]:
        part = [rows[j] for j in which]
        try:
            self._call(f"upsert {len(part)} rows into {self.name!r}",
                       lambda: self._client.upsert(self.name, part), on_retry, retry)
            return dict.fromkeys(which)
        except StorageError as e:
            if not is_permanent(e):
                raise
            if len(which) == 1:
                msg = str(e)
                return {which[0]: f"refused by Milvus: {msg[msg.find(': ') + 2:] if ': ' in msg else msg}"[:500]}
            mid = len(which) // 2  # bisect: one bad row must not cost the others
            return {**self._write_chunk(rows, which[:mid], on_retry, retry),
                    **self._write_chunk(rows, which[mid:], on_retry, retry)}

    # -- reads ------------------------------------------------------------------------------------------------------
    def _valid_ids(self, ids: Sequence[Id]) -> list[Id]:
        return [i for i in dict.fromkeys(ids) if self.check_id(i) is None]

    def existing_ids(self, ids: Sequence[Id], on_retry: Callable[[], None] | None = None,
                     retry: RetryPolicy | None = None) -> set[Id]:
        """The "already stored?" lookup: which of ``ids`` are stored (ids are values: escaped literals)."""
        got: set[Id] = set()
        valid = self._valid_ids(ids)
        for s in range(0, len(valid), LOOKUP_CHUNK):
            expr = in_filter(self.fields.id_field, valid[s : s + LOOKUP_CHUNK])
            rows = self._call(f"look up ids in {self.name!r}",
                              lambda expr=expr: self._client.query(  # type: ignore[misc]
                                  self.name, filter=expr, output_fields=[self.fields.id_field],
                                  consistency_level=self.consistency), on_retry, retry)
            got.update(r[self.fields.id_field] for r in rows)
        return got

    def _output_fields(self, output_fields: Sequence[str] | None, vectors: bool = False) -> list[str]:
        f = self.fields
        if output_fields is None:
            out = [f.id_field, *[x for x in (f.source_field, f.metadata_field) if x], *f.scalars]
            if f.dynamic and not f.metadata_field:
                out.append("$meta")
        else:
            out = [f.id_field, *[x for x in output_fields if x not in (f.id_field, f.vector_field)]]
        if vectors:
            out += [f.vector_field, *([f.norm_field] if f.norm_field else [])]
        return list(dict.fromkeys(out))

    def get(self, ids: Sequence[Id], *, output_fields: Sequence[str] | None = None,
            vectors: bool = False) -> list[dict[str, Any]]:
        """Stored rows by id, in the order of ``ids`` (missing ids are left out): ``{"id", "source", "metadata",
        ...}`` with typed fields merged into ``metadata``; ``vectors=True`` adds ``"vector"`` (the raw embedding,
        see :meth:`vectors`)."""
        valid = self._valid_ids(ids)
        fields = self._output_fields(output_fields, vectors)
        found: dict[Id, dict[str, Any]] = {}
        for s in range(0, len(valid), LOOKUP_CHUNK):
            expr = in_filter(self.fields.id_field, valid[s : s + LOOKUP_CHUNK])
            rows = self._call(f"get rows from {self.name!r}",
                              lambda expr=expr: self._client.query(  # type: ignore[misc]
                                  self.name, filter=expr, output_fields=fields, consistency_level=self.consistency))
            for r in rows:
                found[r[self.fields.id_field]] = self._record(r, vectors)
        return [found[i] for i in valid if i in found]

    def _raw(self, vec: Any, norm: Any) -> np.ndarray:
        v = np.asarray(vec, dtype=np.float32)
        if norm is not None:
            return v * np.float32(norm)
        if self.fields.default_norm is not None:
            n = float(np.linalg.norm(v))
            return v / max(n, 1e-12) * np.float32(self.fields.default_norm)
        return v

    def _record(self, r: Mapping[str, Any], vectors: bool = False) -> dict[str, Any]:
        f = self.fields
        md: dict[str, Any] = dict(r.get(f.metadata_field) or {}) if f.metadata_field else {}
        skip = {f.id_field, f.vector_field, f.norm_field, f.source_field, f.metadata_field, "$meta"}
        for k, v in r.items():
            if k not in skip:
                md[k] = v
        meta = r.get("$meta")
        if isinstance(meta, Mapping):
            md.update(meta)
        out: dict[str, Any] = {"id": r[f.id_field], "source": (r.get(f.source_field) or "") if f.source_field else "",
                               "metadata": md}
        if vectors and f.vector_field in r:
            out["vector"] = self._raw(r[f.vector_field], r.get(f.norm_field) if f.norm_field else None)
        return out

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
        kw: dict[str, Any] = {"limit": self._check_k(limit, "limit")} if limit is not None else {}
        rows = self._call(f"query {self.name!r}", lambda: self._client.query(
            self.name, filter=expr, output_fields=fields, consistency_level=self.consistency, **kw))
        return [self._record(r) for r in rows]

    def iter_rows(self, batch_size: int = 1000, *, filter: str = "", filter_params: Mapping[str, Any] | None = None,
                  output_fields: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every matching row, as :meth:`get` returns them, in primary-key order, ``batch_size`` per query.

        Pages by primary key like pymilvus's query iterator (the server returns each page in key order), but the
        cursor goes into the next filter as an escaped literal: pymilvus pastes the last key in unescaped, so an id
        such as ``x" or id != "`` made its iterator page forever.
        """
        size = self._check_k(batch_size, "batch_size")
        f = self.fields
        user = self.render_filter(filter, filter_params)
        fields = self._output_fields(output_fields)
        if f.id_field not in fields:
            fields = [f.id_field, *fields]
        last: Any = None
        while True:
            cursor = "" if last is None else self.render_filter(f"{f.id_field} > {{last}}", {"last": last})
            expr = " and ".join(f"({e})" for e in (cursor, user) if e) or (
                f'{f.id_field} != ""' if f.id_type == "varchar" else f"{f.id_field} < {2**63 - 1}")

            def fetch(expr: str = expr) -> list[dict[str, Any]]:
                return self._client.query(  # type: ignore[no-any-return]
                    self.name, filter=expr, output_fields=fields, limit=size, consistency_level=self.consistency,
                    iterator="True", reduce_stop_for_best="True")

            page = self._call(f"iterate {self.name!r}", fetch)
            if not page:
                return
            page = sorted(page, key=lambda r: r[f.id_field])  # key order, whatever the backend returned
            for r in page:
                yield self._record(r)
            last = page[-1][f.id_field]

    def iter_ids(self, batch_size: int = 1000) -> Iterator[Id]:
        """Every stored id."""
        for r in self.iter_rows(batch_size, output_fields=[]):
            yield r["id"]

    def count(self, filter: str = "", filter_params: Mapping[str, Any] | None = None) -> int:
        """Number of rows (matching a filter), read with Strong consistency."""
        expr = self.render_filter(filter, filter_params)
        res = self._call(f"count {self.name!r}", lambda: self._client.query(
            self.name, filter=expr, output_fields=["count(*)"], consistency_level="Strong"))
        return int(res[0]["count(*)"])

    def __len__(self) -> int:
        return self.count()

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
            return len(present)
        expr = self.render_filter(filter or "", filter_params)
        if not expr.strip():
            raise ConfigError("delete(filter=...) needs a non-empty filter")
        n = self.count(filter or "", filter_params)
        if n:
            self._call(f"delete from {self.name!r}", lambda: self._client.delete(self.name, filter=expr))
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
        fields = self._output_fields(None, vectors=True)
        rows = {r["id"]: r for r in self.get(list(want), output_fields=fields, vectors=True)}
        keep = [i for i in want if i in rows]
        result = WriteResult()
        if keep:
            mds = [dict(want[i]) if replace else {**rows[i]["metadata"], **dict(want[i])} for i in keep]
            raw = np.stack([rows[i]["vector"] for i in keep])  # [N, D] raw: the norm round-trips
            result = self.upsert(keep, raw, sources=[rows[i]["source"] for i in keep], metadata=mds)
        for n, i in enumerate(want):
            if i not in rows:
                result.skipped.append((n, Skipped(str(i), "not stored", i)))
        return result

    # -- search -----------------------------------------------------------------------------------------------------
    def render_filter(self, expr: str | None, params: Mapping[str, Any] | None) -> str:
        """A filter template with its values rendered as literals for this backend."""
        if not expr:
            if params:
                raise ConfigError("filter_params given without a filter expression")
            return ""
        return render_filter(expr, params, json_in=not self.capabilities.is_lite)

    @staticmethod
    def _check_k(k: Any, what: str = "k") -> int:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise ConfigError(f"{what} must be an integer, got {k!r}")
        if not 1 <= int(k) <= 16384:
            raise ConfigError(f"{what} must be between 1 and 16384, got {k}")
        return int(k)

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
        """
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ConfigError(f"query vectors must be [N, {self.dim}] for this collection; got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ConfigError("query vectors contain NaN or inf")
        k = self._check_k(k)
        raw_ex = list(exclude_ids) if exclude_ids is not None else [None] * len(q)
        if len(raw_ex) != len(q):
            raise ConfigError(f"{len(raw_ex)} exclude_ids for {len(q)} queries")
        exclude: list[set[Any]] = [set() if e is None else set(e) if isinstance(e, (list, tuple, set, frozenset))
                                   else {e} for e in raw_ex]
        extra = max((len(e) for e in exclude), default=0)
        fields = self._output_fields(output_fields)
        native_group = False
        limit = k + extra
        if group_by is not None:
            if group_by not in self.fields.scalars:
                raise ConfigError(f"group_by={group_by!r} must be a typed scalar field of {self.name!r} "
                                  f"(fields: {sorted(self.fields.scalars)}); declare it with fields= at creation")
            if self.fields.scalars[group_by] in ("float", "double"):
                raise ConfigError(f"group_by={group_by!r} is a {self.fields.scalars[group_by]} field; Milvus groups "
                                  "by integer, string or bool fields only")
            fields = list(dict.fromkeys([*fields, group_by]))
            native_group = self.capabilities.group_by
            if not native_group:
                limit = (k + extra) * GROUP_BY_OVERFETCH
        limit = min(limit, 16384)
        expr = self.render_filter(filter, filter_params)
        idx_type = (self.recipe.index.get("type", "HNSW") if self.recipe is not None else "HNSW")
        params = dict(search_params or DEFAULT_SEARCH_PARAMS.get(idx_type, {}))
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), limit)
        kw: dict[str, Any] = {}
        if native_group:
            kw["group_by_field"] = group_by
        if partition_names:
            kw["partition_names"] = list(partition_names)
        out: list[Hits] = []
        for s in range(0, len(q), 1024):
            data = q[s : s + 1024].tolist()
            res = self._call(f"search {self.name!r}", lambda data=data: self._client.search(  # type: ignore[misc]
                self.name, data=data, limit=limit, filter=expr, output_fields=fields,
                search_params={"metric_type": self.fields.metric, "params": params},
                anns_field=self.fields.vector_field, consistency_level=self.consistency, **kw))
            for j, hits in enumerate(res):
                ex = exclude[s + j]
                row = Hits()
                groups: set[Any] = set()
                for h in hits:
                    if self._hit_id(h) in ex:
                        continue
                    hit = self._hit(h)
                    if group_by is not None:
                        g = hit.metadata.get(group_by)
                        if g in groups:
                            continue
                        groups.add(g)
                    row.append(hit)
                    if len(row) == k:
                        break
                out.append(row)
        return out

    def _hit_id(self, h: Mapping[str, Any]) -> Any:
        """A search hit's primary key (pymilvus names it by the primary field: ``id``, ``pk``...)."""
        ent = h.get("entity", {}) or {}
        for key in (self.fields.id_field, "id"):
            if key in ent:
                return ent[key]
            try:
                return h[key]
            except KeyError:
                continue
        raise StorageError(f"a search hit of {self.name!r} has no primary key {self.fields.id_field!r}: {h!r}")

    def _hit(self, h: Mapping[str, Any]) -> Hit:
        ent = dict(h.get("entity", {}) or {})
        hid = self._hit_id(h)
        ent.setdefault(self.fields.id_field, hid)
        rec = self._record(ent)
        return Hit(id=hid, score=float(h["distance"]), metadata=rec["metadata"], source=rec["source"])

    # -- housekeeping -----------------------------------------------------------------------------------------------
    def drop(self) -> None:
        """Drop the collection (all its rows) and close the store."""
        self._call(f"drop collection {self.name!r}", lambda: self._client.drop_collection(self.name))
        self.close()

    def flush(self, *, retry: RetryPolicy | None = None) -> None:
        """Seal growing segments so they get indexed (``retry`` overrides the store's retry policy for this call)."""
        self._call(f"flush {self.name!r}", lambda: self._client.flush(self.name), retry=retry)

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
