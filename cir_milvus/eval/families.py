"""Scoring issue 26's query features on the synthetic world's query families, each against its naive alternative.

Every family is run through the collection (Milvus search), 400 test queries by default:

| family | the feature | naive alternatives |
|---|---|---|
| negation | ``negative=`` | the text alone; the negative pasted into the text ("… but not large") |
| references | ``ref_ids=[a, b]`` (spherical mean) | the first reference alone; the plain average of the raw embeddings |
| feedback | ``like=`` / ``unlike=`` after one simulated round | no feedback (same residual ranking) |
| alphas | ``alpha=[0.6, 0.7, 0.8, 0.9]`` fused by RRF | the single alpha tuned on the validation split |

Every arm excludes the same ids (the references; for feedback also the judged items), so the rankings are comparable.
Standard errors are over queries; a feature "beats" an alternative when its R@10 gain exceeds twice the standard error
of the paired per-query difference. ``benchmarks/bench_query_families.py`` writes the figures; the demo prints
:func:`format_family_line` per family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cir_milvus.eval.synthetic import SyntheticDataset
from cir_milvus.synthetic_families import FamilyQuery, simulate_feedback

if TYPE_CHECKING:
    from cir_milvus.collection import CIRCollection

__all__ = ["FUSED_ALPHAS", "FamilyResult", "family_results", "format_family_line", "score_arms", "tune_alpha"]

FUSED_ALPHAS: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9)
"""The alpha list the ``alphas`` family fuses (the issue's example)."""
ALPHA_GRID: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Single alphas tried on the validation split (the demo's grid)."""
K = 10


@dataclass
class FamilyResult:
    """One family's figures for one composer.

    Attributes:
        family, composer: what was measured.
        method: the arm that uses the feature.
        arms: per arm, ``{"R@1", "R@1_se", "R@10", "R@10_se"}`` in percent.
        versus: per naive arm, ``{"dR@10", "dR@10_se", "dR@1", "dR@1_se", "beats"}`` (paired differences, percent).
        n: number of queries.
    """

    family: str
    composer: str
    method: str
    arms: dict[str, dict[str, float]] = field(default_factory=dict)
    versus: dict[str, dict[str, Any]] = field(default_factory=dict)
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "composer": self.composer, "method": self.method, "n": self.n,
                "arms": self.arms, "versus": self.versus}


def _hits(rankings: Sequence[Sequence[Any]], queries: Sequence[FamilyQuery], k: int) -> np.ndarray:
    return np.array([any(h in set(q.target_ids) for h in r[:k]) for r, q in zip(rankings, queries)], dtype=float)


def score_arms(arms: Mapping[str, Sequence[Sequence[Any]]], queries: Sequence[FamilyQuery], family: str,
               composer: str, method: str) -> FamilyResult:
    """R@1 / R@10 of every arm's rankings (best first, one per query), with standard errors over queries, and the
    paired differences of ``method`` against every other arm ("beats": ΔR@10 above twice its standard error)."""
    n = len(queries)
    res = FamilyResult(family, composer, method, n=n)
    per = {name: {k: _hits(r, queries, k) for k in (1, K)} for name, r in arms.items()}
    for name, h in per.items():
        res.arms[name] = {f"R@{k}{s}": round(float(v), 2) for k in (1, K)
                          for s, v in (("", 100 * h[k].mean()), ("_se", 100 * h[k].std(ddof=1) / np.sqrt(n)))}
    for name in per:
        if name == method:
            continue
        d = {k: per[method][k] - per[name][k] for k in (1, K)}
        diff = {f"dR@{k}{s}": round(float(v), 2) for k in (1, K)
                for s, v in (("", 100 * d[k].mean()), ("_se", 100 * d[k].std(ddof=1) / np.sqrt(n)))}
        res.versus[name] = {**diff, "beats": bool(diff[f"dR@{K}"] > 2 * diff[f"dR@{K}_se"])}
    return res


def _ids(hits: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[h.id for h in hs] for hs in hits]


def tune_alpha(col: CIRCollection, val: SyntheticDataset, composer: str, params: Mapping[str, Any],
               grid: Sequence[float] = ALPHA_GRID) -> float:
    """The single alpha with the best R@1 (then R@10) on the validation split's ``alphas`` family."""
    qs = val.family("alphas")
    refs, texts = [q.reference_ids[0] for q in qs], [q.text for q in qs]
    best: tuple[float, float, float] | None = None
    for a in grid:
        r = _ids(col.search_batch(None, texts, k=K, composer=composer, alpha=a, ref_ids=refs, **params))
        key = (float(_hits(r, qs, 1).mean()), float(_hits(r, qs, K).mean()), -a)
        best = key if best is None or key > best else best
    assert best is not None
    return -best[2]


def _negation(col: CIRCollection, ds: SyntheticDataset, kw: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    qs = ds.family("negation")
    refs = [q.reference_ids[0] for q in qs]
    arms = {"negative=": col.search_batch(None, [q.text for q in qs], k=K, ref_ids=refs,
                                          negative=[q.negative for q in qs], **kw),
            "text alone": col.search_batch(None, [q.text for q in qs], k=K, ref_ids=refs, **kw),
            "negative pasted into text": col.search_batch(None, [q.naive_text for q in qs], k=K, ref_ids=refs, **kw)}
    return {n: _ids(h) for n, h in arms.items()}, qs


def _references(col: CIRCollection, ds: SyntheticDataset, kw: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    qs = ds.family("references")
    texts, both = [q.text for q in qs], [list(q.reference_ids) for q in qs]
    method = col.search_batch(None, texts, k=K, ref_ids=both, **kw)
    first = col.compose(None, texts, ref_ids=[q.reference_ids[0] for q in qs], **kw)
    raw = col.get_vectors(list(dict.fromkeys(r for q in qs for r in q.reference_ids)))
    mean = np.stack([(raw[a] + raw[b]) / 2 for a, b in both]).astype(np.float32)
    average = col.compose(None, texts, reference_embeddings=mean, **kw)
    arms = {"ref_ids=[a, b]": method,
            "first reference alone": col.search_vectors(first, K, exclude_ids=both),
            "plain average": col.search_vectors(average, K, exclude_ids=both)}
    return {n: _ids(h) for n, h in arms.items()}, qs


def _feedback(col: CIRCollection, ds: SyntheticDataset, kw: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    qs = ds.family("feedback")
    refs, texts = [q.reference_ids[0] for q in qs], [q.text for q in qs]
    attrs = {it.id: it.attributes for it in ds.world.gallery()}
    first = col.search_batch(None, texts, k=K, ref_ids=refs, **kw)
    marks = [simulate_feedback(q, [str(h.id) for h in hs], attrs) for q, hs in zip(qs, first)]
    with_fb = col.search_batch(None, texts, k=K, ref_ids=refs, like=[m[0] or None for m in marks],
                               unlike=[m[1] or None for m in marks], **kw)
    plain = col.compose(None, texts, ref_ids=refs, **kw)
    residual = col.search_vectors(plain, K, exclude_ids=[[r, *m[0], *m[1]] for r, m in zip(refs, marks)])
    return {"like=/unlike=": _ids(with_fb), "no feedback": _ids(residual)}, qs


def _alphas(col: CIRCollection, ds: SyntheticDataset, kw: Mapping[str, Any],
            tuned: float) -> tuple[dict[str, Any], list[Any]]:
    qs = ds.family("alphas")
    refs, texts = [q.reference_ids[0] for q in qs], [q.text for q in qs]
    base = {k: v for k, v in kw.items() if k != "alpha"}
    arms = {"alpha=[0.6..0.9] RRF": col.search_batch(None, texts, k=K, ref_ids=refs, alpha=list(FUSED_ALPHAS), **base),
            f"tuned alpha {tuned:.1f}": col.search_batch(None, texts, k=K, ref_ids=refs, alpha=tuned, **base)}
    return {n: _ids(h) for n, h in arms.items()}, qs


def family_results(col: CIRCollection, val: SyntheticDataset, test: SyntheticDataset, *, composer: str,
                   composer_params: Mapping[str, Any] | None = None, alpha: float | None = None,
                   alpha_composer: tuple[str, Mapping[str, Any]] | None = None) -> dict[str, FamilyResult]:
    """Every family for one composer, on the test split.

    Args:
        col: a collection holding the synthetic gallery (ids = the world's ids).
        val, test: the two splits (``val`` tunes the single alpha of the ``alphas`` family).
        composer, composer_params, alpha: the composer of the negation, references and feedback families.
        alpha_composer: ``(name, params)`` of the composer whose alphas the ``alphas`` family fuses (default:
            ``composer``; give ``("combined", {...})`` for a pseudo-token composer, which has no alpha).
    """
    params = dict(composer_params or {})
    kw: dict[str, Any] = {"composer": composer, **({"alpha": alpha} if alpha is not None else {}), **params}
    out = {}
    for family, run in (("negation", _negation), ("references", _references), ("feedback", _feedback)):
        arms, qs = run(col, test, kw)
        out[family] = score_arms(arms, qs, family, composer, next(iter(arms)))
    a_name, a_params = alpha_composer or (composer, params)
    tuned = tune_alpha(col, val, a_name, a_params)
    arms, qs = _alphas(col, test, {"composer": a_name, **a_params}, tuned)
    out["alphas"] = score_arms(arms, qs, "alphas", a_name, next(iter(arms)))
    return out


def format_family_line(result: FamilyResult) -> str:
    """One line: the feature's R@10 against each naive alternative, with the verdict at 2 standard errors."""
    m = result.arms[result.method]
    parts = []
    for name, v in result.versus.items():
        a = result.arms[name]
        parts.append(f"{name} {a['R@10']:.1f}±{a['R@10_se']:.1f} ({v['dR@10']:+.1f}±{v['dR@10_se']:.1f}: "
                     f"{'beats' if v['beats'] else 'does NOT beat'})")
    return (f"{result.family:10s} [{result.composer}] {result.method} R@10 {m['R@10']:.1f}±{m['R@10_se']:.1f} "
            f"(R@1 {m['R@1']:.1f}) vs " + "; ".join(parts))
