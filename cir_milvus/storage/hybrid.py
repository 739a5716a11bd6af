"""Mixed galleries: the item-text vector field next to the image field, and search against several fields at once.

A collection created with ``item_text=True`` holds, besides ``vector`` (the image), ``text_vector`` (the item's
text embedded with the collection's text tower, L2-normalised) and ``has_text`` (BOOL). An item stored without a
text gets a zero ``text_vector`` and ``has_text = false``: every request against the text field carries
``has_text == true``, so such an item is **absent from the text list** and reachable through the image field only
(with RRF it can still win on its image rank; with the weighted ranker its text term is 0).

:meth:`StoreHybrid.search_targets` matches the same query vectors against several fields ("targets"):

- ``("image",)``: the plain image search (:meth:`~cir_milvus.storage.store.VectorStore.search_vectors`);
- ``("text",)``: the text field alone (one ANN search with the ``has_text`` filter);
- two targets: one ``MilvusClient.hybrid_search`` with ``RRFRanker`` / ``WeightedRanker`` where the deployment has it
  (Milvus Lite, Milvus ≥ 2.4: :attr:`Capabilities.hybrid_search`); elsewhere one search per field fused here with
  the same rules (:func:`cir_milvus.query.rrf`, :func:`cir_milvus.query.weighted_scores`): each list holds the
  field's top ``limit`` under the same filters, a list missing an item adds 0. Scores agree with Milvus's; ties may
  be ordered differently (Milvus Lite orders tied items by id).

Servers before 2.4 hold one vector field per collection (:attr:`Capabilities.multi_vector`). There a mixed gallery
keeps ``text_vector`` and ``has_text`` in a **text mirror**, a second collection owned by the store
(``NAME__cir_text``, :mod:`~cir_milvus.storage.mirror`): the same row as the main collection (id, norm, source,
metadata, typed and dynamic fields) with the text vector in place of the image vector. The text side of a search is
an ordinary search of the mirror under the same user filter (plus ``has_text == true``), so filters and ``group_by``
work as on the main collection, and the lists are always fused client-side with the rules above. A text hit counts
only when the main collection holds its id (the main collection is the commit record of the two writes).
``FieldMap.text_collection`` names the mirror (``None``: the text fields are in the collection itself); the store's
one upsert writes both (mirror first), ``delete`` and ``drop`` remove from both (main first).

The user's filter applies to every request; ``group_by`` and reference exclusion are applied to the fused list
(over-fetching ``k × 8`` candidates for ``group_by``, as on servers without native grouping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.query.fusion import rrf, weighted_scores
from cir_milvus.storage.filters import in_filter
from cir_milvus.storage.reads import LOOKUP_CHUNK, StoreReads
from cir_milvus.storage.results import Hits, Id
from cir_milvus.storage.schema import DEFAULT_SEARCH_PARAMS, MAX_ITEM_TEXT_BYTES, FieldMap
from cir_milvus.storage.search import collect_hits, hit_id, plan_search, query_matrix

__all__ = ["RANKERS", "TARGETS", "Ranker", "StoreHybrid", "TargetPlan", "check_targets", "text_columns"]

TARGETS = ("image", "text", "bm25")
"""The fields a composed query can be matched against: the image vector, the item-text vector, and (``full_text``)
BM25 over the item text with the modification text as the full-text query."""
RANKERS = ("rrf", "weighted")
Ranker = Literal["rrf", "weighted"]


class TargetPlan:
    """Checked ``targets`` / ``ranker`` / ``ranker_weights``: the fields searched, their metrics and weights."""

    def __init__(self, targets: tuple[str, ...], fields: tuple[str, ...], ranker: Ranker,
                 weights: tuple[float, ...] | None, metrics: tuple[str, ...]) -> None:
        self.targets = targets
        self.fields = fields
        self.ranker = ranker
        self.weights = weights
        self.metrics = metrics


def check_targets(f: FieldMap, collection: str, targets: Any, ranker: Any = "rrf",
                  ranker_weights: Sequence[float] | None = None) -> TargetPlan:
    """Validate the search targets against the collection's fields.

    Raises:
        ConfigError: an unknown or repeated target, ``"text"`` on a collection without an item-text field, an unknown
            ranker, weights that do not match the targets (one number in [0, 1] per target, weighted ranker only).
    """
    names = (targets,) if isinstance(targets, str) else tuple(targets) if isinstance(targets, Sequence) else None
    if not names:
        raise ConfigError(f"targets must be a non-empty list of {', '.join(TARGETS)}, got {targets!r}")
    for t in names:
        if t not in TARGETS:
            raise ConfigError(f"unknown search target {t!r}; choose from {', '.join(TARGETS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"targets {list(names)} name a field twice")
    if "text" in names and f.text_vector_field is None:
        raise ConfigError(f"collection {collection!r} has no item-text field, so it cannot be searched with target "
                          "'text'; create it with item_text=True (or attach it with schema={'text_vector_field': ...})")
    if "bm25" in names and f.text_sparse_field is None:
        raise ConfigError(f"collection {collection!r} has no BM25 field, so it cannot be searched with target 'bm25'; "
                          "create it with item_text=True, full_text=True (BM25 needs Milvus Lite >= 3.0 or Milvus "
                          ">= 2.5)")
    if ranker not in RANKERS:
        raise ConfigError(f"ranker must be 'rrf' or 'weighted', got {ranker!r}")
    weights: tuple[float, ...] | None = None
    if ranker_weights is not None:
        if ranker != "weighted":
            raise ConfigError("ranker_weights are for ranker='weighted' (RRF fuses ranks, without weights)")
        ws = list(ranker_weights)
        if len(ws) != len(names):
            raise ConfigError(f"{len(ws)} ranker_weights for {len(names)} targets {list(names)}; give one weight per "
                              "target, in the same order")
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= float(w) <= 1.0 for w in ws):
            raise ConfigError(f"ranker_weights must be numbers in [0, 1], got {ws!r}")
        weights = tuple(float(w) for w in ws)
    elif ranker == "weighted":
        weights = tuple(1.0 / len(names) for _ in names)
    by_target = {"image": f.vector_field, "text": str(f.text_vector_field), "bm25": str(f.text_sparse_field)}
    return TargetPlan(names, tuple(by_target[t] for t in names), ranker, weights,
                      tuple("BM25" if t == "bm25" else f.metric for t in names))


def text_columns(f: FieldMap, rows: list[dict[str, Any]], index: Sequence[int],
                 text_vectors: Sequence[np.ndarray | None] | None, n: int,
                 texts: Sequence[str | None] | None = None) -> None:
    """Add the item-text columns to the rows about to be written (``index[j]``: input position of ``rows[j]``).

    ``text_vectors[i]`` is the raw text embedding of input ``i`` (normalised here) or ``None`` (no text: a zero vector
    and ``has_text = false``); ``None`` altogether means no item has a text. ``texts[i]`` is the text itself, kept
    (cut to 65,535 bytes) for BM25 where the collection has ``full_text`` (ignored elsewhere: the vector is stored).

    Raises:
        ConfigError: text vectors on a collection without a text field, or of the wrong number or shape.
    """
    if f.text_vector_field is None:
        if text_vectors is not None:
            raise ConfigError("this collection has no item-text field; create it with item_text=True to store texts")
        return
    if text_vectors is not None and len(text_vectors) != n:
        raise ConfigError(f"{len(text_vectors)} text vectors for {n} rows")
    if texts is not None and len(texts) != n:
        raise ConfigError(f"{len(texts)} texts for {n} rows")
    zero = [0.0] * f.dim
    for row, i in zip(rows, index):
        v = None if text_vectors is None else text_vectors[i]
        if v is not None:
            v = np.asarray(v, dtype=np.float32)
            if v.shape != (f.dim,) or not np.all(np.isfinite(v)):
                raise ConfigError(f"text vector {i} must be {f.dim} finite numbers, got shape {v.shape}")
            norm = float(np.linalg.norm(v))
            v = v / norm if norm > 0 else None
        row[f.text_vector_field] = zero if v is None else v.tolist()
        if f.text_flag_field is not None:
            row[f.text_flag_field] = v is not None
        if f.text_raw_field is not None:
            t = (texts[i] if texts is not None else None) or ""
            row[f.text_raw_field] = t.encode("utf-8")[:MAX_ITEM_TEXT_BYTES].decode("utf-8", "ignore")


def _and(a: str, b: str) -> str:
    return f"({a}) and ({b})" if a and b else a or b


class StoreHybrid(StoreReads):
    """Search against several vector fields (see the module docstring), and the stored item-text vectors."""

    @property
    def text_collection(self) -> str:
        """The collection holding the item-text fields: this one, or its text mirror."""
        return self.fields.text_collection or self.name

    def delete_text_rows(self, *, ids: Sequence[Id] | None = None, expr: str = "") -> None:
        """Remove rows from the text mirror (no-op without one), by valid ids or by a rendered filter: the second
        half of :meth:`~cir_milvus.storage.store.VectorStore.delete`, after the main collection's rows."""
        mirror = self.fields.text_collection
        if mirror is None:
            return
        exprs = [expr] if ids is None else [in_filter(self.fields.id_field, list(ids[s : s + LOOKUP_CHUNK]))
                                            for s in range(0, len(ids), LOOKUP_CHUNK)]
        for e in exprs:
            if e.strip():
                self._call(f"delete from {mirror!r}",
                           lambda e=e: self._client.delete(mirror, filter=e))  # type: ignore[misc]

    def stored_text_vectors(self, ids: Sequence[Id]) -> dict[Id, np.ndarray | None]:
        """The stored (normalised) item-text vector of each stored id, ``None`` for an item without text."""
        f = self.fields
        if f.text_vector_field is None or not ids:
            return {}
        wanted = [f.id_field, f.text_vector_field, *([f.text_flag_field] if f.text_flag_field else [])]
        out: dict[Id, np.ndarray | None] = {}
        valid = [i for i in dict.fromkeys(ids) if self.check_id(i) is None]
        for s in range(0, len(valid), 1000):
            expr = in_filter(f.id_field, valid[s : s + 1000])

            def read(expr: str = expr) -> Any:
                return self._client.query(self.text_collection, filter=expr, output_fields=wanted,
                                          consistency_level=self.consistency)

            rows = self._call(f"read item texts of {self.name!r}", read)
            for r in rows:
                has = r.get(f.text_flag_field, True) if f.text_flag_field else True
                out[r[f.id_field]] = np.asarray(r[f.text_vector_field], dtype=np.float32) if has else None
        return out

    def stored_texts(self, ids: Sequence[Id]) -> dict[Id, str | None]:
        """The stored item text of each stored id (``full_text`` collections), ``None`` for an item without text."""
        f = self.fields
        if f.text_raw_field is None or not ids:
            return {}
        out: dict[Id, str | None] = {}
        valid = [i for i in dict.fromkeys(ids) if self.check_id(i) is None]
        for s in range(0, len(valid), 1000):
            expr = in_filter(f.id_field, valid[s : s + 1000])

            def read(expr: str = expr) -> Any:
                return self._client.query(self.name, filter=expr, output_fields=[f.id_field, f.text_raw_field],
                                          consistency_level=self.consistency)

            for r in self._call(f"read item texts of {self.name!r}", read):
                out[r[f.id_field]] = r.get(f.text_raw_field) or None
        return out

    def search_targets(
        self,
        vectors: np.ndarray,
        k: int = 10,
        *,
        targets: Sequence[str] = ("image",),
        ranker: Ranker = "rrf",
        ranker_weights: Sequence[float] | None = None,
        filter: str | None = None,
        filter_params: Mapping[str, Any] | None = None,
        group_by: str | None = None,
        exclude_ids: Sequence[Any] | None = None,
        output_fields: Sequence[str] | None = None,
        search_params: Mapping[str, Any] | None = None,
        texts: Sequence[str] | None = None,
    ) -> list[Hits]:
        """Match query vectors ``[N, D]`` against the fields named by ``targets`` (see the module docstring).

        Args:
            targets: ``("image",)``, ``("text",)`` or ``("image", "text")`` (any order; weights follow it).
            ranker: ``"rrf"`` (reciprocal rank, k = 60) or ``"weighted"`` (Milvus's WeightedRanker score rule).
            ranker_weights: one weight in [0, 1] per target (weighted ranker; default equal).
            texts: one full-text query per query vector (the modification text), for target ``"bm25"``.
            Others: as for :meth:`~cir_milvus.storage.store.VectorStore.search_vectors`.

        Returns:
            One :class:`Hits` per query; ``Hit.score`` is the fused score (or the field's similarity for one target).

        Raises:
            ConfigError: see :func:`check_targets`; as for ``search_vectors``.
        """
        tp = check_targets(self.fields, self.name, targets, ranker, ranker_weights)
        if tp.targets == ("image",):
            return self.search_vectors(vectors, k, filter=filter, filter_params=filter_params,  # type: ignore[attr-defined, no-any-return]
                                       group_by=group_by, exclude_ids=exclude_ids, output_fields=output_fields,
                                       search_params=search_params)
        q = query_matrix(vectors, self.dim)
        if "bm25" in tp.targets and (texts is None or len(texts) != len(q)):
            raise ConfigError(f"target 'bm25' needs one text per query vector; got "
                              f"{'none' if texts is None else len(texts)} for {len(q)}")
        plan = plan_search(self.fields, self.name, len(q), k, exclude_ids=exclude_ids, group_by=group_by,
                           output_fields=self._output_fields(output_fields), native_group_by=False)
        expr = self.render_filter(filter, filter_params)
        idx_type = self.recipe.index.get("type", "HNSW") if self.recipe is not None else "HNSW"
        params = dict(search_params or DEFAULT_SEARCH_PARAMS.get(idx_type, {}))
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), plan.limit)
        f = self.fields
        flag = f"{f.text_flag_field} == true" if f.text_flag_field else ""
        exprs = [expr if t == "image" else _and(expr, flag) for t in tp.targets]
        native = len(tp.fields) > 1 and self.capabilities.hybrid_search and f.text_collection is None
        colls = [self.text_collection if t == "text" else self.name for t in tp.targets]
        out: list[Hits] = []
        for s in range(0, len(q), 1024):
            dense = q[s : s + 1024].tolist()
            data = [list(texts[s : s + 1024]) if t == "bm25" and texts is not None else dense for t in tp.targets]
            if native:
                res = self._call(f"hybrid search {self.name!r}",
                                 lambda data=data: self._hybrid(data, tp, exprs, params, plan.limit,  # type: ignore[misc]
                                                                plan.output_fields), user_filter=expr)
            else:
                lists = [self._call(f"search {c!r} ({t})",
                                    lambda d=d, t=t, fld=fld, e=e, c=c: self._one(  # type: ignore[misc]
                                        c, d, t, fld, e, params, plan.limit, plan.output_fields), user_filter=expr)
                         for d, t, fld, e, c in zip(data, tp.targets, tp.fields, exprs, colls)]
                if f.text_collection is not None and "text" in tp.targets:
                    i = tp.targets.index("text")
                    known = {hit_id(f, self.name, h) for j, lst in enumerate(lists) if j != i for hits in lst
                             for h in hits}  # found in the main collection itself
                    lists[i] = self._committed(lists[i], known)
                res = [fuse([lst[j] for lst in lists], tp, f, self.name, plan.limit) for j in range(len(dense))]
            out.extend(collect_hits(f, self.name, plan, s + j, hits) for j, hits in enumerate(res))
        return out

    def _committed(self, lists: Sequence[Sequence[Mapping[str, Any]]], known: set[Any]
                   ) -> list[list[Mapping[str, Any]]]:
        """Text-mirror hit lists without the ids the main collection does not hold (rows whose main write has not
        happened, or never will: see :mod:`~cir_milvus.storage.mirror`); ``known`` are held (found in main), the
        others are looked up (one ``id in [...]`` query, none when every id is known)."""
        f = self.fields
        unknown = [i for hits in lists for h in hits if (i := hit_id(f, self.name, h)) not in known]
        held = known | (self.existing_ids(unknown) if unknown else set())
        return [[h for h in hits if hit_id(f, self.name, h) in held] for hits in lists]

    def _one(self, collection: str, data: list[Any], target: str, field: str, expr: str, params: Mapping[str, Any],
             limit: int, output_fields: list[str]) -> Any:
        bm25 = target == "bm25"
        res = self._client.search(collection, data=data, limit=limit, filter=expr, output_fields=output_fields,
                                  search_params=_request_params(self.fields.metric, params, bm25),
                                  anns_field=field, consistency_level=self.consistency)
        if not any(len(h) for h in res):
            self._check_loaded(collection)
        if bm25 and self.capabilities.is_lite:  # Milvus Lite reports BM25 scores negated; give them as servers do
            res = [[{**h, "distance": abs(float(h["distance"]))} for h in hits] for hits in res]
        return res

    def _hybrid(self, data: list[list[Any]], tp: TargetPlan, exprs: list[str], params: Mapping[str, Any],
                limit: int, output_fields: list[str]) -> Any:
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        reqs = [AnnSearchRequest(d, fld, _request_params(self.fields.metric, params, t == "bm25"), limit,
                                 expr=e or None) for d, t, fld, e in zip(data, tp.targets, tp.fields, exprs)]
        rk = WeightedRanker(*tp.weights) if tp.ranker == "weighted" and tp.weights else RRFRanker(60)
        res = self._client.hybrid_search(self.name, reqs, rk, limit=limit, output_fields=output_fields,
                                         consistency_level=self.consistency)
        if not any(len(h) for h in res):
            self._check_loaded()
        return res


