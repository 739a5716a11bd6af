"""Fusing ranked lists (reciprocal rank, Milvus's weighted score rule) and dropping near-duplicate hits.

Example:
    >>> rrf([["a", "b", "c"], ["b", "a", "d"]])[:2]
    [('a', 0.03252247488101534), ('b', 0.03252247488101534)]
    >>> weighted_scores([[("a", 0.5)], [("a", 0.5), ("b", 0.9)]], [0.6, 0.4], metric="COSINE")[0][0]
    'a'
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.query.checks import check_threshold
from cir_milvus.query.sphere import unit_rows

__all__ = ["RRF_K", "dedupe", "normalize_score", "rrf", "weighted_scores"]

RRF_K = 60
"""The smoothing constant of reciprocal-rank fusion: Cormack, Clarke & Büttcher (SIGIR 2009) and Milvus's
``RRFRanker`` default."""

METRICS = ("COSINE", "IP", "L2", "BM25")


def rrf(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K) -> list[tuple[Any, float]]:
    """Reciprocal-rank fusion: ``score(d) = Σᵢ 1 / (k + rankᵢ(d))``, ranks counted from 1, lists missing ``d`` add 0.

    Cormack, Clarke & Büttcher, "Reciprocal rank fusion outperforms Condorcet and individual rank learning methods"
    (SIGIR 2009); the same rule as Milvus's ``RRFRanker(k)``. Ties keep the order in which ids were first met
    (lists in order, each from its top), so the result is deterministic.

    Args:
        rankings: ranked id lists, best first (an id repeated within one list counts at its best rank).
        k: smoothing constant, a positive integer (default 60).

    Returns:
        ``(id, score)`` pairs, best first.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"the RRF constant k must be a positive integer (default {RRF_K}), got {k!r}")
    if not rankings:
        raise ConfigError("rrf() needs at least one ranked list")
    scores: dict[Any, float] = {}
    for ranking in rankings:
        seen: set[Any] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def normalize_score(score: float, metric: str) -> float:
    """Milvus's per-metric score normalisation before weighting (``norm_score=True``, the pymilvus default).

    ``COSINE``: ``(1 + s) / 2``; ``IP``: ``1/2 + arctan(s)/π``; ``BM25``: ``2·arctan(s)/π``; ``L2`` (a distance,
    smaller is better): ``1 - 2·arctan(d)/π``. All map to [0, 1] with larger = better (Milvus ``getNormalizeFunc``
    in its weighted reranker; milvus.io/docs/weighted-ranker.md, "Mechanism").
    """
    m = metric.upper()
    if m == "COSINE":
        return (1.0 + score) * 0.5
    if m == "IP":
        return 0.5 + math.atan(score) / math.pi
    if m == "BM25":
        return 2.0 * math.atan(score) / math.pi
    if m == "L2":
        return 1.0 - 2.0 * math.atan(score) / math.pi
    raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")


def weighted_scores(results: Sequence[Sequence[tuple[Hashable, float]]], weights: Sequence[float], *,
                    metric: str | Sequence[str] = "COSINE", norm_score: bool = True) -> list[tuple[Any, float]]:
    """Milvus ``WeightedRanker`` semantics: ``score(d) = Σᵢ wᵢ · norm(sᵢ(d))``, a list missing ``d`` adds 0.

    Args:
        results: one list of ``(id, score)`` per search, as the search returned them.
        weights: one weight in [0, 1] per list (Milvus's range).
        metric: the metric of every list (or one per list); picks :func:`normalize_score`'s rule.
        norm_score: normalise before weighting (pymilvus default ``True``); ``False`` weights raw scores (a
            distance metric is still turned so that larger is better, as Milvus does).

    Returns:
        ``(id, score)`` pairs, best first; ties keep first-met order.

    Raises:
        ConfigError: weights that do not match the lists or fall outside [0, 1], an unknown metric.
    """
    if len(weights) != len(results):
        raise ConfigError(f"{len(weights)} weight(s) for {len(results)} result lists; give one weight per list")
    if any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0 for w in weights):
        raise ConfigError(f"weighted ranker weights must be numbers in [0, 1], got {list(weights)!r}")
    metrics = [metric] * len(results) if isinstance(metric, str) else list(metric)
    if len(metrics) != len(results):
        raise ConfigError(f"{len(metrics)} metric(s) for {len(results)} result lists")
    scores: dict[Any, float] = {}
    for hits, w, m in zip(results, weights, metrics):
        for item, s in hits:
            if norm_score or m.upper() == "L2":
                s = normalize_score(float(s), m)
            else:
                normalize_score(0.0, m)  # validates the metric name
            scores[item] = scores.get(item, 0.0) + w * float(s)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def dedupe(vectors: Any, threshold: float) -> list[int]:
    """Indices of the hits to keep when near-duplicates are dropped, in rank order.

    Greedy, best first (non-maximum suppression over cosine): a hit is dropped when its cosine to a better hit
    that was KEPT reaches ``threshold``; comparing with kept hits only means a chain of small differences
    (A≈B, B≈C, A≉C) keeps C.

    Args:
        vectors: ``[N, D]`` hit vectors in rank order (normalised here).
        threshold: cosine in (0, 1].

    Returns:
        Kept row indices, ascending.
    """
    t = check_threshold(threshold)
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ConfigError(f"dedupe needs an [N, D] array of hit vectors, got shape {v.shape}")
    if len(v) == 0:
        return []
    x = unit_rows(v, "hit vectors")
    kept: list[int] = []
    for i in range(len(x)):
        if not kept or float(np.max(x[kept] @ x[i])) < t - 1e-7:
            kept.append(i)
    return kept
