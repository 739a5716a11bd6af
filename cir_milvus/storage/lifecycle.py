"""Creating, opening and checking collections: everything validated before anything is created or dropped, the
first calls to Milvus under the retry policy within the connect timeout, creators that race converge, and a failed
command that leaves nothing behind (no Lite folder for a missing path, no half-made collection)."""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from cir_milvus.errors import (
    CollectionNotFoundError,
    ConfigError,
    PermanentStorageError,
    RecipeMismatchError,
    StorageError,
)
from cir_milvus.storage.client import (
    DEFAULT_CONNECT_TIMEOUT,
    Capabilities,
    capabilities,
    connect,
    disconnect,
    lite_file,
    milvus_errors,
    redact_uri,
)
from cir_milvus.storage.mirror import (
    MIRROR_OF_KEY,
    MIRROR_SUFFIX,
    TEXT_COLLECTION_KEY,
    check_user_name,
    hide_mirrors,
    mirror_layout,
    mirror_name,
    mirror_of,
    mirror_owner,
    not_a_collection,
)
from cir_milvus.storage.recipe import PROPERTY_KEY, Recipe, creation_conflicts
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.schema import (
    DEFAULT_INDEX_PARAMS,
    HAS_TEXT,
    ITEM_TEXT,
    METRICS,
    STORE_KEY,
    TEXT_SPARSE,
    TEXT_VECTOR,
    FieldMap,
    build_schema,
    check_fields,
)

__all__ = ["Connection", "CreatePlan", "check_consistency", "check_mirror_slot", "database_call", "drop_collection",
           "drop_with_mirror", "lite_path", "plan_create"]

log = logging.getLogger(__name__)
T = TypeVar("T")

Consistency = Literal["Strong", "Session", "Bounded", "Eventually"]
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
_INDEX_NOT_BUILT = 700  # "index not found": a racing creator made the collection but not yet its index


def check_consistency(consistency: Any) -> None:
    if consistency not in CONSISTENCY_LEVELS:
        raise ConfigError(f"consistency must be Strong, Session, Bounded or Eventually, got {consistency!r}")


