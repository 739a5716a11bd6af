"""Metadata filters as Milvus filter templates: the expression comes from the developer, values from users.

``filter='metadata["brand"] == {brand} and metadata["price"] < {max_price}'`` with
``filter_params={"brand": user_input, "max_price": 50}``. Servers that parse templates (Milvus ≥ 2.5) receive
them as they are; for Milvus Lite and older servers the values are rendered client-side as typed literals (strings
quoted and escaped, numbers, booleans, lists of those) — never by pasting raw user text into the expression.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from cir_milvus.errors import ConfigError

__all__ = ["in_filter", "render_filter", "string_literal"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TO_ESCAPE = re.compile('[\\\\"\n\r\t]')


def string_literal(value: str) -> str:
    """A Milvus string literal for ``value`` that every backend reads back as exactly ``value``.

    Only the escapes both parsers know are used (``\\\\ \\" \\n \\r \\t``): Milvus Lite refuses ``\\u``
    and ``\\x``, so other characters (NUL and control characters included) are written as they are.

    Example:
        >>> print(string_literal("x'] or id not in ['"))
        "x'] or id not in ['"
    """
    return '"' + _TO_ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], value) + '"'


def in_filter(field: str, values: list[Any]) -> str:
    """``field in [...]`` with every value rendered as a literal (ids are data, never code)."""
    return f"{field} in [" + ", ".join(_literal(field, v) for v in values) + "]"


def _literal(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):  # int, numpy integers
        return str(int(value))
    if isinstance(value, numbers.Real):  # float, numpy floats
        if not math.isfinite(value):
            raise ConfigError(f"filter_params[{name!r}] must be a finite number, got {value!r}")
        return repr(float(value))  # plain float repr: numpy's float64 repr is "np.float64(...)"
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(name, v) for v in value) + "]"
    raise ConfigError(
        f"filter_params[{name!r}] has unsupported type {type(value).__name__}; use str, int, float, bool or a list"
    )


def placeholders(expr: str) -> list[str]:
    return _PLACEHOLDER.findall(expr)


_JSON_IN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]+\])+)\s+(not\s+in|in)\s+\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _json_in_as_comparisons(expr: str, params: Mapping[str, Any]) -> str:
    """``metadata["c"] in {cs}`` → ``(metadata["c"] == "a" or metadata["c"] == "b")``: Milvus Lite's parser takes
    ``in`` only after a plain field, not after a JSON path."""

    def sub(m: re.Match[str]) -> str:
        path, op, name = m.group(1), m.group(2), m.group(3)
        values = params[name]
        if not isinstance(values, (list, tuple)):
            return m.group(0)
        negate = op != "in"
        if not values:
            return "true" if negate else "false"
        parts = [f"{path} {'!=' if negate else '=='} {_literal(name, v)}" for v in values]
        return "(" + (" and " if negate else " or ").join(parts) + ")"

    return _JSON_IN.sub(sub, expr)


def render_filter(expr: str, params: Mapping[str, Any] | None, *, json_in: bool = True) -> str:
    """Substitute ``{name}`` placeholders with safely rendered literals.

    Args:
        expr: the filter template.
        params: values for its placeholders.
        json_in: the backend parses ``<json path> in [...]``; when ``False`` (Milvus Lite) such a test with a
            placeholder list is written as ``==`` comparisons joined by ``or``.

    Raises:
        ConfigError: a placeholder has no value, a value is unused, or a value has an unsupported type.

    Example:
        >>> render_filter('metadata["brand"] == {b}', {"b": 'x" or 1==1'})
        'metadata["brand"] == "x\\\\" or 1==1"'
    """
    params = dict(params or {})
    names = placeholders(expr)
    missing = sorted(set(names) - set(params))
    if missing:
        raise ConfigError(f"filter uses {missing} but filter_params has no value for them")
    unused = sorted(set(params) - set(names))
    if unused:
        raise ConfigError(f"filter_params {unused} are not used in the filter {expr!r}; write them as {{name}}")
    if not json_in:
        expr = _json_in_as_comparisons(expr, params)
    return _PLACEHOLDER.sub(lambda m: _literal(m.group(1), params[m.group(1)]), expr)
