"""Client-side rendering of filter templates: typed literals, escaping, and parameter checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cir_milvus.errors import ConfigError
from cir_milvus.storage.filters import placeholders, render_filter

EXPR = 'metadata["brand"] == {brand}'


def _string_literal_at(rendered: str, prefix: str) -> tuple[str, str]:
    """Parse the double-quoted literal that starts right after ``prefix``; return (its value, the text after it).

    A tiny independent scanner of Milvus-style string literals (``\\"`` and ``\\\\`` escapes).
    """
    assert rendered.startswith(prefix)
    rest = rendered[len(prefix) :]
    assert rest[0] == '"'
    out, i = [], 1
    while True:
        ch = rest[i]
        if ch == "\\":
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(rest[i + 1], rest[i + 1]))
            i += 2
        elif ch == '"':
            return "".join(out), rest[i + 1 :]
        else:
            out.append(ch)
            i += 1


@pytest.mark.parametrize(
    "attack",
    [
        'x" or 1==1 or metadata["brand"] == "y',
        'x\\" or true or "',
        "x\\",
        '\\\\" or ""=="',
        "ünï\"cödé'\n",
    ],
)
def test_injection_stays_inside_the_string_literal(attack: str) -> None:
    rendered = render_filter(EXPR, {"brand": attack})
    value, tail = _string_literal_at(rendered, 'metadata["brand"] == ')
    assert value == attack  # the literal decodes back to exactly the user's text
    assert tail == ""  # nothing leaked out after the literal


def test_strings_are_double_quoted_with_escapes() -> None:
    assert render_filter(EXPR, {"brand": "acme"}) == 'metadata["brand"] == "acme"'
    assert render_filter(EXPR, {"brand": 'a"b'}) == 'metadata["brand"] == "a\\"b"'
    assert render_filter(EXPR, {"brand": "a\\b"}) == 'metadata["brand"] == "a\\\\b"'


def test_numbers_bools_and_lists_render() -> None:
    expr = "price < {p} and stock >= {n} and active == {flag} and tag in {tags} and size in {sizes}"
    out = render_filter(expr, {"p": 49.5, "n": 3, "flag": True, "tags": ["a", 'b"c'], "sizes": (1, 2.5)})
    assert out == 'price < 49.5 and stock >= 3 and active == true and tag in ["a", "b\\"c"] and size in [1, 2.5]'
    assert render_filter("x == {v}", {"v": False}) == "x == false"
    assert render_filter("x == {v}", {"v": -7}) == "x == -7"
    assert render_filter("x in {v}", {"v": []}) == "x in []"

def test_numpy_scalars_render_as_plain_literals() -> None:
    assert render_filter("x == {v}", {"v": np.float64(0.25)}) == "x == 0.25"
    assert render_filter("x == {v}", {"v": np.float32(0.5)}) == "x == 0.5"
    assert render_filter("x == {v}", {"v": np.int64(7)}) == "x == 7"
    assert render_filter("x in {v}", {"v": [np.int32(1), np.float64(2.5)]}) == "x in [1, 2.5]"
    with pytest.raises(ConfigError, match="finite"):
        render_filter("x == {v}", {"v": np.float32("nan")})


def test_floats_keep_full_precision() -> None:
    value = 0.1 + 0.2
    out = render_filter("x < {v}", {"v": value})
    assert float(out.split("< ")[1]) == value


def test_every_occurrence_is_substituted_once_and_values_are_not_re_expanded() -> None:
    out = render_filter("a == {v} or b == {v} or c == {w}", {"v": "{w}", "w": 1})
    assert out == 'a == "{w}" or b == "{w}" or c == 1'


def test_no_placeholders_no_params() -> None:
    assert render_filter("price > 3", None) == "price > 3"
    assert render_filter("price > 3", {}) == "price > 3"
    assert placeholders('metadata["a"] == {x} and {y_2} {not valid}') == ["x", "y_2"]


def test_missing_param() -> None:
    with pytest.raises(ConfigError) as info:
        render_filter("a == {x} and b == {y}", {"x": 1})
    assert "y" in str(info.value) and "no value" in str(info.value)


def test_unused_param() -> None:
    with pytest.raises(ConfigError) as info:
        render_filter("a == {x}", {"x": 1, "extra": 2})
    assert "extra" in str(info.value) and "not used" in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), [1.0, float("nan")]])
def test_non_finite_numbers_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="finite"):
        render_filter("x < {v}", {"v": bad})


@pytest.mark.parametrize("bad", [None, {"a": 1}, b"bytes", object(), {1, 2}])
def test_unsupported_types_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="unsupported type"):
        render_filter("x == {v}", {"v": bad})


def test_module_doctest_runs() -> None:
    import doctest

    import cir_milvus.storage.filters as filters

    result = doctest.testmod(filters)
    assert result.attempted >= 1 and result.failed == 0


def test_rendered_string_literal_is_valid_json_string() -> None:
    # the literal format is JSON's, so a JSON parser reads the value back too (an independent decoder)
    text = 'tab\there "q" back\\slash'
    out = render_filter("{v}", {"v": text})
    assert json.loads(out) == text
