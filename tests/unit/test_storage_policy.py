"""The store's policies without Milvus: error classification, the retry policy, ids by bytes, JSON-safe metadata,
filter literals."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from cir_milvus.errors import (
    CollectionNotFoundError,
    CollectionNotLoadedError,
    ConfigError,
    FilterError,
    PermanentStorageError,
    StorageError,
    StorageUnavailableError,
    TransientStorageError,
)
from cir_milvus.storage.client import milvus_errors
from cir_milvus.storage.filters import in_filter, render_filter, string_literal
from cir_milvus.storage.policy import MetadataError, check_id, jsonable, safe_text, source_text
from cir_milvus.storage.retry import RetryPolicy, is_permanent


def _wrapped(cause: BaseException) -> StorageError:
    """``cause`` as the store wraps it (the one place failures are classified)."""
    try:
        with milvus_errors("upsert"):
            raise cause
    except StorageError as e:
        return e
    raise AssertionError("milvus_errors did not wrap")


class _Rpc(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def test_errors_are_classified_by_type_and_code_where_they_are_wrapped() -> None:
    from pymilvus.exceptions import MilvusException, ParamError

    # the codes Milvus Lite 3.2.2 and the Milvus 2.3.5 server send (see cir_milvus.storage.classify)
    lite_parse = MilvusException(6, "operands of 'or' must be boolean, got int at column 29")
    server_parse = MilvusException(65535, "cannot parse expression: x == 1 or 5")
    assert isinstance(_wrapped(lite_parse), PermanentStorageError)
    assert isinstance(_wrapped(MilvusException(1100, "the length (40) of 0th string exceeds max length (16)")),
                      PermanentStorageError)
    assert isinstance(_wrapped(ParamError(message="bad")), PermanentStorageError)
    assert isinstance(_wrapped(MilvusException(message="x", is_input_error=True)), PermanentStorageError)
    assert isinstance(_wrapped(MilvusException(100, "collection not found")), CollectionNotFoundError)
    assert isinstance(_wrapped(MilvusException(101, "collection not loaded")), CollectionNotLoadedError)
    connect_failed = _wrapped(MilvusException(2, "Fail connecting to server on 127.0.0.1:1"))
    assert type(connect_failed) is TransientStorageError and connect_failed.code == 2
    unclassified = _wrapped(server_parse)
    assert type(unclassified) is TransientStorageError and unclassified.code == 65535
    assert isinstance(_wrapped(_Rpc(grpc.StatusCode.UNAVAILABLE)), TransientStorageError)
    assert isinstance(_wrapped(_Rpc(grpc.StatusCode.INVALID_ARGUMENT)), PermanentStorageError)
    # pymilvus's own retry gives up with a MilvusException whose code is the gRPC status
    assert isinstance(_wrapped(MilvusException(grpc.StatusCode.DEADLINE_EXCEEDED, "Retry timeout: 10s")),
                      TransientStorageError)
    # an unclassified wrapper defers to its cause
    try:
        try:
            raise _Rpc(grpc.StatusCode.UNIMPLEMENTED)
        except grpc.RpcError as inner:
            raise MilvusException(message="Unexpected error") from inner
    except MilvusException as outer:
        assert isinstance(_wrapped(outer), PermanentStorageError)
    # the words never decide: a permanent code with transient-sounding text, and the reverse
    assert isinstance(_wrapped(MilvusException(1100, "connection refused, timed out")), PermanentStorageError)
    assert type(_wrapped(MilvusException(2, "cannot parse expression"))) is TransientStorageError
    assert is_permanent(StorageError("anything")) and not is_permanent(TransientStorageError("x"))


def test_a_looping_exception_chain_is_walked_once() -> None:
    from pymilvus.exceptions import MilvusException

    a, b = MilvusException(message="a"), MilvusException(message="b")
    a.__context__, b.__context__ = b, a
    assert isinstance(_wrapped(a), TransientStorageError)  # returns, does not spin


def test_retry_policy_decides_by_class(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("cir_milvus.storage.retry.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr("cir_milvus.storage.retry.time.monotonic", lambda: clock[0])
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientStorageError("server restarting")
        return "ok"

    retried: list[int] = []
    assert RetryPolicy(timeout=60).call(flaky, "x", on_retry=lambda: retried.append(1)) == "ok"
    assert len(calls) == 4 and len(retried) == 3 and clock[0] == pytest.approx(0.5 + 1 + 2)

    for permanent in (PermanentStorageError("refused"), StorageError("unclassified"), FilterError("bad filter")):
        def bad(e: Exception = permanent) -> None:
            calls.append(2)
            raise e

        with pytest.raises(type(permanent)):
            RetryPolicy(timeout=60).call(bad, "x")
    assert calls.count(2) == 3, "never retried"

    def down() -> None:
        raise TransientStorageError("unavailable", code=2)

    start = clock[0]
    with pytest.raises(StorageUnavailableError) as e:
        RetryPolicy(timeout=5).call(down, "x")
    assert e.value.code == 2 and clock[0] - start <= 5

    reloads: list[int] = []
    state = {"n": 0}

    def released() -> str:
        state["n"] += 1
        if state["n"] == 1:
            raise CollectionNotLoadedError("released", code=101)
        return "loaded"

    assert RetryPolicy(timeout=60).call(released, "x", reload=lambda: reloads.append(1)) == "loaded"
    assert reloads == [1]
    assert RetryPolicy(timeout=300).capped(10).timeout == 10 and RetryPolicy(timeout=5).capped(10).timeout == 5


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
