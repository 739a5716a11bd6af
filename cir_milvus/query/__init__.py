"""Queries beyond one (image, text) pair, as vector operations over any encoder (numpy only, torch-free).

- :func:`spherical_mean` / :func:`combine_references`: several references → one (weighted Karcher mean).
- :func:`negate`: move a query away from negative texts (orthogonal negation).
- :func:`rocchio`: relevance feedback towards liked and away from unliked stored vectors.
- :func:`rrf` / :func:`weighted_scores`: fuse ranked lists (reciprocal rank; Milvus's weighted rule).
- :func:`dedupe`: drop near-duplicate hits by cosine.

The formulas and their sources are in ``docs/queries.md``.
"""

from __future__ import annotations

from cir_milvus.query.checks import check_alphas, check_threshold, check_weights
from cir_milvus.query.fusion import RRF_K, dedupe, normalize_score, rrf, weighted_scores
from cir_milvus.query.sphere import ROCCHIO_DEFAULTS, combine_references, negate, rocchio, spherical_mean, unit_rows

__all__ = [
    "ROCCHIO_DEFAULTS",
    "RRF_K",
    "check_alphas",
    "check_threshold",
    "check_weights",
    "combine_references",
    "dedupe",
    "negate",
    "normalize_score",
    "rocchio",
    "rrf",
    "spherical_mean",
    "unit_rows",
    "weighted_scores",
]
