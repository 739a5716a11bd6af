"""The collection's layout: the store's own schema, the :class:`FieldMap` of any collection (its own or an attached
one), the typed scalar fields, and where the recipe is kept (a collection property, or the description on servers
without properties)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cir_milvus.errors import ConfigError, StorageError
from cir_milvus.storage.client import Capabilities, milvus_errors
from cir_milvus.storage.policy import MAX_ID_BYTES, MAX_SOURCE_BYTES
from cir_milvus.storage.recipe import PROPERTY_KEY, Recipe

__all__ = ["ATTACH_KEYS", "DEFAULT_INDEX_PARAMS", "DEFAULT_SEARCH_PARAMS", "DESCRIPTION_PREFIX", "HAS_TEXT",
           "ITEM_TEXT", "MAX_ITEM_TEXT_BYTES", "METRICS", "TEXT_SPARSE", "SCALAR_TYPES", "STORE_DESCRIPTION", "STORE_KEY", "TEXT_VECTOR", "FieldMap", "build_schema",
           "check_fields", "field_map", "is_own", "read_recipe", "scalar_spec", "type_name"]

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
        text_vector_field: the item-text FLOAT_VECTOR field (``item_text=True``; see :mod:`~cir_milvus.storage.hybrid`),
            or ``None``.
        text_flag_field: the BOOL field saying an item has a text (``None``: every item has one).
        text_raw_field: the item text itself (VARCHAR with an analyzer; ``full_text=True``), or ``None``.
        text_sparse_field: the BM25 sparse vector made from it by a Milvus BM25 Function, or ``None``.
        text_collection: the collection holding the text vector and flag fields: ``None`` for this collection, or
            its text mirror on deployments with one vector field per collection (:mod:`~cir_milvus.storage.mirror`).
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
    text_vector_field: str | None = None
    text_flag_field: str | None = None
    text_raw_field: str | None = None
    text_sparse_field: str | None = None
    text_collection: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id_field": self.id_field, "id_type": self.id_type, "vector_field": self.vector_field,
                "dim": self.dim, "metric": self.metric, "norm_field": self.norm_field,
                "source_field": self.source_field, "metadata_field": self.metadata_field,
                "scalars": dict(self.scalars), "partition_key": self.partition_key, "dynamic": self.dynamic,
                "default_norm": self.default_norm, "text_vector_field": self.text_vector_field,
                "text_flag_field": self.text_flag_field, "text_raw_field": self.text_raw_field,
                "text_sparse_field": self.text_sparse_field, "text_collection": self.text_collection}


_TYPE_NAMES = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
               "FLOAT": "float", "DOUBLE": "double", "VARCHAR": "varchar", "JSON": "json",
               "FLOAT_VECTOR": "float_vector", "ARRAY": "array"}
ATTACH_KEYS = frozenset({"vector_field", "id_field", "metric", "norm_field", "source_field", "metadata_field",
                          "default_norm", "text_vector_field"})


def type_name(t: Any) -> str:
    name = getattr(t, "name", None) or str(t).rsplit(".", 1)[-1]
    return _TYPE_NAMES.get(str(name).upper(), str(name).lower())


def scalar_spec(name: str, spec: Any) -> tuple[str, int]:
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


TEXT_VECTOR = "text_vector"
"""The item-text vector field of a collection created with ``item_text=True``."""
HAS_TEXT = "has_text"
ITEM_TEXT = "item_text"
"""The item text itself (``full_text=True``): the BM25 Function's input."""
TEXT_SPARSE = "text_sparse"
MAX_ITEM_TEXT_BYTES = 65535
_RESERVED = frozenset({"id", "vector", "norm", "source", "metadata", TEXT_VECTOR, HAS_TEXT, ITEM_TEXT, TEXT_SPARSE})


