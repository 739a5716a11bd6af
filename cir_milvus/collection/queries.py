"""Search planning for :meth:`CIRCollection.search <cir_milvus.CIRCollection.search>` and ``search_batch``.

A query is one :class:`QuerySpec`: its text, its reference(s) (images and/or stored ids), and optionally negative
texts and liked / unliked stored ids. :func:`run_search` turns a list of them into hits:

1. references: one per query goes straight to the composer; several are combined on the sphere
   (:func:`cir_milvus.query.combine_references`) into one raw reference before composing;
2. compose, once per alpha when ``alpha`` is a list;
3. relevance feedback on the stored vectors of ``like`` / ``unlike`` (:func:`cir_milvus.query.rocchio`), then the
   negative texts (:func:`cir_milvus.query.negate`);
4. one Milvus search for every query vector; the lists of several alphas fused by reciprocal rank
   (:func:`cir_milvus.query.rrf`); near-duplicates dropped (:func:`cir_milvus.query.dedupe`);
5. the query vector and the hits' stored vectors attached on request.

The rules and their sources are in ``docs/queries.md``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.images import path_text as source_name
from cir_milvus.query import check_alphas, check_threshold, check_weights, combine_references, dedupe, negate, rocchio
from cir_milvus.query import rrf as rrf_fuse
from cir_milvus.query.checks import non_empty
from cir_milvus.storage.store import Hit, Hits, Id

__all__ = ["DEDUPE_OVERFETCH", "QuerySpec", "batch_specs", "run_search", "single_spec"]

DEDUPE_OVERFETCH = 4
"""With ``dedupe=``, each search fetches this many times ``k`` candidates so ``k`` remain after dropping."""

Reference = tuple[Literal["image", "id"], Any]


class PlannedCollection(Protocol):
    """What the planner uses of :class:`~cir_milvus.CIRCollection` (typed structurally, so the facade imports this
    module and not the other way round)."""

    store: Any
    encoder: Any

    @property
    def name(self) -> str: ...

    def composer(self, name: str | None = None, **params: Any) -> Any: ...

    def compose(self, images: Any, texts: Sequence[Any], **kw: Any) -> np.ndarray: ...

    def get_vectors(self, ids: Sequence[Id]) -> dict[Id, np.ndarray]: ...


@dataclass(frozen=True)
class QuerySpec:
    """One query: a text, its references, and the optional negative texts and feedback ids.

    Attributes:
        text: the modification text (a pair of captions for FashionIQ-style queries).
        references: ``("image", path | bytes | PIL)`` or ``("id", stored id)`` pairs, in the order of ``weights``.
        weights: one non-negative weight per reference (``None``: equal).
        negatives: texts to move away from.
        like, unlike: stored ids to move towards / away from (their stored vectors; nothing is re-encoded).
    """

    text: Any
    references: tuple[Reference, ...] = ()
    weights: tuple[float, ...] | None = None
    negatives: tuple[str, ...] = ()
    like: tuple[Id, ...] = ()
    unlike: tuple[Id, ...] = ()


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = non_empty(name, value)
    bad = [t for t in items if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ConfigError(f"{name}= must be a non-empty text or a list of them, got {bad[0]!r}")
    return tuple(items)


def _ids(name: str, value: Any) -> tuple[Id, ...]:
    if value is None:
        return ()
    items = non_empty(name, [value] if isinstance(value, (str, int)) else value)
    if any(isinstance(i, bool) or not isinstance(i, (str, int)) for i in items):
        raise ConfigError(f"{name}= must hold stored ids (strings or integers), got {items!r}")
    return tuple(items)


def _references(image: Any, ref_id: Any, images: Any, ref_ids: Any) -> tuple[Reference, ...]:
    if (image is not None or ref_id is not None) and (images is not None or ref_ids is not None):
        raise ConfigError("give one reference with image=/ref_id=, or several with images=[...]/ref_ids=[...], "
                          "not both")
    refs: list[Reference] = [("image", image)] if image is not None else []
    refs += [("id", ref_id)] if ref_id is not None else []
    if images is not None:
        refs += [("image", im) for im in non_empty("images", [images] if isinstance(images, (str, bytes)) else images)]
    if ref_ids is not None:
        items = non_empty("ref_ids", [ref_ids] if isinstance(ref_ids, (str, int, bytes)) else ref_ids)
        for r in items:  # strings and integers are stored ids; a Path, bytes or a PIL image is an image
            if isinstance(r, bool):
                raise ConfigError(f"ref_ids= holds stored ids or images, got {r!r}")
            refs.append(("id", r) if isinstance(r, (str, int)) else ("image", r))
    return tuple(refs)


def single_spec(text: Any, *, image: Any = None, ref_id: Any = None, images: Any = None, ref_ids: Any = None,
                weights: Any = None, negative: Any = None, like: Any = None, unlike: Any = None) -> QuerySpec:
    """Validate the arguments of one query (see :meth:`CIRCollection.search`) into a :class:`QuerySpec`.

    Raises:
        ConfigError: empty lists, weights that do not match the references, a negative that is not a text.
    """
    refs = _references(image, ref_id, images, ref_ids)
    if weights is not None:
        if len(refs) < 2:
            raise ConfigError("weights= weighs several references (images=[...] and/or ref_ids=[...]); with one "
                              "reference leave it out")
        weights = tuple(float(w) for w in check_weights(weights, len(refs)))
    return QuerySpec(text, refs, weights, _strings("negative", negative), _ids("like", like), _ids("unlike", unlike))


def _per_query(name: str, value: Any, n: int, broadcast: bool) -> list[Any]:
    """A batch argument: ``None``, one value for every query (``broadcast``), or one entry per query."""
    if value is None:
        return [None] * n
    if broadcast and isinstance(value, str):
        return [value] * n
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"search_batch {name}= takes one entry per query (a list of {n}), got {value!r}")
    if len(value) != n:
        raise ConfigError(f"search_batch {name}= has {len(value)} entries for {n} queries; give one per query "
                          f"(None where a query has none)")
    return list(value)


def batch_specs(texts: Sequence[Any], *, images: Any = None, ref_ids: Any = None, weights: Any = None,
                negative: Any = None, like: Any = None, unlike: Any = None) -> list[QuerySpec]:
    """The queries of :meth:`CIRCollection.search_batch`: every argument has one entry per text (an entry of
    ``images``/``ref_ids`` may be a list: several references); a single ``negative`` string applies to all."""
    n = len(texts)
    columns = {name: _per_query(name, v, n, name == "negative")
               for name, v in (("images", images), ("ref_ids", ref_ids), ("weights", weights),
                               ("negative", negative), ("like", like), ("unlike", unlike))}
    out = []
    for i, text in enumerate(texts):
        im, rid = columns["images"][i], columns["ref_ids"][i]
        several = isinstance(im, (list, tuple)) or isinstance(rid, (list, tuple))
        out.append(single_spec(
            text, image=None if several else im, ref_id=None if several else rid,
            images=im if several else None, ref_ids=rid if several else None, weights=columns["weights"][i],
            negative=columns["negative"][i], like=columns["like"][i], unlike=columns["unlike"][i]))
    return out


def _stored(col: PlannedCollection, ids: Sequence[Id], what: str) -> dict[Id, np.ndarray]:
    """Stored RAW vectors of ``ids`` (one read), refusing ids the collection does not hold."""
    unique = list(dict.fromkeys(ids))
    if not unique:
        return {}
    got = col.get_vectors(unique)
    missing = [i for i in unique if i not in got]
    if missing:
        raise ConfigError(f"{what} id(s) {missing[:5]!r} are not stored in {col.name!r}; pass ids of stored items")
    return got


def _reference_embeddings(col: PlannedCollection, specs: Sequence[QuerySpec], preprocess: str | None) -> np.ndarray:
    """One RAW reference embedding per query ``[N, D]``: images encoded in one pass, ids read in one call,
    several references combined on the sphere."""
    images = [r[1] for s in specs for r in s.references if r[0] == "image"]
    encoded = (np.asarray(col.encoder.encode_images(images, normalize=False, preprocess=preprocess), dtype=np.float32)
               if images else np.zeros((0, col.store.dim), dtype=np.float32))
    stored = _stored(col, [r[1] for s in specs for r in s.references if r[0] == "id"], "ref_ids")
    out, next_image = [], 0
    for s in specs:
        raw = []
        for kind, value in s.references:
            if kind == "image":
                raw.append(encoded[next_image])
                next_image += 1
            else:
                raw.append(np.asarray(stored[value], dtype=np.float32))
        out.append(raw[0] if len(raw) == 1 else combine_references(np.stack(raw), s.weights))
    return np.stack(out).astype(np.float32)


def _compose(col: PlannedCollection, specs: Sequence[QuerySpec], alphas: Sequence[float | None],
             compose_kw: Mapping[str, Any]) -> list[np.ndarray]:
    """Query vectors ``[N, D]`` per alpha. Plain queries (one reference each, one alpha) take the collection's
    usual :meth:`~CIRCollection.compose` path; otherwise references are embedded once and reused for every alpha."""
    texts = [s.text for s in specs]
    params = dict(compose_kw.get("composer_params", {}))
    comp = col.composer(compose_kw.get("composer"), **params)
    kw = {"composer": compose_kw.get("composer"), "truncate": compose_kw.get("truncate", False), **params}
    if len(alphas) > 1 and "alpha" not in comp.params:
        raise ConfigError(f"alpha=[...] fuses several alphas of a composer that has one (slerp, combined); composer "
                          f"{comp.name!r} has none: pass one alpha, or composer='combined' for a pseudo-token method")
    if not comp.needs_image or not any(s.references for s in specs):
        return [col.compose(None, texts, alpha=a, **kw) for a in alphas]
    if any(not s.references for s in specs):
        raise ConfigError(f"composer {comp.name!r} needs a reference (image, ref_id, images or ref_ids) per query")
    kinds = {s.references[0][0] for s in specs}
    if len(alphas) == 1 and all(len(s.references) == 1 for s in specs) and len(kinds) == 1:
        values = [s.references[0][1] for s in specs]
        images, ids = (values, None) if kinds == {"image"} else (None, values)
        return [col.compose(images, texts, ref_ids=ids, alpha=alphas[0], **kw)]
    emb = _reference_embeddings(col, specs, comp.preprocess)
    return [col.compose(None, texts, reference_embeddings=emb, alpha=a, **kw) for a in alphas]


def _adjust(col: PlannedCollection, specs: Sequence[QuerySpec], vectors: list[np.ndarray]) -> list[np.ndarray]:
    """Feedback (Rocchio on stored vectors), then negation, applied to every query vector."""
    if not any(s.like or s.unlike or s.negatives for s in specs):
        return vectors
    stored = _stored(col, [i for s in specs for i in (*s.like, *s.unlike)], "like/unlike")
    texts = list(dict.fromkeys(t for s in specs for t in s.negatives))
    neg = dict(zip(texts, np.asarray(col.encoder.encode_texts(texts, normalize=True), dtype=np.float32))) \
        if texts else {}
    out = []
    for q in vectors:
        q = q.copy()
        for i, s in enumerate(specs):
            if s.like or s.unlike:
                q[i] = rocchio(q[i], [stored[x] for x in s.like] or None, [stored[x] for x in s.unlike] or None)
            if s.negatives:
                q[i] = negate(q[i], np.stack([neg[t] for t in s.negatives]))
        out.append(q)
    return out


def _exclusions(col: PlannedCollection, specs: Sequence[QuerySpec], exclude_reference: bool) -> list[list[Any] | None]:
    """Stored ids to drop from each query's hits: its references (a stored id; for an image given by path or bytes,
    the rows stored from it whatever the id scheme: its content id, and the rows whose ``source`` is its path) when
    ``exclude_reference``, and always its judged ``like``/``unlike`` items."""
    from cir_milvus.images import content_id

    by_source: dict[str, list[Any]] = {}
    paths = list(dict.fromkeys(source_name(v) for s in specs for kind, v in s.references
                               if kind == "image" and isinstance(v, (str, os.PathLike))))
    if exclude_reference and paths and col.store.fields.source_field:
        f = col.store.fields.source_field
        for r in col.store.query(f"{f} in {{paths}}", {"paths": paths}, output_fields=[f],
                                 limit=min(16384, 16 * len(paths))):
            by_source.setdefault(r["source"], []).append(r["id"])
    out: list[list[Any] | None] = []
    for s in specs:
        ex: list[Any] = [*s.like, *s.unlike]
        for kind, v in s.references if exclude_reference else ():
            if kind == "id":
                ex.append(v)
                continue
            if isinstance(v, (str, bytes, os.PathLike)):
                try:
                    cid = content_id(v)
                    if col.store.check_id(cid) is None:
                        ex.append(cid)
                except Exception:  # noqa: BLE001 - an unreadable reference fails later with a clear error
                    pass
            if isinstance(v, (str, os.PathLike)):
                ex.extend(by_source.get(source_name(v), []))
        out.append(ex or None)
    return out


def _one_per_group(ranked: list[Hit], group_by: str) -> list[Hit]:
    """The best hit per value of ``group_by`` (fused lists may each hold another member of a group)."""
    seen: set[Any] = set()
    out = []
    for h in ranked:
        value = h.metadata.get(group_by)
        key = repr(value)
        if key not in seen:
            seen.add(key)
            out.append(h)
    return out


def _finish(lists: list[Hits], queries: list[np.ndarray], vectors: Mapping[Any, np.ndarray], k: int,
            threshold: float | None, return_query_vector: bool, output_vectors: bool,
            group_by: str | None = None) -> Hits:
    """Fuse one query's lists (one per alpha), drop near-duplicates, cut to ``k``, attach vectors."""
    best: dict[Any, tuple[Hit, int]] = {}
    for li, hits in enumerate(lists):
        for h in hits:
            best.setdefault(h.id, (h, li))
    if len(lists) > 1:
        ranked = [dataclasses.replace(best[i][0], score=s) for i, s in rrf_fuse([[h.id for h in hs] for hs in lists])]
        ranked = _one_per_group(ranked, group_by) if group_by else ranked
    else:
        ranked = list(lists[0])
    if threshold is not None and ranked:
        ranked = [ranked[i] for i in dedupe(np.stack([vectors[h.id] for h in ranked]), threshold)]
    out = Hits()
    for h in ranked[:k]:
        extra: dict[str, Any] = {}
        if output_vectors:
            extra["vector"] = vectors[h.id].astype(np.float32)
        if return_query_vector:
            extra["query_vector"] = queries[best[h.id][1]]
        out.append(dataclasses.replace(h, **extra) if extra else h)
    return out


