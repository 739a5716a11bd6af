"""Vector operations on the unit sphere: weighted spherical mean, negation, Rocchio feedback, several references.

Every rule here, with its source, is written out in ``docs/queries.md``. Inputs are rows of L2-normalised vectors
(rows that are not are normalised first); outputs are unit float32 vectors.

Example:
    >>> import numpy as np
    >>> from cir_milvus.query import spherical_mean, negate
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> [round(float(v), 4) for v in spherical_mean(x)]
    [0.7071, 0.7071]
    >>> [round(float(v), 4) for v in negate(np.array([0.6, 0.8]), np.array([[0.0, 1.0]]))]
    [1.0, 0.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.query.checks import check_weights
from cir_milvus.types import Embeddings

__all__ = [
    "ROCCHIO_DEFAULTS",
    "combine_references",
    "negate",
    "rocchio",
    "spherical_mean",
    "unit_rows",
]

ROCCHIO_DEFAULTS: dict[str, float] = {"a": 1.0, "b": 0.75, "c": 0.15}
"""Rocchio weights of the query, the liked and the unliked vectors: the values Manning, Raghavan & Schütze give as
reasonable (Introduction to Information Retrieval, 2008, §9.1.1)."""

_EPS = 1e-9


def unit_rows(x: Any, name: str = "vectors") -> np.ndarray:
    """``x`` as float64 ``[N, D]`` with unit rows (a ``[D]`` vector becomes one row).

    Raises:
        ConfigError: no rows, or a zero (or non-finite) row.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"{name} must be a non-empty [N, D] array of vectors, got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms < _EPS):
        raise ConfigError(f"{name} contain a zero or non-finite vector; it has no direction on the sphere")
    out: np.ndarray = a / norms
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    out: np.ndarray = v / n
    return out


def spherical_mean(vectors: Any, weights: Any = None, *, max_iter: int = 100, tol: float = 1e-12) -> Embeddings:
    """Weighted Fréchet (Karcher) mean on the sphere: the unit ``m`` minimising ``Σ wᵢ · arccos(⟨m, xᵢ⟩)²``.

    Fixed-point iteration of Buss & Fillmore (ACM TOG 2001, "Spherical averages", algorithm A1), started at the
    normalised weighted mean ``normalise(Σ wᵢ xᵢ)``: map every point to the tangent space at ``m`` (logarithm map),
    average there with the weights, map back (exponential map), until the step is below ``tol`` radians. For two
    points it lands on the great-circle point a fraction ``w₂`` of the way from ``x₁`` to ``x₂`` (slerp); for equal
    weights that is the normalised average.

    Args:
        vectors: ``[R, D]`` (normalised here).
        weights: ``R`` non-negative weights (``None``: equal), normalised to sum 1.
        max_iter: iteration cap (the iteration converges linearly; 10-20 steps are typical).
        tol: stop when the tangent step is shorter than this (radians).

    Returns:
        float32 ``[D]``, unit norm.

    Raises:
        ConfigError: weights that do not match the vectors, or points whose weighted average is the zero vector
            (antipodal points: the mean is not unique).
    """
    x = unit_rows(vectors, "references")
    w = check_weights(weights, len(x))
    start = w @ x
    if np.linalg.norm(start) < 1e-6:
        raise ConfigError("the weighted vectors cancel out (e.g. two opposite directions): their spherical mean is "
                          "not defined; change the weights or drop one of them")
    m = _unit(start)
    for _ in range(max_iter):
        cos = np.clip(x @ m, -1.0, 1.0)  # [R]
        theta = np.arccos(cos)
        sin = np.sin(theta)
        scale = np.where(sin > 1e-12, theta / np.where(sin > 1e-12, sin, 1.0), 1.0)  # θ/sinθ → 1 as θ → 0
        tangent = (w * scale) @ (x - cos[:, None] * m[None, :])  # [D] weighted mean of log_m(xᵢ)
        step = float(np.linalg.norm(tangent))
        if step < tol:
            break
        m = _unit(np.cos(step) * m + np.sin(step) * tangent / step)
    return m.astype(np.float32)