def lite_path(uri: Any) -> Path | None:
    """The Milvus Lite database folder a URI names (``None`` for server URIs and injected clients).

    Raises:
        ConfigError: a file path that does not end in ``.db``.
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    return lite_file(uri) if isinstance(uri, str) else None


@dataclass
class Connection:
    """A client with where it points, whether the store owns it, and the policy of its first calls.

    Attributes:
        client: the ``MilvusClient`` (or an injected double).
        where: the URI for messages (credentials redacted when printed).
        owns: the store closes it.
        first: the retry policy of the first calls (the store's policy cut to the connect timeout: a server that
            restarts is waited for, an unreachable one fails within the timeout).
        created_path: the topmost folder this connection created for a new Lite database (removed again when a
            create fails).
    """

    client: Any
    where: str
    owns: bool
    first: RetryPolicy
    created_path: Path | None = None

    @classmethod
    def open(cls, uri: Any, token: str | None, timeout: float | None, connect_kwargs: Mapping[str, Any] | None,
             retry: RetryPolicy | None, *, create: bool) -> Connection:
        """Connect. Without ``create``, a Lite path that does not exist raises :class:`CollectionNotFoundError`
        and creates nothing."""
        first = (retry or RetryPolicy()).capped(DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout)
        if isinstance(uri, os.PathLike):
            uri = os.fspath(uri)
        if isinstance(uri, str):
            path = lite_path(uri)
            fresh = path is not None and not path.exists()
            if fresh and not create:
                raise CollectionNotFoundError(
                    f"no Milvus Lite database at {uri} (nothing was created); check the path, or create a collection "
                    "there first")
            created = None
            if fresh and path is not None:  # the topmost folder this connection will create (removed on failure)
                created = path.absolute()
                while not created.parent.exists():
                    created = created.parent
            client = connect(uri, token=token, timeout=timeout, **dict(connect_kwargs or {}))
            return cls(client, uri, True, first, created)
        if uri is None or not hasattr(uri, "has_collection"):
            raise ConfigError(f"uri must be a Milvus Lite path, a server URI or a MilvusClient; got {uri!r}")
        return cls(uri, str(getattr(uri, "_cir_uri", "") or "(injected MilvusClient)"), False, first)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """One of the first calls: wrapped, classified, retried within the connect timeout."""

        def attempt() -> T:
            with milvus_errors(what):
                return fn()

        return self.first.call(attempt, what)

    def capabilities(self) -> Capabilities:
        return capabilities(self.client, self.first)

    def release(self, *, failed: bool = False) -> None:
        """Close an owned client; after a failed create, remove the Lite folder this connection created."""
        if self.owns:
            try:
                disconnect(self.client, self.where)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.debug("closing after a failure", exc_info=True)
        if failed and self.created_path is not None:
            shutil.rmtree(self.created_path, ignore_errors=True)


@dataclass(frozen=True)
class CreatePlan:
    """A validated :meth:`VectorStore.create` request."""

    dim: int
    metric: str
    index_type: str
    index_params: dict[str, Any]
    scalars: dict[str, tuple[str, int]]
    partition_key: str | None
    dynamic: bool
    item_text: bool = False
    full_text: bool = False
    text_collection: str | None = None

    def on(self, caps: Capabilities, name: str) -> CreatePlan:
        """The plan for this deployment: item texts go to a text mirror where a collection holds one vector field
        (:mod:`~cir_milvus.storage.mirror`).

        Raises:
            ConfigError: ``name`` is reserved, or too long to take a mirror.
        """
        mirrored = self.item_text and not caps.multi_vector
        check_user_name(name, mirrored=mirrored)
        return dataclasses.replace(self, text_collection=mirror_name(name) if mirrored else None)

    def field_map(self, caps: Capabilities) -> FieldMap:
        nullable = frozenset(self.scalars) - {self.partition_key} if caps.nullable else frozenset()
        return FieldMap(dim=self.dim, metric=self.metric, scalars={k: v[0] for k, v in self.scalars.items()},
                        scalar_max_bytes={k: v[1] for k, v in self.scalars.items() if v[0] == "varchar"},
                        nullable=nullable, partition_key=self.partition_key, dynamic=self.dynamic,
                        text_vector_field=TEXT_VECTOR if self.item_text else None,
                        text_flag_field=HAS_TEXT if self.item_text else None,
                        text_raw_field=ITEM_TEXT if self.full_text else None,
                        text_sparse_field=TEXT_SPARSE if self.full_text else None,
                        text_collection=self.text_collection)


def plan_create(dim: Any, recipe: Recipe | None, metric: str | None, index: str | None,
                index_params: Mapping[str, Any] | None, fields: Mapping[str, Any] | None, partition_key: str | None,
                dynamic: bool, item_text: bool = False, full_text: bool = False) -> CreatePlan:
    """Validate the arguments of :meth:`VectorStore.create` (nothing is connected yet)."""
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
    params = dict(index_params if index_params is not None else DEFAULT_INDEX_PARAMS.get(index_type, {}))
    scalars = check_fields(fields, partition_key)
    if recipe is not None:
        rdim = recipe.encoder.get("dim")
        if rdim is not None and int(rdim) != int(dim):
            raise ConfigError(f"dim={dim} but the recipe's encoder makes {rdim}-d vectors")
    if full_text and not item_text:
        raise ConfigError("full_text=True (BM25 over the item text) needs item_text=True as well")
    return CreatePlan(int(dim), metric, index_type, params, scalars, partition_key, dynamic, bool(item_text),
                      bool(full_text))


def check_index(plan: CreatePlan, caps: Capabilities) -> None:
    if plan.item_text and not caps.multi_vector and not caps.collection_properties:
        raise ConfigError(f"item_text=True needs a second vector field, or collection properties to keep the item "
                          f"texts in a text mirror collection; Milvus {caps.version} has neither: upgrade the server "
                          "to Milvus >= 2.3 (a text mirror) or >= 2.4 (a second vector field), or keep item texts as "
                          "metadata")
    if plan.full_text and not caps.full_text:
        raise ConfigError(f"full_text=True needs BM25 full-text search, which Milvus {caps.version} lacks: it needs "
                          "Milvus >= 2.5 or Milvus Lite >= 3.0; create the collection without full_text (dense item "
                          "text still works: targets=('image', 'text'))")
    if plan.index_type not in caps.index_types:
        backend = "Milvus Lite" if caps.is_lite else f"Milvus {caps.version}"
        raise ConfigError(f"index {plan.index_type!r} is not built by {backend}; choose one of "
                          f"{sorted(caps.index_types)}")


def create_collection(conn: Connection, caps: Capabilities, name: str, plan: CreatePlan, recipe: Recipe | None) -> bool:
    """Create and load the collection (and first its text mirror, where it has one); ``False`` when another creator
    made it first (then nothing of ours is left).

    A collection this call created but could not finish (index or load failed) is dropped again before the error
    propagates: a failed create leaves no partial collection (nor a mirror it made).
    """
    f = plan.field_map(caps)
    props = {STORE_KEY: "1", **({PROPERTY_KEY: recipe.to_json()} if recipe is not None else {})}
    made_mirror = False
    if f.text_collection is not None:  # the mirror first: the main collection is the commit record
        made_mirror = _create_mirror(conn, caps, name, plan, f)
        props[TEXT_COLLECTION_KEY] = f.text_collection
    try:
        schema, ip = build_schema(conn.client, f, recipe, caps, plan.index_type, plan.index_params)
        made = _create_one(conn, name, schema, ip, props if caps.collection_properties else None)
        if f.text_collection is not None:  # its load started before main's: wait for it now
            mirror = f.text_collection
            conn.call(f"load collection {mirror!r}", lambda: conn.client.load_collection(mirror))
        return made
    except BaseException:
        if made_mirror and f.text_collection is not None:
            _drop_quietly(conn, f.text_collection)
        raise


def _create_mirror(conn: Connection, caps: Capabilities, name: str, plan: CreatePlan, f: FieldMap) -> bool:
    """Create the text mirror of ``name`` (``True``), or reuse the one a create that died before making ``name`` left
    (``False``; one of another dimension is replaced)."""
    mirror = str(f.text_collection)
    if conn.call(f"check collection {mirror!r}", lambda: bool(conn.client.has_collection(mirror))):
        desc = conn.call(f"describe collection {mirror!r}", lambda: conn.client.describe_collection(mirror))
        dims = [int((x.get("params") or {}).get("dim", 0)) for x in desc.get("fields", []) if x["name"] == TEXT_VECTOR]
        if mirror_of(desc) != name:
            raise ConfigError(f"collection {mirror!r} exists but is not the text mirror of {name!r}; drop or rename it "
                              "(names ending in '__cir_text' are reserved for cir_milvus)")
        if dims == [plan.dim]:
            return False
        conn.call(f"drop the stale text mirror {mirror!r}", lambda: conn.client.drop_collection(mirror))
    schema, ip = build_schema(conn.client, mirror_layout(f), None, caps, plan.index_type, plan.index_params)
    _create_one(conn, mirror, schema, ip, {MIRROR_OF_KEY: name}, wait=False)
    return True


def _create_one(conn: Connection, name: str, schema: Any, ip: Any, props: Mapping[str, str] | None, *,
                wait: bool = True) -> bool:
    """Create, index and load one collection (``wait=False``: the load is started, not waited for, so the main
    collection is created while its mirror loads: a load takes seconds on the 2.3.5 server)."""
    extra = {"properties": dict(props)} if props is not None else {}
    if wait:
        extra["index_params"] = ip

    def attempt() -> bool:
        try:
            with milvus_errors(f"create collection {name!r}"):
                conn.client.create_collection(name, schema=schema, consistency_level="Strong", **extra)
            return True
        except StorageError:
            # "already exists" has no code of its own (Lite: 1, the 2.3.5 server: 65535): ask whether it exists
            with milvus_errors(f"check collection {name!r}"):
                if conn.client.has_collection(name):
                    return False  # lost a race to another creator: converge on theirs
            raise

    if not conn.first.call(attempt, f"create collection {name!r}"):
        return False
    try:
        if not wait:
            conn.call(f"index collection {name!r}", lambda: conn.client.create_index(name, ip))
        conn.call(f"load collection {name!r}", lambda: conn.client.load_collection(name, **({} if wait else
                                                                                           {"_async": True})))
    except BaseException:
        _drop_quietly(conn, name)
        raise
    return True


def _drop_quietly(conn: Connection, name: str) -> None:
    try:
        with milvus_errors(f"drop the half-created collection {name!r}"):
            conn.client.drop_collection(name)
    except Exception:  # noqa: BLE001 - the original error matters more
        log.warning("could not drop the half-created collection %r", name, exc_info=True)


def check_mirror_slot(conn: Connection, name: str, plan: CreatePlan) -> None:
    """Before anything is dropped or created: the mirror name of a mirrored plan is free or already ``name``'s.

    Raises:
        ConfigError: another collection (not ``name``'s mirror) has the mirror's name.
    """
    mirror = plan.text_collection
    if mirror is None or not conn.call(f"check collection {mirror!r}", lambda: bool(conn.client.has_collection(mirror))):
        return
    desc = conn.call(f"describe collection {mirror!r}", lambda: conn.client.describe_collection(mirror))
    if mirror_of(desc) != name:
        raise ConfigError(f"collection {mirror!r} at {redact_uri(conn.where)} exists but is not the text mirror of "
                          f"{name!r}, and a mixed gallery {name!r} keeps its item texts under that name on this "
                          "server; drop or rename it (names ending in '__cir_text' are reserved for cir_milvus)")


def drop_with_mirror(client: Any, name: str) -> None:
    """Drop ``name``, then its text mirror if it has one (main first: the main collection is the commit record, so
    an interrupted drop leaves at most an orphan mirror, which the listing shows and the next create replaces)."""
    mirror = mirror_name(name)
    client.drop_collection(name)
    if client.has_collection(mirror) and mirror_of(client.describe_collection(mirror)) == name:
        client.drop_collection(mirror)


def wait_for_index(conn: Connection, name: str, vector_field: str) -> None:
    """Wait (within the connect timeout) until a collection another creator is making has its index."""
    deadline = time.monotonic() + conn.first.timeout
    while True:
        try:
            conn.call(f"describe the index of {name!r}", lambda: conn.client.describe_index(name, vector_field))
            return
        except PermanentStorageError as e:
            if e.code != _INDEX_NOT_BUILT or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def check_converged(name: str, where: str, plan: CreatePlan, fields: FieldMap, stored: Recipe | None,
                    wanted: Recipe | None, *, metric_given: bool) -> None:
    """An existing collection opened by ``create(exist_ok=True)`` must be the one asked for.

    Raises:
        RecipeMismatchError: another dimension, another metric (when one was asked for), or a recipe whose encoder
            differs (naming both).
    """
    if fields.dim != plan.dim or (metric_given and fields.metric != plan.metric):
        raise RecipeMismatchError(
            f"collection {name!r} at {redact_uri(where)} exists with dim {fields.dim} and metric {fields.metric}, "
            f"but dim {plan.dim} and metric {plan.metric} were asked for; open it, or create another collection")
    if plan.item_text and fields.text_vector_field is None:
        raise RecipeMismatchError(f"collection {name!r} at {redact_uri(where)} exists without an item-text field, but "
                                  "item_text=True was asked for; create the mixed gallery under another name")
    if stored is not None and wanted is not None:
        diffs = creation_conflicts(stored, wanted)
        if diffs:
            raise RecipeMismatchError(
                f"collection {name!r} at {redact_uri(where)} exists, built with {stored.describe()}, but it was to be "
                f"created with {wanted.describe()}: " + "; ".join(diffs)
                + ". Open it with its own recipe, or create the new one under another name.")


def database_call(uri: Any, what: str, call: Callable[[Any], T], missing: T, *, token: str | None,
                  timeout: float | None, connect_kwargs: Mapping[str, Any] | None) -> T:
    """One call on the database at ``uri`` through a short-lived connection (released afterwards, so a Lite file
    stays free), retried within the connect timeout; ``missing`` for a Lite path that does not exist, where nothing
    is created."""
    path = lite_path(uri)
    if path is not None and not path.exists():
        return missing
    conn = Connection.open(uri, token, timeout, connect_kwargs, None, create=False)
    try:
        return conn.call(what, lambda: call(conn.client))
    finally:
        conn.release()


def drop_collection(uri: Any, name: str, *, missing_ok: bool, token: str | None, timeout: float | None,
                    connect_kwargs: Mapping[str, Any] | None) -> None:
    """Drop ``name`` at ``uri`` (see :meth:`VectorStore.drop_collection`; a hidden text mirror counts as missing, and
    without ``missing_ok`` the error names its collection)."""
    if name.endswith(MIRROR_SUFFIX):
        owner = database_call(uri, f"check collection {name!r}", lambda c: mirror_owner(c, name), None, token=token,
                              timeout=timeout, connect_kwargs=connect_kwargs)
        if owner is not None:
            if missing_ok:
                return
            raise not_a_collection(name, owner, uri if isinstance(uri, str) else "(injected MilvusClient)")

    def drop(client: Any) -> bool:
        if not client.has_collection(name):
            return False
        drop_with_mirror(client, name)
        return True

    if not database_call(uri, f"drop collection {name!r}", drop, False, token=token, timeout=timeout,
                         connect_kwargs=connect_kwargs) and not missing_ok:
        nothing: list[str] = []
        existing = database_call(uri, "list collections", lambda c: hide_mirrors(list(map(str, c.list_collections()))),
                                 nothing, token=token, timeout=timeout, connect_kwargs=connect_kwargs)
        where = redact_uri(uri) if isinstance(uri, str) else "(injected MilvusClient)"
        raise CollectionNotFoundError(f"no collection {name!r} at {where}; existing: {', '.join(existing) or 'none'}")