def run_search(col: PlannedCollection, specs: Sequence[QuerySpec], *, k: int, alpha: Any, dedupe: float | None,
               return_query_vector: bool, output_vectors: bool, exclude_reference: bool,
               compose_kw: Mapping[str, Any], search_kw: Mapping[str, Any]) -> list[Hits]:
    """Hits for every query (see the module docstring for the steps).

    Args:
        col: the collection.
        specs: the queries.
        k: hits per query.
        alpha: ``None``, one alpha, or a list of alphas to fuse by reciprocal rank.
        dedupe: cosine threshold in (0, 1] for near-duplicate hits, or ``None``.
        return_query_vector: set ``hit.query_vector`` (for fused alphas: the vector of the list where the hit
            ranked best).
        output_vectors: set ``hit.vector`` (the stored, L2-normalised vector).
        exclude_reference: drop the references from the hits.
        compose_kw: ``composer``, ``truncate`` and ``composer_params`` for :meth:`CIRCollection.compose`.
        search_kw: ``filter``, ``filter_params``, ``output_fields``, ``search_params``, ``group_by``.
    """
    alphas: list[float | None] = list(check_alphas(alpha)) if isinstance(alpha, (list, tuple)) else [alpha]
    threshold = check_threshold(dedupe) if dedupe is not None else None
    vectors = _adjust(col, specs, _compose(col, specs, alphas, compose_kw))
    exclude = _exclusions(col, specs, exclude_reference)
    fetch = min(k * DEDUPE_OVERFETCH, 16384) if threshold is not None else k
    search = col.store.search_targets if "targets" in search_kw else col.store.search_vectors  # mixed galleries
    if "bm25" in tuple(search_kw.get("targets") or ()):  # the modification text is the full-text query
        search_kw = {**search_kw, "texts": [s.text if isinstance(s.text, str) else " ".join(map(str, s.text))
                                            for s in specs] * len(vectors)}
    results = search(np.concatenate(vectors), fetch, exclude_ids=exclude * len(vectors), **search_kw)
    stored: dict[Any, np.ndarray] = {}
    if threshold is not None or output_vectors:
        raw = col.get_vectors(list(dict.fromkeys(h.id for hits in results for h in hits)))
        stored = {i: v / max(float(np.linalg.norm(v)), 1e-12) for i, v in raw.items()}  # unit, as Milvus holds them
    n = len(specs)
    return [_finish([results[a * n + i] for a in range(len(vectors))], [v[i] for v in vectors], stored, k, threshold,
                    return_query_vector, output_vectors, search_kw.get("group_by")) for i in range(n)]
