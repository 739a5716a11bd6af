"""What clients may ask for: named filter templates, filterable / groupable metadata fields, and value checks.

Clients never send filter text. The operator configures

- ``filters``: named Milvus filter templates, e.g. ``{"cheaper_than": 'metadata["price"] < {max_price}'}``; a client
  picks one by name and sends only the values (``filter_params``);
- ``fields``: metadata fields a client may filter on by equality (``where={"colour": "red"}``, or a list of values
  for ``in``) and group hits by (``group_by="colour"``).

Values are rendered as typed literals by :func:`cir_milvus.storage.filters.render_filter` (strings quoted and escaped,
numbers, booleans, lists of those), so no client text is ever pasted into an expression.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cir_milvus.errors import ConfigError
from cir_milvus.storage.filters import placeholders, render_filter

__all__ = ["FilterPolicy"]

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCALAR = (str, int, float, bool)
MAX_LIST = 64
MAX_VALUE_CHARS = 256


def _check_value(name: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not 1 <= len(value) <= MAX_LIST:
        raise ConfigError(f"filter value {name!r}: a list needs 1 to {MAX_LIST} values, got {len(value)}")
    for v in values:
        if not isinstance(v, _SCALAR) or v is None:
            raise ConfigError(f"filter value {name!r} must be a string, number, boolean or a list of those; got "
                              f"{type(v).__name__}")
        if isinstance(v, str) and len(v) > MAX_VALUE_CHARS:
            raise ConfigError(f"filter value {name!r} is longer than {MAX_VALUE_CHARS} characters")


@dataclass(frozen=True)
class FilterPolicy:
    """The operator's filter configuration.

    Args:
        templates: template name → Milvus filter template with ``{placeholders}``.
        fields: metadata keys clients may filter on (equality / ``in``) and group by.

    Raises:
        ConfigError: a bad template name or field name.

    Example:
        >>> p = FilterPolicy(templates={"cheap": 'metadata["price"] < {max}'}, fields=("colour",))
        >>> expr, values = p.render("cheap", {"max": 5}, {"colour": 'red" or 1==1'})
        >>> expr
        '(metadata["price"] < {max}) and (metadata["colour"] == {where_0_0})'
        >>> render_filter(expr, values)
        '(metadata["price"] < 5) and (metadata["colour"] == "red\\\\" or 1==1")'
    """

    templates: Mapping[str, str] = field(default_factory=dict)
    fields: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in (*self.templates, *self.fields):
            if not _FIELD.match(name):
                raise ConfigError(f"filter name {name!r} must be a letter or _ followed by letters, digits or _ "
                                  "(at most 64 characters)")
        object.__setattr__(self, "templates", dict(self.templates))
        object.__setattr__(self, "fields", tuple(dict.fromkeys(self.fields)))

    def describe(self) -> dict[str, Any]:
        """What ``/info`` tells clients: template names with their parameters, and the fields."""
        return {"templates": {n: sorted(set(placeholders(t))) for n, t in self.templates.items()},
                "fields": list(self.fields)}

    def check_field(self, name: str, purpose: str) -> str:
        if name not in self.fields:
            allowed = ", ".join(self.fields) or "none (the operator configured no fields: --filter-field NAME)"
            raise ConfigError(f"{purpose} field {name!r} is not allowed; allowed: {allowed}")
        return name

    def render(self, template: str | None, params: Mapping[str, Any] | None,
               where: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """The filter template and its values for a request (``("", {})`` for none).

        Pass both to ``search_vectors(filter=..., filter_params=...)``: the values are rendered once, as literals.

        Raises:
            ConfigError: an unknown template or field, missing/unused/bad values.
        """
        parts: list[str] = []
        values: dict[str, Any] = {}
        if template:
            if template not in self.templates:
                known = ", ".join(sorted(self.templates)) or "none (the operator configured no filter templates)"
                raise ConfigError(f"unknown filter {template!r}; the server offers: {known}. Clients send a "
                                  "template name and its values, never filter text")
            for k, v in (params or {}).items():
                _check_value(str(k), v)
            render_filter(self.templates[template], params)  # missing / unused / mistyped values fail here
            parts.append(self.templates[template])
            values.update(params or {})
        elif params:
            raise ConfigError("filter_params given without a filter name")
        for i, (name, value) in enumerate((where or {}).items()):
            self.check_field(name, "filter")
            _check_value(name, value)
            alternatives = []
            for j, v in enumerate(value if isinstance(value, list) else [value]):
                slot = f"where_{i}_{j}"
                while slot in values:
                    slot = "_" + slot
                # the key was checked against the operator's list; the value becomes a typed literal. A list is a
                # chain of == (Milvus Lite has no `in` on JSON keys)
                alternatives.append(f'metadata["{name}"] == {{{slot}}}')
                values[slot] = v
            parts.append(" or ".join(alternatives))
        if len(parts) <= 1:
            return (parts[0] if parts else ""), values
        return " and ".join(f"({p})" for p in parts), values
