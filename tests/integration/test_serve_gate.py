"""The service's storage gate (:mod:`cir_milvus.serve.gate`) without a Milvus server: a store whose searches hang
(as pymilvus does while the server is gone) still gets every request a 503 with ``Retry-After`` within the storage
budget; after that, requests are answered 503 at once without asking the store; once the store's probe answers
again, the answers are the right hits."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from serve_helpers import write_gallery  # noqa: E402

from cir_milvus import CIRCollection  # noqa: E402
from cir_milvus.errors import TransientStorageError  # noqa: E402
from cir_milvus.serve import create_app  # noqa: E402

pytestmark = pytest.mark.integration

BUDGET_S = 1.0
QUERY = {"text": "a red circle", "composer": "text", "k": 5}


class Outage:
    """The store double's switch: while ``down``, searches hang until ``release`` (then fail transiently) and
    counts fail at once."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.release = threading.Event()


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    paths, metadata = write_gallery(tmp_path / "gallery", n=12)
    col = CIRCollection.create(str(tmp_path / "c.db"), "gate", model="fake")
    col.add(paths, metadata=metadata)
    outage = Outage()
    search, count = col.store.search_vectors, col.store.count

    def hanging_search(*a: Any, **kw: Any) -> Any:
        if outage.down.is_set():
            outage.release.wait(60)
            raise TransientStorageError("server unavailable (test double)", code="UNAVAILABLE")
        return search(*a, **kw)

    def failing_count(*a: Any, **kw: Any) -> Any:
        if outage.down.is_set():
            raise TransientStorageError("server unavailable (test double)", code="UNAVAILABLE")
        return count(*a, **kw)

    monkeypatch.setattr(col.store, "search_vectors", hanging_search)
    monkeypatch.setattr(col.store, "count", failing_count)
    app = create_app({"c": col}, request_timeout_s=30, storage_timeout_s=BUDGET_S)
    try:
        with TestClient(app) as client:
            yield client, outage
    finally:
        outage.release.set()
        col.close()


def _timed(client: TestClient) -> tuple[int, float, Any]:
    t0 = time.monotonic()
    r = client.post("/search", json=QUERY)
    return r.status_code, time.monotonic() - t0, r


def test_hanging_store_answers_503_within_the_budget_then_at_once_then_right_hits(served: Any) -> None:
    client, outage = served
    r = client.post("/search", json=QUERY)
    assert r.status_code == 200, r.text
    want = [h["id"] for h in r.json()["hits"]]
    assert len(want) == 5

    outage.down.set()
    with ThreadPoolExecutor(6) as pool:  # concurrent clients, each stuck in a hanging search
        answers = list(pool.map(lambda _: _timed(client), range(6)))
    for status, took, resp in answers:
        assert status == 503, resp.text
        assert int(resp.headers["retry-after"]) > 0
        assert took < BUDGET_S + 2.0, took  # the wall-clock budget, not the store's hang (60 s)

    for _ in range(5):  # the gate is closed: 503 at once, not after the budget
        status, took, resp = _timed(client)
        assert status == 503 and int(resp.headers["retry-after"]) > 0, resp.text
        assert took < 0.5, took

    outage.down.clear()  # Milvus is back: the gate's probe sees it, and answers are the right hits again
    outage.release.set()
    deadline = time.monotonic() + 15
    while True:
        status, _, resp = _timed(client)
        assert status in (200, 503), resp.text
        if status == 200:
            assert [h["id"] for h in resp.json()["hits"]] == want  # never a wrong 200
            break
        assert time.monotonic() < deadline, "the gate never opened after the store answered again"
        time.sleep(0.2)


def test_readyz_reopens_the_gate(served: Any) -> None:
    client, outage = served
    outage.down.set()
    outage.release.set()  # searches fail at once (transiently) instead of hanging
    r = client.post("/search", json=QUERY)
    assert r.status_code == 503, r.text
    assert client.get("/readyz").status_code == 503
    outage.down.clear()
    assert client.get("/readyz").status_code == 200  # Milvus answers: requests need not wait for a probe
    r = client.post("/search", json=QUERY)
    assert r.status_code == 200, r.text


def test_an_app_run_without_its_lifespan_still_searches(tmp_path: Path) -> None:
    paths, metadata = write_gallery(tmp_path / "gallery", n=8)
    col = CIRCollection.create(str(tmp_path / "c.db"), "nolife", model="fake")
    col.add(paths, metadata=metadata)
    try:
        client = TestClient(create_app({"c": col}))  # no ``with``: startup never runs
        for _ in range(2):  # each request on an event loop of its own
            r = client.post("/search", json=QUERY)
            assert r.status_code == 200 and len(r.json()["hits"]) == 5, r.text
    finally:
        col.close()
