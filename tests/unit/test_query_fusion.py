"""Fusion, Milvus's weighted rule, dedupe and the argument checks, against independent computations."""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest

from cir_milvus.errors import ConfigError
from cir_milvus.query import check_alphas, check_threshold, check_weights, dedupe, rrf, weighted_scores


def test_rrf_reproduces_the_milvus_documentation_example() -> None:
    # milvus.io/docs/rrf-ranker.md: sparse and dense top-5 lists, k = 60; 101 scores 1/61 + 1/62 = 0.03252247
    sparse = [101, 203, 150, 198, 175]
    dense = [198, 101, 110, 175, 250]
    fused = dict(rrf([sparse, dense]))
    assert fused[101] == pytest.approx(0.03252247, abs=1e-8)
    assert fused[198] == pytest.approx(0.03201844, abs=1e-8)
    assert [i for i, _ in rrf([sparse, dense])][:3] == [101, 198, 175]


def test_rrf_matches_exact_fraction_counting() -> None:
    rng = np.random.default_rng(0)
    lists = [list(rng.permutation(30)[:12]) for _ in range(4)]
    exact: dict[int, Fraction] = defaultdict(Fraction)
    for ranked in lists:
        for pos in range(len(ranked)):
            exact[int(ranked[pos])] += Fraction(1, 10 + pos + 1)
    got = rrf(lists, k=10)
    assert {int(i): s for i, s in got} == pytest.approx({i: float(f) for i, f in exact.items()})
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)


def test_rrf_ties_are_deterministic_and_bad_k_is_refused() -> None:
    assert [i for i, _ in rrf([["a", "b"], ["b", "a"]])] == ["a", "b"]
    with pytest.raises(ConfigError, match="positive integer"):
        rrf([["a"]], k=0)
    with pytest.raises(ConfigError, match="at least one"):
        rrf([])


def test_weighted_reproduces_the_milvus_documentation_example_on_raw_scores() -> None:
    # milvus.io/docs/weighted-ranker.md: image weight 0.6, text 0.4; final order 101, 198, 175, 203, 150
    image = [(101, 0.92), (203, 0.88), (150, 0.85), (198, 0.83), (175, 0.80)]
    text = [(198, 0.91), (101, 0.87), (110, 0.85), (175, 0.82), (250, 0.78)]
    fused = weighted_scores([image, text], [0.6, 0.4], metric="IP", norm_score=False)
    assert [i for i, _ in fused][:5] == [101, 198, 175, 203, 150]
    assert dict(fused)[101] == pytest.approx(0.6 * 0.92 + 0.4 * 0.87)


@pytest.mark.parametrize("metric", ["COSINE", "IP", "L2", "BM25"])
def test_weighted_normalisation_per_metric(metric: str) -> None:
    s = np.array([-0.4, 0.1, 0.7, 2.5])
    rule = {"COSINE": (1 + s) / 2, "IP": 0.5 + np.arctan(s) / np.pi, "BM25": 2 * np.arctan(s) / np.pi,
            "L2": 1 - 2 * np.arctan(s) / np.pi}[metric]
    a = [(f"x{i}", float(v)) for i, v in enumerate(s)]
    b = [("x0", float(s[3]))]
    got = dict(weighted_scores([a, b], [0.3, 0.9], metric=metric))
    assert got["x1"] == pytest.approx(0.3 * rule[1])
    assert got["x0"] == pytest.approx(0.3 * rule[0] + 0.9 * rule[3])


def test_weighted_refuses_mismatched_or_out_of_range_weights() -> None:
    with pytest.raises(ConfigError, match="one weight per list"):
        weighted_scores([[("a", 1.0)]], [0.5, 0.5])
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        weighted_scores([[("a", 1.0)]], [1.5])
    with pytest.raises(ConfigError, match="metric"):
        weighted_scores([[("a", 1.0)]], [1.0], metric="HAMMING")


def _nms(sim: np.ndarray, t: float) -> list[int]:
    """Non-maximum suppression written as repeated pick-and-suppress over a boolean mask."""
    alive = np.ones(len(sim), dtype=bool)
    kept = []
    while alive.any():
        i = int(np.flatnonzero(alive)[0])
        kept.append(i)
        alive &= sim[i] < t
        alive[i] = False
    return kept


def test_dedupe_matches_pick_and_suppress() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(6, 16))
    v = np.concatenate([base, base[[0, 2, 2, 4]] + 0.05 * rng.normal(size=(4, 16))])[rng.permutation(10)]
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    sim = unit @ unit.T
    for t in (0.9, 0.99, 1.0):
        assert dedupe(v, t) == _nms(sim, t)
    assert len(dedupe(v, 0.9)) == 6


def test_dedupe_compares_with_kept_hits_only() -> None:
    a = np.array([1.0, 0.0])
    b = np.array([math.cos(0.25), math.sin(0.25)])
    c = np.array([math.cos(0.5), math.sin(0.5)])
    t = math.cos(0.3)  # a≈b, b≈c, but a and c are 0.5 rad apart
    assert dedupe(np.stack([a, b, c]), t) == [0, 2]
    assert dedupe(np.zeros((0, 2)), 0.9) == []


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, float("nan"), "0.9", True])
def test_threshold_outside_the_unit_interval_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        check_threshold(bad)


def test_alpha_lists() -> None:
    assert check_alphas([0.6, 0.7, 0.6, 1]) == [0.6, 0.7, 1.0]
    for bad in ([], [0.5, 1.2], [-0.1], ["0.5"], [None]):
        with pytest.raises(ConfigError, match="alpha"):
            check_alphas(bad)


def test_weights_must_match_the_references() -> None:
    assert check_weights(None, 4).tolist() == [0.25] * 4
    assert check_weights([1, 3], 2).tolist() == [0.25, 0.75]
    with pytest.raises(ConfigError, match="3 value.*2 references"):
        check_weights([1, 1, 1], 2)
    with pytest.raises(ConfigError, match="list of numbers"):
        check_weights("0.5", 1)
