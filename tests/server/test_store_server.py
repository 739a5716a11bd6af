"""VectorStore on the real Milvus 2.3.5 server: ids as values, byte limits, add/ingest parity, emulated group-by,
and add() surviving a 20 s server outage."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_helpers import write_synthetic_pngs

from cir_milvus import CIRCollection, FakeEncoder, VectorStore
from cir_milvus.ingest import ingest

pytestmark = pytest.mark.server

PAYLOAD_IDS = ["x'] or id not in ['", 'x"] or id not in ["', "it's", "back\\slash", "new\nline", "tab\there",
               "uni-\u00e9\u4e2d", "plain"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_synthetic_pngs(tmp_path_factory.mktemp("imgs"), 10, seed=6)


def _name() -> str:
    return f"st{uuid.uuid4().hex[:10]}"


def test_payload_ids_and_byte_limits_on_the_server(server_uri: str) -> None:
    store = VectorStore.create(server_uri, _name(), dim=8, index="FLAT")
    try:
        keep = [f"keep-{i}" for i in range(4)]
        long_id = "é" * 300  # 300 characters, 600 bytes: Lite would take it, the server's VARCHAR(512) would not
        ids = PAYLOAD_IDS + keep + [long_id]
        vecs = np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32)
        wr = store.upsert(ids, vecs)
        assert wr.written == PAYLOAD_IDS + keep
        assert [i for i, _ in wr.skipped] == [len(ids) - 1] and "600 bytes" in wr.skipped[0][1].reason
        assert store.existing_ids(PAYLOAD_IDS + ["absent"]) == set(PAYLOAD_IDS)
        for pid in PAYLOAD_IDS:
            assert store.delete([pid]) == 1, pid
        assert sorted(store.iter_ids()) == keep and store.count() == len(keep)
    finally:
        store.drop()


def test_add_and_ingest_agree_on_the_server(server_uri: str, images: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(images[0].read_bytes()[:40])
    inputs = [images[0], images[1], bad, images[0], images[2]]
    mds: list[dict[str, Any]] = [{"n": np.int64(1)}, {"x": float("nan")}, {}, {}, {"ok": True}]
    a = CIRCollection.create(server_uri, _name(), encoder=FakeEncoder(dim=8))
    b = CIRCollection.create(server_uri, _name(), encoder=FakeEncoder(dim=8))
    try:
        res = a.add(inputs, metadata=mds)
        rep = ingest(b, [(None, str(p), m) for p, m in zip(inputs, mds)], workers=0, progress=False)
        assert (res.stored, res.duplicates, len(res.skipped)) == (rep.stored, rep.duplicates, len(rep.skipped)) \
            == (3, 1, 1)
        ids = sorted(a.iter_ids())
        assert ids == sorted(b.iter_ids())
        assert {r["id"]: r["metadata"] for r in a.get(ids)} == {r["id"]: r["metadata"] for r in b.get(ids)}
        assert a.delete(ids[:2] + ["nope"]) == 2 and len(a) == 1
    finally:
        a.store.drop()
        b.store.drop()


def test_typed_fields_and_emulated_group_by_on_2_3(server_uri: str) -> None:
    store = VectorStore.create(server_uri, _name(), dim=8, index="FLAT",
                               fields={"price": "double", "product": ("varchar", 16)})
    try:
        assert not store.capabilities.group_by, "Milvus 2.3 has no group_by_field: the store emulates it"
        v = np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32)
        store.upsert([f"i{i}" for i in range(8)], v,
                     metadata=[{"price": i * 5, "product": f"p{i % 3}", "c": "red" if i % 2 else "blue"}
                               for i in range(8)])
        hits = store.search_vectors(v[:1], k=3, group_by="product")[0]
        assert len(hits) == 3 and len({h.metadata["product"] for h in hits}) == 3
        assert sorted(r["id"] for r in store.query("price < {p}", {"p": 12}, limit=10)) == ["i0", "i1", "i2"]
        got = store.query('metadata["c"] in {cs}', {"cs": ["red"]}, limit=10)
        assert sorted(r["id"] for r in got) == ["i1", "i3", "i5", "i7"]
        assert store.update_metadata(["i0"], {"price": 99}).written == ["i0"]
        assert store.get(["i0"])[0]["metadata"]["price"] == 99
    finally:
        store.drop()


@pytest.mark.slow  # waits on a real outage/restart: `python -m pytest -m server` runs it (README, Run the tests)
def test_add_survives_a_20_second_server_outage(milvus_server, server_uri: str, images: list[Path]) -> None:  # type: ignore[no-untyped-def]
    if not milvus_server.restartable:
        pytest.skip("CIR_MILVUS_TEST_URI names an external server that the test cannot restart")
    col = CIRCollection.create(server_uri, _name(), encoder=FakeEncoder(dim=8))
    col.add(images[:2])
    milvus_server.stop(graceful=0.5)
    restarted = threading.Event()

    def restart() -> None:
        time.sleep(20)
        milvus_server.start()
        restarted.set()

    t = threading.Thread(target=restart)
    t.start()
    t0 = time.monotonic()
    try:
        res = col.add(images[2:8])
    finally:
        t.join(timeout=300)
    assert restarted.is_set() and time.monotonic() - t0 >= 19
    assert res.stored == 6 and res.retries > 0 and not res.skipped
    assert len(col) == 8
    col.close()
