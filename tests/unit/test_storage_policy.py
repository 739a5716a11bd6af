"""The store's policies without Milvus: error classification, the retry policy, ids by bytes, JSON-safe metadata,
filter literals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cir_milvus.errors import CollectionNotFoundError, ConfigError, StorageError
from cir_milvus.storage.filters import in_filter, render_filter, string_literal
from cir_milvus.storage.policy import MetadataError, check_id, jsonable, safe_text, source_text
from cir_milvus.storage.retry import RetryPolicy, is_permanent


def _wrapped(cause: BaseException) -> StorageError:
    try:
        raise StorageError(f"Milvus failed to upsert: {cause}") from cause
    except StorageError as e:
        return e


def test_errors_are_classified_once() -> None:
    from pymilvus.exceptions import MilvusException, ParamError

    assert is_permanent(_wrapped(ParamError(message="bad")))
    assert is_permanent(_wrapped(MilvusException(message="the length (600) of 0th string exceeds max length (512)")))
    assert is_permanent(_wrapped(MilvusException(message="cannot parse expression: id in [")))
    assert is_permanent(_wrapped(MilvusException(message="x", is_input_error=True)))
    assert is_permanent(CollectionNotFoundError("no collection"))
    assert not is_permanent(_wrapped(MilvusException(message="Fail connecting to server on 127.0.0.1:1")))
    assert not is_permanent(_wrapped(MilvusException(code=101, message="collection not loaded")))
    assert not is_permanent(StorageError("server unavailable"))


def test_a_looping_exception_chain_is_walked_once() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert is_permanent(_wrapped(a)) is False  # returns, does not spin


def test_retry_policy_retries_transient_and_raises_permanent_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("cir_milvus.storage.retry.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr("cir_milvus.storage.retry.time.monotonic", lambda: clock[0])
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise StorageError("connection refused")
        return "ok"

    retried: list[int] = []
    assert RetryPolicy(timeout=60).call(flaky, "x", on_retry=lambda: retried.append(1)) == "ok"
    assert len(calls) == 4 and len(retried) == 3 and clock[0] == pytest.approx(0.5 + 1 + 2)

    def bad() -> None:
        calls.append(2)
        raise _wrapped(ValueError("exceeds max length"))

    with pytest.raises(StorageError):
        RetryPolicy(timeout=60).call(bad, "x")
    assert calls.count(2) == 1


def test_ids_are_checked_in_utf8_bytes() -> None:
    assert check_id("a" * 512) is None
    assert "513 bytes" in (check_id("a" * 511 + "é") or "")
    assert check_id("é" * 256) is None and check_id("é" * 257) is not None
    assert check_id("") is not None and check_id(5) is not None and check_id("x\udc80") is not None
    assert check_id(5, id_type="int64") is None and check_id(True, id_type="int64") is not None
    assert check_id("5", id_type="int64") is not None and check_id(2**63, id_type="int64") is not None


def test_metadata_is_made_json_safe_and_cycles_are_reported() -> None:
    md = {"nan": math.nan, "i": np.int64(3), "f": np.float32(0.5), "arr": np.arange(2), "s": "a\udc80b",
          1: (1, 2), "nested": {"inf": -math.inf}, "obj": object}
    out = jsonable(md)
    assert out["nan"] is None and out["i"] == 3 and out["f"] == 0.5 and out["arr"] == [0, 1]
    assert out["s"] == "a\\x80b" and out["1"] == [1, 2] and out["nested"] == {"inf": None}
    assert isinstance(out["obj"], str)
    cyc: list[object] = []
    cyc.append(cyc)
    with pytest.raises(MetadataError, match="cycle"):
        jsonable({"c": cyc})
    shared = [1]
    assert jsonable({"a": shared, "b": shared}) == {"a": [1], "b": [1]}  # shared, not cyclic
    with pytest.raises(MetadataError, match="larger"):
        jsonable({"big": "x" * 70_000})


def test_sources_are_valid_utf8_and_cut_by_bytes() -> None:
    assert safe_text("caf\udce9.jpg") == "caf\\xe9.jpg"  # a latin-1 file name, losslessly escaped
    cut = source_text("é" * 2000, 2048)
    assert len(cut.encode()) <= 2048 and cut == "é" * 1024


def test_filter_literals_keep_values_as_data() -> None:
    assert string_literal('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert string_literal("nul\x00") == '"nul\x00"'  # raw: Milvus Lite refuses \\u escapes
    assert in_filter("id", ["x'] or id not in ['", 7]) == '''id in ["x'] or id not in ['", 7]'''
    assert render_filter('metadata["c"] in {cs}', {"cs": ["a", "b"]}, json_in=False) == \
        '(metadata["c"] == "a" or metadata["c"] == "b")'
    assert render_filter('metadata["c"] not in {cs}', {"cs": []}, json_in=False) == "true"
    assert render_filter("price in {ps}", {"ps": [1, 2]}, json_in=False) == "price in [1, 2]"
    with pytest.raises(ConfigError):
        render_filter("x == {v}", {"v": math.nan})