def _request_params(metric: str, params: Mapping[str, Any], bm25: bool) -> dict[str, Any]:
    return {"metric_type": "BM25"} if bm25 else {"metric_type": metric, "params": dict(params)}


def fuse(lists: Sequence[Sequence[Mapping[str, Any]]], tp: TargetPlan, f: FieldMap, collection: str,
         limit: int) -> list[dict[str, Any]]:
    """Client-side fusion of one query's per-field hit lists, with Milvus's ranker rules; hit dicts as Milvus
    returns them (``distance`` = the fused score), best first, at most ``limit``."""
    entity: dict[Any, Any] = {}
    ranked: list[list[tuple[Any, float]]] = []
    for hits in lists:
        row = []
        for h in hits:
            hid = hit_id(f, collection, h)
            entity.setdefault(hid, h.get("entity", {}))
            row.append((hid, float(h["distance"])))
        ranked.append(row)
    if len(ranked) == 1:
        fused = ranked[0]
    elif tp.ranker == "weighted":
        assert tp.weights is not None
        fused = weighted_scores(ranked, tp.weights, metric=list(tp.metrics))
    else:
        fused = rrf([[i for i, _ in r] for r in ranked])
    return [{"id": i, "distance": s, "entity": entity[i]} for i, s in fused[:limit]]
