"""Metadata filters as Milvus filter templates: the expression comes from the developer, values from users.

``filter='metadata["brand"] == {brand} and metadata["price"] < {max_price}'`` with
``filter_params={"brand": user_input, "max_price": 50}``. The values are rendered client-side as typed literals
(strings quoted and escaped, numbers, booleans, lists of those) — never by pasting raw user text into the expression.

A value is always a literal, ``like`` included:

- ``metadata["brand"] like {b}`` matches the value exactly: its ``%`` and ``_`` match themselves (the test is
  rendered as ``==``, which every backend reads the same way);
- prefix, suffix and substring matching are asked for by marking the placeholder: ``like {b:prefix}``,
  ``like {b:suffix}``, ``like {b:contains}``. The value is then a literal prefix (suffix, substring); a value
  containing ``%``, ``_`` or ``\`` is refused with :class:`~cir_milvus.errors.FilterError`, because Milvus Lite's
  JSON filters and the Milvus 2.3 server have no escape for them (the Milvus 2.3 server matches prefixes only);
- a placeholder written inside quotes (``== "{b}"``) is refused: write it bare, the value is quoted for you.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from cir_milvus.errors import FilterError

__all__ = ["LIKE_MODES", "in_filter", "placeholders", "render_filter", "string_literal"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")
_LIKE_PLACEHOLDER = re.compile(r"\blike\s+\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}", re.IGNORECASE)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', re.DOTALL)
LIKE_MODES = {"prefix": "{}%", "suffix": "%{}", "contains": "%{}%"}
"""The markers of a ``like`` placeholder (``{p:prefix}``) and the pattern each makes of the literal value."""
_LIKE_WILDCARDS = ("%", "_", "\\")
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
            raise FilterError(f"filter_params[{name!r}] must be a finite number, got {value!r}")
        return repr(float(value))  # plain float repr: numpy's float64 repr is "np.float64(...)"
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(name, v) for v in value) + "]"
    raise FilterError(
        f"filter_params[{name!r}] has unsupported type {type(value).__name__}; use str, int, float, bool or a list"
    )


def placeholders(expr: str) -> list[str]:
    """The names of the ``{name}`` / ``{name:mode}`` placeholders of a filter template, in order."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(expr)]


def _check_unquoted(expr: str) -> None:
    """Refuse a placeholder written inside a string literal (``"{b}"``): its value would be pasted unescaped."""
    for lit in _STRING.finditer(expr):
        inner = _PLACEHOLDER.search(lit.group(0))
        if inner is not None:
            raise FilterError(
                f"filter placeholder {{{inner.group(1)}}} is written inside quotes ({lit.group(0)}) in {expr!r}; "
                f"write it bare, e.g. metadata[\"key\"] == {{{inner.group(1)}}}: values are quoted for you")


def _like_literal(name: str, mode: str | None, value: Any) -> str:
    """The right-hand side of ``like {name[:mode]}``: ``== "value"`` for a plain placeholder (the value matches
    itself), a ``like`` pattern built from the literal value for a marked one."""
    if not isinstance(value, str):
        raise FilterError(f"filter_params[{name!r}] is used with 'like' and must be a string, got "
                          f"{type(value).__name__}")
    if mode is None:
        return string_literal(value)
    bad = [c for c in _LIKE_WILDCARDS if c in value]
    if bad:
        raise FilterError(
            f"filter_params[{name!r}] = {value!r} contains {' '.join(map(repr, bad))}, which Milvus 'like' cannot "
            f"match literally on every backend; a {mode} match needs a value without % _ or \\ (use == {{{name}}} "
            "for an exact match)")
    return string_literal(LIKE_MODES[mode].format(value))


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(
    rf"(?P<jpath>{_NAME}(?:\[[^\]]+\])+)\s+(?P<op>not\s+in|in)\s+\{{(?P<jname>{_NAME})\}}"  # <json path> in {p}
    rf"|(?P<like>\blike\s+)\{{(?P<lname>{_NAME})(?::(?P<lmode>[A-Za-z_]+))?\}}"  # like {p} / like {p:prefix}
    rf"|\{{(?P<name>{_NAME})(?::(?P<mode>[A-Za-z_]+))?\}}",  # any other placeholder
    re.IGNORECASE)


def _json_in(path: str, op: str, name: str, values: Any) -> str:
    """``metadata["c"] in {cs}`` → ``(metadata["c"] == "a" or metadata["c"] == "b")``: Milvus Lite's parser takes
    ``in`` only after a plain field, not after a JSON path."""
    if not isinstance(values, (list, tuple)):
        return f"{path} {op} {_literal(name, values)}"
    negate = op.lower() != "in"
    if not values:
        return "true" if negate else "false"
    parts = [f"{path} {'!=' if negate else '=='} {_literal(name, v)}" for v in values]
    return "(" + (" and " if negate else " or ").join(parts) + ")"


def render_filter(expr: str, params: Mapping[str, Any] | None, *, json_in: bool = True) -> str:
    """Substitute ``{name}`` placeholders with safely rendered literals.

    Args:
        expr: the filter template.
        params: values for its placeholders.
        json_in: the backend parses ``<json path> in [...]``; when ``False`` (Milvus Lite) such a test with a
            placeholder list is written as ``==`` comparisons joined by ``or``.

    Raises:
        FilterError: a placeholder has no value or sits inside quotes, a value is unused or has an unsupported
            type, a ``{name:mode}`` marker is unknown or used outside ``like``.

    Example:
        >>> render_filter('metadata["brand"] == {b}', {"b": 'x" or 1==1'})
        'metadata["brand"] == "x\\\\" or 1==1"'
    """
    params = dict(params or {})
    _check_unquoted(expr)
    names = placeholders(expr)
    missing = sorted(set(names) - set(params))
    if missing:
        raise FilterError(f"filter uses {missing} but filter_params has no value for them")
    unused = sorted(set(params) - set(names))
    if unused:
        raise FilterError(f"filter_params {unused} are not used in the filter {expr!r}; write them as {{name}}")
    for m in _PLACEHOLDER.finditer(expr):
        if m.group(2) is not None and m.group(2) not in LIKE_MODES:
            raise FilterError(f"unknown filter placeholder marker {{{m.group(1)}:{m.group(2)}}}; use one of "
                              f"{', '.join(f'{{{m.group(1)}:{k}}}' for k in LIKE_MODES)} after 'like'")

    def sub(m: re.Match[str]) -> str:  # one pass: a rendered value is never scanned again
        if m.group("jpath") is not None:
            name = m.group("jname")
            if json_in:
                return f"{m.group('jpath')} {m.group('op')} {_literal(name, params[name])}"
            return _json_in(m.group("jpath"), m.group("op"), name, params[name])
        if m.group("like") is not None:
            name, mode = m.group("lname"), m.group("lmode")
            if mode is None:
                return "== " + _like_literal(name, None, params[name])
            return "like " + _like_literal(name, mode, params[name])
        if m.group("mode") is not None:
            raise FilterError(f"{m.group(0)} is a 'like' marker; write it right after 'like' "
                              f"(field like {m.group(0)})")
        return _literal(m.group("name"), params[m.group("name")])

    return _TOKEN.sub(sub, expr)
