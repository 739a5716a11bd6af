"""The store's fault handling on the real Milvus 2.3.5 server: filter values that stay values, filters the server
cannot parse raised at once with its words, the classification of its real errors, creators in two processes that
converge, and opening right after a restart (another server starting meanwhile included)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cir_milvus.errors import (
    CollectionNotFoundError,
    CollectionNotLoadedError,
    FilterError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from cir_milvus.storage.client import connect, disconnect, milvus_errors
from cir_milvus.storage.store import VectorStore

pytestmark = pytest.mark.server

BRANDS = ["a%b", "axb", "a_b", "abc", "%", "zz", "ab"]


def _name() -> str:
    return f"sf{uuid.uuid4().hex[:10]}"


@pytest.fixture
def brands(server_uri: str) -> Any:
    store = VectorStore.create(server_uri, _name(), dim=4, index="FLAT", fields={"brand_t": ("varchar", 32)},
                               consistency="Strong")
    vecs = np.eye(4, dtype=np.float32)[np.arange(len(BRANDS)) % 4]
    store.upsert([f"r{i}" for i in range(len(BRANDS))], vecs, metadata=[{"brand": b, "brand_t": b} for b in BRANDS])
    yield store
    store.drop()


def _brands(store: VectorStore, expr: str, params: dict[str, Any]) -> list[str]:
    return sorted(r["metadata"]["brand"] for r in store.query(expr, params, limit=100))


@pytest.mark.parametrize("field", ['metadata["brand"]', "brand_t"])
def test_like_values_are_literals_on_the_server(brands: VectorStore, field: str) -> None:
    assert _brands(brands, f"{field} like {{p}}", {"p": "%"}) == ["%"]
    assert _brands(brands, f"{field} like {{p}}", {"p": "a_b"}) == ["a_b"]
    assert _brands(brands, f"{field} like {{p:prefix}}", {"p": "ab"}) == ["ab", "abc"]
    with pytest.raises(FilterError, match=r"\{p\} is written inside quotes"):
        brands.query(f'{field} == "{{p}}"', {"p": "x"}, limit=5)
    t0 = time.monotonic()
    with pytest.raises(FilterError, match="only prefix"):  # Milvus 2.3 matches prefixes only: its words
        brands.query(f"{field} like {{p:suffix}}", {"p": "b"}, limit=5)
    assert time.monotonic() - t0 < 10


def test_a_filter_the_server_cannot_parse_is_a_filter_error_at_once(brands: VectorStore) -> None:
    t0 = time.monotonic()
    for expr in ('metadata["brand"] == "a" or 5', 'metadata["brand"] === "a"'):
        for call in (lambda e=expr: brands.query(e, limit=5), lambda e=expr: brands.count(e),
                     lambda e=expr: brands.search_vectors(np.eye(4, dtype=np.float32)[:1], k=3, filter=e)):
            with pytest.raises(FilterError, match="cannot parse expression"):
                call()
    assert time.monotonic() - t0 < 15, "never retried (the policy's deadline is 300 s)"
    assert brands.count() == len(BRANDS)


def test_the_servers_real_errors_are_classified(brands: VectorStore, server_uri: str) -> None:
    client = connect(server_uri)
    try:
        def wrapped(fn: Any) -> StorageError:
            try:
                with milvus_errors("probe"):
                    fn()
            except StorageError as e:
                return e
            raise AssertionError("no error")

        assert isinstance(wrapped(lambda: client.query("nope" + _name(), filter='id == "a"')),
                          CollectionNotFoundError)
        too_long = wrapped(lambda: client.upsert(brands.name, [{"id": "x" * 600, "vector": [1.0, 0, 0, 0],
                                                                "norm": 1.0, "source": "", "metadata": {},
                                                                "brand_t": "a"}]))
        assert isinstance(too_long, PermanentStorageError) and too_long.code == 1100
        unparsed = wrapped(lambda: client.query(brands.name, filter="brand_t === 1"))
        assert type(unparsed) is TransientStorageError and unparsed.code == 65535, "no code: the store asks again"
        client.release_collection(brands.name)
        assert isinstance(wrapped(lambda: client.query(brands.name, filter='id == "r0"')), CollectionNotLoadedError)
        assert brands.existing_ids(["r0"]) == {"r0"}, "the store loads a released collection and answers"
    finally:
        disconnect(client, server_uri)


_CREATOR = textwrap.dedent("""
    import json, sys, time
    from cir_milvus.errors import RecipeMismatchError
    from cir_milvus.storage.recipe import Recipe
    from cir_milvus.storage.store import VectorStore
    uri, name, model, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    recipe = Recipe(encoder={"backend": "fake", "model": model, "pretrained": None, "dim": 4})
    time.sleep(max(0.0, start - time.time()))
    try:
        store = VectorStore.create(uri, name, dim=4, index="FLAT", recipe=recipe, exist_ok=True)
        store.upsert([model + "-" + sys.argv[5]], [[1.0, 0.0, 0.0, 0.0]])
        print(json.dumps({"ok": store.recipe.encoder["model"]}))
    except RecipeMismatchError as e:
        print(json.dumps({"refused": str(e)}))