def build_schema(client: Any, f: FieldMap, recipe: Recipe | None, caps: Capabilities, index_type: str,
            idx_params: Mapping[str, Any]) -> tuple[Any, Any]:
    from pymilvus import CollectionSchema, DataType, FieldSchema

    description = "" if caps.collection_properties else (
        DESCRIPTION_PREFIX + recipe.to_json() if recipe is not None else STORE_DESCRIPTION)
    cols = [FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES),
            FieldSchema(f.vector_field, DataType.FLOAT_VECTOR, dim=f.dim),
            FieldSchema("norm", DataType.FLOAT),
            FieldSchema("source", DataType.VARCHAR, max_length=MAX_SOURCE_BYTES),
            FieldSchema("metadata", DataType.JSON)]
    if f.text_vector_field and f.text_collection is None:  # else in the text mirror (storage.mirror)
        cols += [FieldSchema(f.text_vector_field, DataType.FLOAT_VECTOR, dim=f.dim),
                 FieldSchema(str(f.text_flag_field), DataType.BOOL)]
    if f.text_sparse_field:
        cols += [FieldSchema(str(f.text_raw_field), DataType.VARCHAR, max_length=MAX_ITEM_TEXT_BYTES,
                             enable_analyzer=True),
                 FieldSchema(f.text_sparse_field, DataType.SPARSE_FLOAT_VECTOR)]
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
    if f.text_sparse_field:
        from pymilvus import Function, FunctionType

        schema.add_function(Function(name="item_text_bm25", function_type=FunctionType.BM25,
                                     input_field_names=[str(f.text_raw_field)],
                                     output_field_names=[f.text_sparse_field]))
    ip = client.prepare_index_params()
    ip.add_index(f.vector_field, index_type=index_type, metric_type=f.metric, params=dict(idx_params))
    if f.text_vector_field and f.text_collection is None:
        ip.add_index(f.text_vector_field, index_type=index_type, metric_type=f.metric, params=dict(idx_params))
    if f.text_sparse_field:
        ip.add_index(f.text_sparse_field, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return schema, ip


def read_recipe(desc: Mapping[str, Any]) -> Recipe | None:
    props = desc.get("properties", {}) or {}
    if PROPERTY_KEY in props:
        return Recipe.from_json(props[PROPERTY_KEY])
    text = str(desc.get("description") or "")
    if text.startswith(DESCRIPTION_PREFIX):  # created on a server without collection properties
        return Recipe.from_json(text[len(DESCRIPTION_PREFIX):])
    return None


def _metric(client: Any, name: str, vector_field: str, given: Any) -> str:
    """The metric named (``schema=`` or the recipe), else the vector index's; ConfigError when neither tells."""
    metric = given
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
    return metric


def _scalars(by_name: Mapping[str, Mapping[str, Any]], roles: set[str]
             ) -> tuple[dict[str, str], dict[str, int], frozenset[str], str | None]:
    """The typed scalar fields outside ``roles``: (types, VARCHAR max_length, nullable ones, the partition key)."""
    scalars: dict[str, str] = {}
    max_bytes: dict[str, int] = {}
    nullable: set[str] = set()
    partition_key = None
    for fname, f in by_name.items():
        if f.get("is_partition_key"):
            partition_key = fname
        t = type_name(f["type"])
        if fname in roles or t not in SCALAR_TYPES:
            continue
        scalars[fname] = t
        if t == "varchar":
            max_bytes[fname] = int((f.get("params") or {}).get("max_length", 65535))
        if f.get("nullable"):
            nullable.add(fname)
    return scalars, max_bytes, frozenset(nullable), partition_key


def field_map(client: Any, name: str, desc: Mapping[str, Any], schema: Mapping[str, Any] | None,
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
    id_type = type_name(by_name[id_field]["type"])
    if id_type not in ("varchar", "int64"):
        raise ConfigError(f"the primary key {id_field!r} of {name!r} is {id_type}; only VARCHAR and INT64 "
                          "primary keys are supported")
    vtype = type_name(by_name[vector_field]["type"])
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

    metric = _metric(client, name, vector_field, s.get("metric") or (stored.metric if stored is not None else None))
    roles = {id_field, vector_field}
    norm_field = opt("norm_field", "norm")
    source_field = opt("source_field", "source")
    metadata_field = opt("metadata_field", "metadata")
    text_field = opt("text_vector_field", TEXT_VECTOR)
    if text_field is not None and (type_name(by_name[text_field]["type"]) != "float_vector"
                                   or int((by_name[text_field].get("params") or {}).get("dim", 0)) != dim):
        raise ConfigError(f"text_vector_field={text_field!r} of {name!r} must be a FLOAT_VECTOR of dim {dim}")
    flag_field = HAS_TEXT if text_field is not None and HAS_TEXT in by_name and schema is None else None
    own_bm25 = schema is None and ITEM_TEXT in by_name and TEXT_SPARSE in by_name
    raw_field, sparse_field = (ITEM_TEXT, TEXT_SPARSE) if own_bm25 else (None, None)
    roles |= {f for f in (norm_field, source_field, metadata_field, text_field, flag_field, raw_field, sparse_field)
              if f}
    scalars, max_bytes, nullable, partition_key = _scalars(by_name, roles)
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
                    nullable=nullable, partition_key=partition_key,
                    dynamic=bool(desc.get("enable_dynamic_field", False)),
                    default_norm=float(default_norm) if default_norm is not None else None,
                    text_vector_field=text_field, text_flag_field=flag_field, text_raw_field=raw_field,
                    text_sparse_field=sparse_field)


def is_own(desc: Mapping[str, Any]) -> bool:
    """Whether a described collection was created by the store (its own field layout)."""
    return STORE_KEY in (desc.get("properties") or {}) or str(desc.get("description") or "") == STORE_DESCRIPTION


def check_fields(fields: Mapping[str, Any] | None, partition_key: str | None) -> dict[str, tuple[str, int]]:
    """Validate ``fields=`` and ``partition_key=`` of :meth:`VectorStore.create`: ``{name: (type, max_length)}``."""
    scalars: dict[str, tuple[str, int]] = {}
    for fname, spec in dict(fields or {}).items():
        if not isinstance(fname, str) or not fname.isidentifier() or fname in _RESERVED or fname.startswith("$"):
            raise ConfigError(f"field name {fname!r} is not allowed (reserved: {sorted(_RESERVED)}); use a "
                              "Python-identifier-like name")
        scalars[fname] = scalar_spec(fname, spec)
    if partition_key is not None and (partition_key not in scalars
                                      or scalars[partition_key][0] not in ("varchar", "int64")):
        raise ConfigError(f"partition_key {partition_key!r} must be one of fields= of type varchar or int64 "
                          f"(fields: {sorted(scalars)})")
    return scalars