def combine_references(raw: Any, weights: Any = None) -> Embeddings:
    """Several RAW reference embeddings → one raw embedding that composers take as the reference.

    The direction is the weighted spherical mean of the normalised references (:func:`spherical_mean`); the length
    is the weighted mean of their norms, so pseudo-token heads (which read raw embeddings) see a typical norm rather
    than the shrunken length of a plain average.

    Args:
        raw: ``[R, D]`` raw reference embeddings.
        weights: ``R`` non-negative weights (``None``: equal).

    Returns:
        float32 ``[D]``.
    """
    a = np.asarray(raw, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ConfigError(f"references must be a non-empty [R, D] array, got shape {a.shape}")
    w = check_weights(weights, len(a))
    norm = float(w @ np.linalg.norm(a, axis=1))
    return (spherical_mean(a, w) * norm).astype(np.float32)


def negate(query: Any, negatives: Any, strength: float = 1.0) -> Embeddings:
    """Move a query away from negative directions: ``normalise(q - β · P q)``.

    ``P`` projects onto the span of the negatives that point the query's way (positive cosine). ``β = 1`` is
    Widdows' orthogonal negation (ACL 2003, "Orthogonal negation in vector spaces"): the result is orthogonal to
    every such negative, so ``a NOT b`` keeps what ``a`` has that ``b`` lacks; several negatives are removed
    together (the orthogonal complement of their span, Widdows & Peters 2003). ``β = 2`` reflects the query
    through that complement (a Householder reflection for one negative); values in between scale the penalty.
    Ranking by the result's cosine with one negative ``n`` equals ranking by ``⟨q, g⟩ - β⟨q, n⟩⟨n, g⟩``: items
    close to the negative lose score in proportion.

    Args:
        query: ``[D]`` query vector.
        negatives: ``[M, D]`` (or ``[D]``) negative vectors, e.g. encoded negative texts.
        strength: ``β`` in [0, 2].

    Returns:
        float32 ``[D]``, unit norm.

    Raises:
        ConfigError: ``strength`` outside [0, 2], or a negative parallel to the query (nothing would be left).
    """
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 2.0:
        raise ConfigError(f"negative strength must be a number in [0, 2] (1 = orthogonal negation), got {strength!r}")
    q = unit_rows(query, "query")[0]
    n = unit_rows(negatives, "negatives")
    active = n[n @ q > _EPS]  # [M', D]: negatives the query leans towards
    if len(active) == 0 or strength == 0.0:
        return q.astype(np.float32)
    basis, _ = np.linalg.qr(active.T)  # [D, M'] orthonormal basis of the negatives' span
    projected = basis @ (basis.T @ q)
    out = q - strength * projected
    if np.linalg.norm(out) < 1e-6:
        raise ConfigError("the negative text points the same way as the whole query: negating it leaves nothing; "
                          "use a more specific negative or a smaller strength")
    return _unit(out).astype(np.float32)


def rocchio(query: Any, like: Any = None, unlike: Any = None, *, a: float = ROCCHIO_DEFAULTS["a"],
            b: float = ROCCHIO_DEFAULTS["b"], c: float = ROCCHIO_DEFAULTS["c"]) -> Embeddings:
    """Rocchio relevance feedback on the sphere: ``normalise(a·q + b·mean(like) - c·mean(unlike))``.

    Rocchio (1971, "Relevance feedback in information retrieval", the SMART system); the defaults ``a=1, b=0.75,
    c=0.15`` are Manning, Raghavan & Schütze's (IIR 2008, §9.1.1). On the sphere each mean is the spherical mean
    (:func:`spherical_mean`) of the unit vectors, so it is itself a unit direction and ``b``/``c`` weigh directions
    against the unit query whatever the number of marked items.

    Args:
        query: ``[D]`` query vector.
        like: ``[L, D]`` vectors to move towards (``None`` or empty: none).
        unlike: ``[U, D]`` vectors to move away from (``None`` or empty: none).
        a, b, c: non-negative weights.

    Returns:
        float32 ``[D]``, unit norm.
    """
    for name, value in (("a", a), ("b", b), ("c", c)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"Rocchio weight {name} must be a non-negative number, got {value!r}")
    out = a * unit_rows(query, "query")[0]
    if like is not None and np.asarray(like).size:
        out = out + b * spherical_mean(like).astype(np.float64)
    if unlike is not None and np.asarray(unlike).size:
        out = out - c * spherical_mean(unlike).astype(np.float64)
    if np.linalg.norm(out) < 1e-6:
        raise ConfigError("the feedback cancels the query out; lower the unlike weight c or raise a")
    return _unit(out).astype(np.float32)
