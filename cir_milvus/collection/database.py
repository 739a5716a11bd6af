"""The connect-first API: ``db = cir_milvus.connect(uri, ...)`` once, then its collections by name.

Example:
    >>> import cir_milvus  # doctest: +SKIP
    >>> db = cir_milvus.connect("./cir.db")  # doctest: +SKIP
    >>> col = db.create_collection("products", model="cir-demo-tiny", pretrained="cir-demo")  # doctest: +SKIP
    >>> db.list_collections()  # doctest: +SKIP
    ['products']
    >>> col = db.open_collection("products")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cir_milvus.artifacts import SearchPath
from cir_milvus.collection.build import Connection, EncoderChoice
from cir_milvus.collection.facade import CIRCollection
from cir_milvus.collection.specs import ComposerSpec, ConnectOptions, FieldSpec, IfExists, IndexSpec, ItemText
from cir_milvus.errors import ConfigError
from cir_milvus.storage.client import redact_uri
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.store import Consistency, VectorStore

__all__ = ["Database", "connect"]


class Database(Connection):
    """A Milvus database (a Milvus Lite file or a server) with its connection options, given once.

    Made by :func:`connect`. Every collection opened through it uses its options; nothing stays connected between
    calls (a Milvus Lite file is free for another process whenever no collection of it is open).
    """

    def create_collection(
        self,
        name: str,
        model: str | None = None,
        pretrained: str | None = None,
        *,
        encoder: EncoderChoice = None,
        composer: str | ComposerSpec = "slerp",
        index: str | IndexSpec = "HNSW",
        fields: Mapping[str, Any] | FieldSpec | None = None,
        if_exists: IfExists = "fail",
        item_text: ItemText = False,
    ) -> CIRCollection:
        """Create a collection; the arguments are :meth:`CIRCollection.create`'s (after ``uri``)."""
        return CIRCollection.create(self, name, model, pretrained, encoder=encoder, composer=composer, index=index,
                                    fields=fields, if_exists=if_exists, item_text=item_text)

    def open_collection(
        self,
        name: str,
        model: str | None = None,
        pretrained: str | None = None,
        *,
        encoder: EncoderChoice = None,
        composer: str | ComposerSpec | None = None,
        schema: Mapping[str, Any] | None = None,
        search_path: SearchPath = None,
    ) -> CIRCollection:
        """Open a collection; the arguments are :meth:`CIRCollection.open`'s (after ``uri``)."""
        return CIRCollection.open(self, name, model, pretrained, encoder=encoder, composer=composer, schema=schema,
                                  search_path=search_path)

    def _kw(self) -> dict[str, Any]:
        o = self.options
        return {"token": o.token, "timeout": o.timeout, "connect_kwargs": dict(o.client_options)}

    def list_collections(self) -> list[str]:
        """The names of the collections in this database, sorted (including ones cir_milvus did not create; the text
        mirrors of mixed galleries on servers before Milvus 2.4 are part of their collection, and not listed)."""
        return VectorStore.list_collections(self.uri, **self._kw())

    def has_collection(self, name: str) -> bool:
        """Whether a collection of this name exists, as :meth:`list_collections` sees it: a mixed gallery's text mirror
        is part of its collection (``False``; opening or dropping it by its name is refused with a message naming its
        collection)."""
        return VectorStore.exists(self.uri, name, **self._kw())

    def drop_collection(self, name: str, *, missing_ok: bool = False) -> None:
        """Drop a collection and its data (a mixed gallery's text mirror with it).

        Raises:
            CollectionNotFoundError: no such collection (unless ``missing_ok``; the message lists the existing ones).
        """
        VectorStore.drop_collection(self.uri, name, missing_ok=missing_ok, **self._kw())

    def __repr__(self) -> str:
        where = redact_uri(self.uri) if isinstance(self.uri, str) else "(injected MilvusClient)"
        return f"Database({where!r}, {self.options!r})"


def connect(
    uri: Any,
    *,
    token: str | None = None,
    timeout: float | None = 10.0,
    consistency: Consistency = "Session",
    retry: RetryPolicy | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> Database:
    """A :class:`Database`: where collections live and how to reach it, given once.

    Nothing is connected yet: a wrong URI or token is reported by the first call that needs the server.

    Args:
        uri: a Milvus Lite file (``"./cir.db"``), a server URI (``"http://host:19530"``) or a ``MilvusClient``.
        token: ``"user:password"`` or an API key (servers only); never logged.
        timeout: seconds to wait for the server when connecting.
        consistency: consistency level of searches and lookups.
        retry: the retry policy of every storage call (default: 300 s of backoff).
        client_options: other ``MilvusClient`` arguments (TLS: ``secure``, ``server_pem_path``, ``db_name``...).

    Raises:
        ConfigError: ``uri`` is neither a string nor a ``MilvusClient``.

    Example:
        >>> db = connect("./cir.db", timeout=5)
        >>> db.options.timeout
        5
    """
    if not isinstance(uri, str) and not hasattr(uri, "has_collection"):
        raise ConfigError(f"uri must be a Milvus Lite path, a server URI or a MilvusClient; got {uri!r}")
    return Database(uri, ConnectOptions(token=token, timeout=timeout, consistency=consistency, retry=retry,
                                        client_options=dict(client_options or {})))
