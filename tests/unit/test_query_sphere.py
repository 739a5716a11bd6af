"""The sphere rules of cir_milvus.query, each checked against an independent computation written differently here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cir_milvus.errors import ConfigError
from cir_milvus.query import ROCCHIO_DEFAULTS, combine_references, negate, rocchio, spherical_mean


def _geodesic_cost(m: np.ndarray, x: np.ndarray, w: np.ndarray) -> float:
    m = m / np.linalg.norm(m)
    xs = x / np.linalg.norm(x, axis=1, keepdims=True)
    return float(sum(wi * math.acos(max(-1.0, min(1.0, float(xi @ m)))) ** 2 for wi, xi in zip(w, xs)))


def _circle_grid_mean(angles: list[float], w: list[float]) -> float:
    """The minimiser of Σ w·d² on the unit circle by a fine grid over the arc between the points (brute force)."""
    lo, hi = min(angles), max(angles)
    grid = np.linspace(lo, hi, 200_001)
    cost = sum(wi * (grid - a) ** 2 for a, wi in zip(angles, w))  # arc distances, all points within a half circle
    return float(grid[int(np.argmin(cost))])


def _descent_mean(x: np.ndarray, w: np.ndarray, steps: int = 4000, lr: float = 0.05) -> np.ndarray:
    """Projected gradient descent on Σ w·arccos(⟨m, x⟩)² with a finite-difference gradient (no fixed point)."""
    m = x[0] / np.linalg.norm(x[0])
    h = 1e-6
    for _ in range(steps):
        base = _geodesic_cost(m, x, w)
        grad = np.array([(_geodesic_cost(m + h * e, x, w) - base) / h for e in np.eye(len(m))])
        grad -= (grad @ m) * m  # tangent part
        m = m - lr * grad
        m /= np.linalg.norm(m)
    return m


@pytest.mark.parametrize("angles,w", [([0.1, 1.3], [0.5, 0.5]), ([0.0, 1.0, 2.5], [0.2, 0.5, 0.3]),
                                      ([-0.7, 0.2, 0.4, 1.1], [1.0, 3.0, 1.0, 2.0])])
def test_spherical_mean_on_the_circle_matches_a_grid_search(angles: list[float], w: list[float]) -> None:
    x = np.array([[math.cos(a), math.sin(a)] for a in angles])
    m = spherical_mean(x, w)
    got = math.atan2(float(m[1]), float(m[0]))
    wn = np.asarray(w) / sum(w)
    assert got == pytest.approx(_circle_grid_mean(angles, list(wn)), abs=1e-4)
    # on the circle the Fréchet mean is the weighted mean angle, not the angle of the weighted mean vector
    assert got == pytest.approx(float(wn @ np.asarray(angles)), abs=1e-5)


def test_spherical_mean_in_5d_matches_gradient_descent_and_beats_the_normalised_average() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5)) + np.array([3.0, 0, 0, 0, 0])  # spread, but within a hemisphere
    w = np.array([0.1, 0.2, 0.3, 0.4])
    m = spherical_mean(x, w).astype(np.float64)
    ref = _descent_mean(x, w)
    assert float(m @ ref) > 1 - 1e-6
    xs = x / np.linalg.norm(x, axis=1, keepdims=True)
    naive = w @ xs / np.linalg.norm(w @ xs)
    assert _geodesic_cost(m, x, w) < _geodesic_cost(naive, x, w) - 1e-6
    assert np.linalg.norm(m) == pytest.approx(1.0, abs=1e-6)


def test_two_references_land_on_the_slerp_point_of_the_second_weight() -> None:
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    m = spherical_mean(np.stack([a, b]), [0.75, 0.25])
    # a quarter of the way along the 90° arc from a to b: 22.5°
    assert np.allclose(m, [math.cos(math.pi / 8), math.sin(math.pi / 8), 0.0], atol=1e-6)


def test_combine_references_keeps_the_mean_norm() -> None:
    raw = np.array([[3.0, 0.0], [0.0, 5.0]])
    out = combine_references(raw, [1, 1])
    assert np.linalg.norm(out) == pytest.approx(4.0, rel=1e-6)  # (3 + 5) / 2, not |mean| = 2.9
    assert np.allclose(out / np.linalg.norm(out), [math.sqrt(0.5), math.sqrt(0.5)], atol=1e-6)


def _gram_schmidt(vectors: np.ndarray) -> list[np.ndarray]:
    basis: list[np.ndarray] = []
    for v in vectors:
        r = v.astype(np.float64).copy()
        for e in basis:
            r -= (r @ e) * e
        basis.append(r / np.linalg.norm(r))
    return basis


def test_negation_is_orthogonal_to_every_negative_and_matches_gram_schmidt() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=8)
    negs = rng.normal(size=(3, 8))
    negs[negs @ q < 0] *= -1  # all pointing the query's way
    out = negate(q, negs).astype(np.float64)
    assert np.allclose(negs @ out, 0.0, atol=1e-6)
    r = q / np.linalg.norm(q)
    for e in _gram_schmidt(negs / np.linalg.norm(negs, axis=1, keepdims=True)):
        r = r - (r @ e) * e
    assert np.allclose(out, r / np.linalg.norm(r), atol=1e-6)


def test_strength_two_is_the_householder_reflection_and_one_negative_reranks_as_documented() -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=6)
    q /= np.linalg.norm(q)
    n = rng.normal(size=6)
    n /= np.linalg.norm(n)
    if q @ n < 0:
        n = -n
    house = (np.eye(6) - 2 * np.outer(n, n)) @ q
    assert np.allclose(negate(q, n, strength=2.0), house, atol=1e-6)
    gallery = rng.normal(size=(50, 6))
    beta = 0.6
    want = np.argsort(-(gallery @ q - beta * (q @ n) * (gallery @ n)))
    got = np.argsort(-(gallery @ negate(q, n, strength=beta).astype(np.float64)))
    assert list(got) == list(want)


def test_a_negative_the_query_already_points_away_from_is_left_alone() -> None:
    q = np.array([1.0, 0.2, 0.0])
    away = np.array([-0.5, -1.0, 0.3])
    assert np.allclose(negate(q, away), q / np.linalg.norm(q), atol=1e-7)


def test_rocchio_matches_the_textbook_formula_with_one_item_each() -> None:
    rng = np.random.default_rng(2)
    q, like, unlike = (v / np.linalg.norm(v) for v in rng.normal(size=(3, 7)))
    want = 1.0 * q + 0.75 * like - 0.15 * unlike  # IIR §9.1.1 values, typed here from the book
    assert np.allclose(rocchio(q, like[None], unlike[None]), want / np.linalg.norm(want), atol=1e-6)
    assert ROCCHIO_DEFAULTS == {"a": 1.0, "b": 0.75, "c": 0.15}


def test_rocchio_with_two_liked_items_moves_towards_their_midpoint() -> None:
    q = np.array([1.0, 0.0, 0.0])
    likes = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    mid = np.array([0.0, 1.0, 1.0]) / math.sqrt(2)
    want = q + 0.5 * mid
    assert np.allclose(rocchio(q, likes, None, b=0.5), want / np.linalg.norm(want), atol=1e-6)
    assert np.allclose(rocchio(q, None, None), q)


@pytest.mark.parametrize("call,match", [
    (lambda: spherical_mean(np.eye(3), [1, 2]), "2 value"),
    (lambda: spherical_mean(np.eye(2), [-1, 2]), "non-negative"),
    (lambda: spherical_mean(np.eye(2), [0, 0]), "all be zero"),
    (lambda: spherical_mean(np.array([[1.0, 0.0], [-1.0, 0.0]])), "cancel"),
    (lambda: spherical_mean(np.zeros((0, 3))), "non-empty"),
    (lambda: negate(np.ones(3), np.ones(3), strength=3), r"\[0, 2\]"),
    (lambda: negate(np.ones(3), np.ones(3)), "leaves nothing"),
    (lambda: rocchio(np.ones(3), c=-1), "non-negative"),
])
def test_bad_input_is_refused_with_a_clear_error(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match):
        call()
