"""Metadata filters as Milvus filter templates: the expression comes from the developer, values from users.

``filter='metadata["brand"] == {brand} and metadata["price"] < {max_price}'`` with
``filter_params={"brand": user_input, "max_price": 50}``. Servers that parse templates (Milvus ≥ 2.5) receive
them as they are; for Milvus Lite and older servers the values are rendered client-side as typed literals (strings
quoted and escaped, numbers, booleans, lists of those) — never by pasting raw user text into the expression.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from cir_milvus.errors import ConfigError

__all__ = ["render_filter"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
        return json.dumps(value, ensure_ascii=False)  # double quotes; \" and \\ escaped
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(name, v) for v in value) + "]"
    raise ConfigError(
        f"filter_params[{name!r}] has unsupported type {type(value).__name__}; use str, int, float, bool or a list"
    )


def placeholders(expr: str) -> list[str]:
    return _PLACEHOLDER.findall(expr)


def render_filter(expr: str, params: Mapping[str, Any] | None) -> str:
    """Substitute ``{name}`` placeholders with safely rendered literals.

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
    return _PLACEHOLDER.sub(lambda m: _literal(m.group(1), params[m.group(1)]), expr)