""")


def _race(uri: str, name: str, models: list[str]) -> list[dict[str, str]]:
    start = time.time() + 8.0  # both processes import and connect first, then create at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", _CREATOR, uri, name, m, str(start), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, m in enumerate(models)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def test_two_processes_creating_one_collection_converge(server_uri: str) -> None:
    same = _name()
    assert _race(server_uri, same, ["m1", "m1"]) == [{"ok": "m1"}, {"ok": "m1"}]
    with VectorStore.open(server_uri, same, consistency="Strong") as store:
        assert store.existing_ids(["m1-0", "m1-1"]) == {"m1-0", "m1-1"}, "both creators wrote into one collection"
    other = _name()
    outs = _race(server_uri, other, ["m1", "m2"])
    refused = [o["refused"] for o in outs if "refused" in o]
    assert len(refused) == 1 and "m1" in refused[0] and "m2" in refused[0], outs


@pytest.mark.slow  # waits on a real outage/restart: `python -m pytest -m server` runs it (README, Run the tests)
@pytest.mark.parametrize("restarts", [3, 20])
def test_open_right_after_a_restart(milvus_server, server_uri: str, restarts: int) -> None:  # type: ignore[no-untyped-def]
    if not milvus_server.restartable:
        pytest.skip("CIR_MILVUS_TEST_URI names an external server that the test cannot restart")
    name = _name()
    ids = [f"r{i}" for i in range(6)]
    old = VectorStore.create(server_uri, name, dim=4, index="FLAT")  # a client that lives through the restarts
    try:
        old.upsert(ids, np.eye(4, dtype=np.float32)[np.arange(6) % 4])
        old.flush()
        for _ in range(restarts):
            milvus_server.stop(graceful=2)
            milvus_server.start()  # healthy: the proxy listens, though the first calls may still be refused
            with VectorStore.open(server_uri, name, timeout=30) as store:
                assert store.count() == len(ids)
            # the old client answers right, or raises: never "not stored", never an empty success
            assert old.existing_ids(ids) == set(ids)
            assert len(old.search_vectors(np.eye(4, dtype=np.float32)[:1], k=6)[0]) == len(ids)
    finally:
        old.close()


@pytest.mark.slow  # two real server starts: `python -m pytest -m server` runs it
def test_a_restart_while_another_server_starts_comes_back(milvus_server, server_uri: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Another server (another test session, a test worker) making its first start while this one is down must not
    take its ports (the package scanned up from fixed defaults: "set root_coord_port=53100, but bind failed")."""
    if not milvus_server.restartable:
        pytest.skip("CIR_MILVUS_TEST_URI names an external server that the test cannot restart")
    from cir_milvus.storage.embedded import EmbeddedMilvus

    name = _name()
    with VectorStore.create(server_uri, name, dim=4, index="FLAT") as store:
        store.upsert([f"r{i}" for i in range(6)], np.eye(4, dtype=np.float32)[np.arange(6) % 4])
        store.flush()
    milvus_server.stop(graceful=2)
    neighbour = EmbeddedMilvus(tmp_path / "neighbour")
    try:
        neighbour.start()
        milvus_server.start()  # the same ports: clients find it at the same uri
        assert milvus_server.uri == server_uri != neighbour.uri
        with VectorStore.open(server_uri, name, timeout=30) as store:
            assert store.count() == 6
    finally:
        neighbour.stop()
        if not milvus_server.running:
            milvus_server.start()
