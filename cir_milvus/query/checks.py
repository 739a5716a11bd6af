"""Argument checks shared by the query features; each raises :class:`~cir_milvus.errors.ConfigError` saying what to pass."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cir_milvus.errors import ConfigError

__all__ = ["check_alphas", "check_threshold", "check_weights", "non_empty"]


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def non_empty(name: str, values: Any) -> list[Any]:
    """``values`` as a list; a lone string becomes a one-element list.

    Raises:
        ConfigError: ``values`` is empty (an empty list means "no such term": leave the argument out instead).
    """
    if isinstance(values, (str, bytes)):
        return [values]
    try:
        out = list(values)
    except TypeError:
        raise ConfigError(f"{name}= must be a list, got {type(values).__name__}") from None
    if not out:
        raise ConfigError(f"{name}= got an empty list; give at least one item or leave {name}= out")
    return out


def check_alphas(alphas: Any) -> list[float]:
    """A list of interpolation weights, each a number in [0, 1] (duplicates removed, order kept).

    Raises:
        ConfigError: an empty list, a value that is not a number, or one outside [0, 1].
    """
    values = non_empty("alpha", alphas)
    for a in values:
        if not _number(a) or not math.isfinite(float(a)) or not 0.0 <= float(a) <= 1.0:
            raise ConfigError(f"every alpha must be a number in [0, 1] (it weights the text), got {a!r} in {values!r}")
    return list(dict.fromkeys(float(a) for a in values))


def check_threshold(threshold: Any, name: str = "dedupe") -> float:
    """A cosine threshold in (0, 1].

    Raises:
        ConfigError: not a number, or outside (0, 1] (``1.0`` drops only exact duplicates; ``0.98`` near-duplicates).
    """
    if not _number(threshold) or not math.isfinite(float(threshold)) or not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"{name}= must be a cosine threshold in (0, 1] such as 0.98 (hits at least that similar to a "
                          f"better hit are dropped), got {threshold!r}")
    return float(threshold)


def check_weights(weights: Any, n: int, what: str = "references") -> np.ndarray:
    """Non-negative weights, one per item, with a positive sum; ``None`` gives equal weights.

    Returns:
        float64 ``[n]`` summing to 1.

    Raises:
        ConfigError: a count that differs from ``n``, a negative or non-finite weight, or weights summing to 0.
    """
    if weights is None:
        return np.full(n, 1.0 / n)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, np.ndarray)):
        raise ConfigError(f"weights= must be a list of numbers, one per {what[:-1]}, got {weights!r}")
    values = list(weights)
    if len(values) != n:
        raise ConfigError(f"weights= has {len(values)} value(s) but there are {n} {what}; give one weight each")
    if not all(_number(w) and math.isfinite(float(w)) and float(w) >= 0 for w in values):
        raise ConfigError(f"weights= must be non-negative numbers, got {values!r}")
    w = np.asarray(values, dtype=np.float64)
    if w.sum() <= 0:
        raise ConfigError(f"weights= must not all be zero, got {values!r}")
    out: np.ndarray = w / w.sum()
    return out
