"""Result types of the store: :class:`Hit` / :class:`Hits` (search), :class:`WriteResult` and :class:`Skipped`
(writes), and the :data:`Id` alias."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Hit", "Hits", "Id", "Skipped", "WriteResult"]

Id = str | int
"""A primary key: a string (collections the store creates) or a 64-bit integer (attached collections)."""


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
