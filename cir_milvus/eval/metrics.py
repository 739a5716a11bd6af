"""The official retrieval metrics of CIRR, FashionIQ and CIRCO, computed from ranked id lists (numpy only).

A *ranking* is the list of gallery ids returned for one query, best first. Every function takes one ranking per
query, aligned with the queries, and returns percentages (0–100) keyed by metric name.

The computations port those of SEARLE ``src/validate.py`` (``cirr_compute_val_metrics``,
``fiq_compute_val_metrics``, ``circo_compute_val_metrics``) and of CIRCO's server-side ``src/evaluation.py``:

* **CIRR**: drop the reference from each ranking, then Recall@{1,5,10,50} (hit = target in the top K) and
  Recall_subset@{1,2,3} on the ranking restricted to ``img_set.members`` (reference excluded), global order kept.
* **FashionIQ**: Recall@{10,50} per category on the raw ranking (reference kept), averaged over categories.
* **CIRCO**: mAP@{5,10,25,50} with ``AP@K = Σ_{k≤K} P@k·rel_k / min(K, #GT)`` over all ground truths, and
  Recall@K using only ``target_img_id``; reference kept.

Rankings must hold at least ``max(ks)`` ids (after removing the reference, for CIRR). On a gallery smaller than
that (miniature data sets), pass ``gallery_size``: a ranking that covers the whole gallery is then accepted.

Example:
    >>> recall_at_k([["a", "b", "c"]], [{"b"}], ks=(1, 2))
    {'R@1': 0.0, 'R@2': 100.0}
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.eval.datasets import FASHIONIQ_CATEGORIES, CIRQuery

__all__ = [
    "CIRCO_KS",
    "CIRR_KS",
    "CIRR_SUBSET_KS",
    "FASHIONIQ_KS",
    "circo_metrics",
    "cirr_metrics",
    "cirr_subset_ranking",
    "cirr_subset_rankings",
    "fashioniq_metrics",
    "recall_at_k",
]

CIRR_KS: tuple[int, ...] = (1, 5, 10, 50)
CIRR_SUBSET_KS: tuple[int, ...] = (1, 2, 3)
FASHIONIQ_KS: tuple[int, ...] = (10, 50)
CIRCO_KS: tuple[int, ...] = (5, 10, 25, 50)


def _check_aligned(rankings: Sequence[Sequence[str]], n: int, what: str) -> None:
    if len(rankings) != n:
        raise ConfigError(f"got {len(rankings)} rankings for {n} {what}; pass exactly one ranking per query, "
                          f"in the same order")


def _check_ks(ks: Sequence[int]) -> int:
    if not ks or any(int(k) < 1 for k in ks):
        raise ConfigError(f"ks must be a non-empty sequence of positive ints, got {list(ks)}")
    return max(int(k) for k in ks)


def _check_length(kept: Sequence[str], raw_len: int, need: int, gallery_size: int | None, index: int) -> None:
    """Require ``need`` ids after filtering, unless the raw ranking already covers the whole gallery."""
    if len(kept) >= need or (gallery_size is not None and raw_len >= gallery_size):
        return
    hint = "" if gallery_size is not None else " (on a gallery smaller than that, pass gallery_size=...)"
    raise ConfigError(f"ranking {index} holds {len(kept)} usable ids but the largest K is {need}; retrieve at least "
                      f"{need} ids (one more when the reference is removed){hint}")


def _percent(hits: Sequence[float] | np.ndarray) -> float:
    return float(np.mean(np.asarray(hits, dtype=np.float64)) * 100.0) if len(hits) else 0.0


def _require_labels(queries: Sequence[CIRQuery], dataset: str) -> None:
    unlabeled = [q.query_id for q in queries if not q.target_ids]
    if unlabeled:
        raise ConfigError(f"{len(unlabeled)} {dataset} queries have no ground truth (first: {unlabeled[0]!r}); "
                          f"test splits are scored by the official server: write a submission file instead")


def recall_at_k(rankings: Sequence[Sequence[str]], positives: Sequence[Collection[str]],
                ks: Sequence[int] = CIRR_KS, *, exclude: Sequence[str | None] | None = None,
                gallery_size: int | None = None) -> dict[str, float]:
    """Recall@K: the share of queries with at least one positive among the top K, in percent.

    Args:
        rankings: ranked gallery ids per query, best first.
        positives: ids that count as hits, per query.
        ks: cut-offs.
        exclude: optionally one id per query dropped from its ranking before scoring (the reference image),
            or ``None`` for that query.
        gallery_size: number of gallery images; rankings that cover it may be shorter than ``max(ks)``.

    Returns:
        ``{"R@K": percent}`` for each K, in the order of ``ks``.

    Raises:
        ConfigError: mismatched lengths, bad ``ks`` or a ranking shorter than ``max(ks)``.

    Example:
        >>> recall_at_k([["ref", "t"]], [{"t"}], ks=(1,), exclude=["ref"])
        {'R@1': 100.0}
    """
    _check_aligned(rankings, len(positives), "positive sets")
    if exclude is not None:
        _check_aligned(rankings, len(exclude), "excluded ids")
    need = _check_ks(ks)
    hits = np.zeros((len(rankings), len(ks)), dtype=np.float64)  # [Q, len(ks)]
    for i, (ranking, pos) in enumerate(zip(rankings, positives, strict=True)):
        drop = exclude[i] if exclude is not None else None
        kept = [x for x in ranking if x != drop] if drop is not None else list(ranking)
        _check_length(kept, len(ranking), need, gallery_size, i)
        pos_set = set(pos)
        first = next((r for r, x in enumerate(kept) if x in pos_set), None)
        if first is not None:
            hits[i] = [first < k for k in ks]
    return {f"R@{k}": _percent(hits[:, j]) for j, k in enumerate(ks)}


def cirr_subset_ranking(ranking: Sequence[str], query: CIRQuery) -> list[str]:
    """The ranking restricted to the query's ``img_set.members``, reference removed, global order kept.

    Args:
        ranking: ranked gallery ids, best first.
        query: a CIRR query (``subset_ids`` set).

    Returns:
        The subset members in ranking order (at most five for official CIRR sets).

    Raises:
        ConfigError: the query has no ``subset_ids``.
    """
    if query.subset_ids is None:
        raise ConfigError(f"query {query.query_id!r} has no subset_ids; Recall_subset needs CIRR img_set members")
    members = set(query.subset_ids) - {query.reference_id}
    return [x for x in ranking if x in members]


def cirr_subset_rankings(rankings: Sequence[Sequence[str]], queries: Sequence[CIRQuery], k: int = 3, *,
                         use_targets: bool = False) -> list[list[str]]:
    """:func:`cirr_subset_ranking` for each query, refusing rankings too short to fix the top ``k`` subset order.

    Args:
        rankings: ranked gallery ids per query, best first.
        queries: CIRR queries, aligned with ``rankings``.
        k: how many leading subset positions must be decided.
        use_targets: also accept a ranking in which the query's target appears (enough to score Recall_subset).

    Returns:
        The subset rankings, reference removed.

    Raises:
        ConfigError: mismatched lengths, or a ranking with fewer than ``min(k, members)`` subset members (and,
            with ``use_targets``, without the target).
    """
    _check_aligned(rankings, len(queries), "queries")
    need = k
    out: list[list[str]] = []
    for i, (ranking, q) in enumerate(zip(rankings, queries, strict=True)):
        sub = cirr_subset_ranking(ranking, q)
        n_members = len(set(q.subset_ids or ()) - {q.reference_id})
        decided = len(sub) >= min(need, n_members) or (use_targets and bool(q.target_ids) and q.target_ids[0] in sub)
        if not decided:
            raise ConfigError(f"ranking {i} (pair {q.query_id}) contains only {len(sub)} of the {n_members} subset "
                              f"members, which cannot fix their top-{need} order; rank the whole gallery or pass "
                              f"subset_rankings= from a search restricted to img_set.members")
        out.append(sub)
    return out


def cirr_metrics(rankings: Sequence[Sequence[str]], queries: Sequence[CIRQuery], *,
                 subset_rankings: Sequence[Sequence[str]] | None = None, ks: Sequence[int] = CIRR_KS,
                 subset_ks: Sequence[int] = CIRR_SUBSET_KS, gallery_size: int | None = None) -> dict[str, float]:
    """CIRR Recall@K and Recall_subset@K, reference removed (official protocol).

    Args:
        rankings: ranked gallery ids per query, best first, over the whole split gallery.
        queries: the labeled CIRR queries (``target_ids`` and ``subset_ids`` set), aligned with ``rankings``.
        subset_rankings: optional rankings of each query's ``img_set.members`` (e.g. from a filtered search);
            by default the subset ranking is read off ``rankings``.
        ks: Recall cut-offs.
        subset_ks: Recall_subset cut-offs.
        gallery_size: see :func:`recall_at_k`.

    Returns:
        ``{"R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3"}`` in percent.

    Raises:
        ConfigError: mismatched lengths, unlabeled queries, too-short rankings, or rankings that do not contain
            enough subset members to decide Recall_subset.
    """
    _check_aligned(rankings, len(queries), "queries")
    _require_labels(queries, "CIRR")
    out = recall_at_k(rankings, [q.target_ids[:1] for q in queries], ks,
                      exclude=[q.reference_id for q in queries], gallery_size=gallery_size)
    need = _check_ks(subset_ks)
    source = rankings if subset_rankings is None else subset_rankings
    subs = cirr_subset_rankings(source, queries, need, use_targets=True)
    hits = np.zeros((len(queries), len(subset_ks)), dtype=np.float64)  # [Q, len(subset_ks)]
    for i, (sub, q) in enumerate(zip(subs, queries, strict=True)):
        if q.target_ids[0] in sub:
            pos = sub.index(q.target_ids[0])
            hits[i] = [pos < k for k in subset_ks]
    out.update({f"Rsubset@{k}": _percent(hits[:, j]) for j, k in enumerate(subset_ks)})
    return out


def fashioniq_metrics(rankings: Sequence[Sequence[str]], queries: Sequence[CIRQuery], *,
                      ks: Sequence[int] = FASHIONIQ_KS,
                      gallery_size: int | Mapping[str, int] | None = None) -> dict[str, float]:
    """FashionIQ Recall@K per category and averaged over categories (reference kept, official protocol).

    Each query's ranking must come from its own category's gallery. The average is the plain mean of the
    per-category recalls (not weighted by query count), as in SEARLE/LinCIR/Pic2Word.

    Args:
        rankings: ranked gallery ids per query, best first.
        queries: labeled FashionIQ queries (``category`` set), aligned with ``rankings``; any mix of categories.
        ks: cut-offs.
        gallery_size: gallery size, one int for all or ``{category: size}``; see :func:`recall_at_k`.

    Returns:
        ``{"dress/R@10", "dress/R@50", ..., "avg/R@10", "avg/R@50"}`` in percent, for the categories present.

    Raises:
        ConfigError: mismatched lengths, unlabeled queries, a query without category, or too-short rankings.
    """
    _check_aligned(rankings, len(queries), "queries")
    _require_labels(queries, "FashionIQ")
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        if q.category is None:
            raise ConfigError(f"query {q.query_id!r} has no category; fashioniq_metrics needs FashionIQ queries")
        groups.setdefault(q.category, []).append(i)
    order = [c for c in FASHIONIQ_CATEGORIES if c in groups] + sorted(set(groups) - set(FASHIONIQ_CATEGORIES))
    out: dict[str, float] = {}
    per_k: dict[int, list[float]] = {int(k): [] for k in ks}
    for cat in order:
        idx = groups[cat]
        size = gallery_size.get(cat) if isinstance(gallery_size, Mapping) else gallery_size
        rec = recall_at_k([rankings[i] for i in idx], [queries[i].target_ids[:1] for i in idx], ks,
                          gallery_size=size)
        for k in ks:
            out[f"{cat}/R@{k}"] = rec[f"R@{k}"]
            per_k[int(k)].append(rec[f"R@{k}"])
    for k in ks:
        out[f"avg/R@{k}"] = float(np.mean(per_k[int(k)])) if per_k[int(k)] else 0.0
    return out


def circo_metrics(rankings: Sequence[Sequence[str]], queries: Sequence[CIRQuery], *,
                  ks: Sequence[int] = CIRCO_KS, gallery_size: int | None = None) -> dict[str, float]:
    """CIRCO mAP@K over all ground truths and Recall@K over ``target_img_id`` (reference kept).

    ``AP@K = Σ_{k≤K} P@k · rel_k / min(K, #GT)``, where ``rel_k`` says whether the k-th id is a ground truth.
    As in the official ``compute_metrics`` (miccunifi/CIRCO ``src/evaluation.py``), ``#GT`` is the length of the
    annotation's ``gt_img_ids`` list, repeated ids included, and a ranking that repeats an id is refused, as the
    evaluation server refuses such a submission (a repeated ground truth would otherwise count twice).

    Args:
        rankings: ranked gallery ids per query, best first.
        queries: labeled CIRCO queries (``target_ids`` = ``gt_img_ids``, target first), aligned with ``rankings``.
        ks: cut-offs.
        gallery_size: see :func:`recall_at_k`.

    Returns:
        ``{"mAP@5", ..., "mAP@50", "R@5", ..., "R@50"}`` in percent.

    Raises:
        ConfigError: mismatched lengths, unlabeled queries, too-short rankings, or a ranking with a repeated id.
    """
    _check_aligned(rankings, len(queries), "queries")
    _require_labels(queries, "CIRCO")
    for q, ranking in zip(queries, rankings, strict=True):
        seen: set[str] = set()
        for pos, x in enumerate(ranking):
            if x in seen:
                raise ConfigError(
                    f"CIRCO query {q.query_id!r}: the ranking repeats id {x!r} (at rank {pos + 1}); the evaluation "
                    "server refuses repeated ids, so de-duplicate the ranking (keep each id's best rank) first"
                )
            seen.add(x)
    need = _check_ks(ks)
    aps = np.zeros((len(queries), len(ks)), dtype=np.float64)  # [Q, len(ks)]
    for i, (ranking, q) in enumerate(zip(rankings, queries, strict=True)):
        _check_length(ranking, len(ranking), need, gallery_size, i)
        gts = set(q.target_ids)
        n_gt = len(q.target_ids)  # the official denominator counts repeated ground-truth ids
        rel = np.array([x in gts for x in ranking[:need]], dtype=np.float64)  # [L]
        precision_at = np.cumsum(rel) / np.arange(1, len(rel) + 1) if len(rel) else rel  # [L], P@k
        gain = precision_at * rel  # [L], P@k · rel_k
        aps[i] = [gain[:k].sum() / min(k, n_gt) for k in ks]
    out = {f"mAP@{k}": _percent(aps[:, j]) for j, k in enumerate(ks)}
    out.update(recall_at_k(rankings, [q.target_ids[:1] for q in queries], ks, gallery_size=gallery_size))
    return out
