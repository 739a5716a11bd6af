"""The service's storage gate (:mod:`cir_milvus.serve.gate`) without a Milvus server: a store whose calls hang
(as pymilvus does while the server is gone) still gets every request a 503 with ``Retry-After`` within the storage
budget; after that, requests (searches, adds, ``/info``) are answered 503 at once without asking the store; once the
store's probe answers again, the answers are the right hits."""

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
TOKEN = "gate-token"
QUERY = {"text": "a red circle", "composer": "text", "k": 5}


class Outage:
    """The store double's switch: while ``down``, its calls (searches, counts, the add's lookups and upserts) hang
    until ``release`` (then fail transiently); ``asked`` counts the calls made while down."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.release = threading.Event()
        self.asked: list[str] = []


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    paths, metadata = write_gallery(tmp_path / "gallery", n=12)
    col = CIRCollection.create(str(tmp_path / "c.db"), "gate", model="fake")
    col.add(paths[:-1], metadata=metadata[:-1])
    outage = Outage()

    def hanging(name: str) -> None:
        real = getattr(col.store, name)

        def call(*a: Any, **kw: Any) -> Any:
            if outage.down.is_set():
                outage.asked.append(name)
                outage.release.wait(60)
                raise TransientStorageError("server unavailable (test double)", code="UNAVAILABLE")
            return real(*a, **kw)

        monkeypatch.setattr(col.store, name, call)

    for name in ("search_vectors", "count", "existing_ids", "upsert"):
        hanging(name)
    app = create_app({"c": col}, request_timeout_s=30, storage_timeout_s=BUDGET_S, token=TOKEN, allow_add=True)
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            yield client, outage, paths[-1]
    finally:
        outage.release.set()
        col.close()


def _timed(client: TestClient) -> tuple[int, float, Any]:
    t0 = time.monotonic()
    r = client.post("/search", json=QUERY)
    return r.status_code, time.monotonic() - t0, r


def test_hanging_store_answers_503_within_the_budget_then_at_once_then_right_hits(served: Any) -> None:
    client, outage, _ = served
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
    client, outage, _ = served
    outage.down.set()
    outage.release.set()  # searches fail at once (transiently) instead of hanging
    r = client.post("/search", json=QUERY)
    assert r.status_code == 503, r.text
    assert client.get("/readyz").status_code == 503
    outage.down.clear()
    assert client.get("/readyz").status_code == 200  # Milvus answers: requests need not wait for a probe
    r = client.post("/search", json=QUERY)
    assert r.status_code == 200, r.text


def _add(client: TestClient, path: str) -> tuple[int, float, Any]:
    t0 = time.monotonic()
    with open(path, "rb") as f:
        r = client.post("/add", files=[("images", ("new.png", f.read(), "image/png"))], data={"ids": '["new-1"]'})
    return r.status_code, time.monotonic() - t0, r


def _info(client: TestClient) -> tuple[int, float, Any]:
    t0 = time.monotonic()
    r = client.get("/info")
    return r.status_code, time.monotonic() - t0, r


def test_add_and_info_answer_503_at_once_while_the_gate_is_closed(served: Any) -> None:
    client, outage, new_image = served
    status, _, resp = _info(client)
    assert status == 200 and resp.json()["collections"][0]["count"] == 11, resp.text
    outage.down.set()  # a search hangs past the budget: the gate closes
    status, _, resp = _timed(client)
    assert status == 503, resp.text
    asked = len(outage.asked)
    for timed in (lambda: _add(client, new_image), lambda: _info(client)):
        status, took, resp = timed()
        assert status == 503 and int(resp.headers["retry-after"]) > 0, resp.text
        assert took < 0.5, took  # at once, not after the store's hang
    assert [n for n in outage.asked[asked:] if n != "search_vectors"] == []  # only the gate's probe asked the store

    outage.down.clear()  # Milvus is back: once the probe sees it, the add goes through and /info counts it
    outage.release.set()
    deadline = time.monotonic() + 15
    while (got := _add(client, new_image))[0] == 503:
        assert time.monotonic() < deadline, "the gate never opened after the store answered again"
        time.sleep(0.2)
    assert got[0] == 200 and got[2].json()["ids"] == ["new-1"], got[2].text
    status, _, resp = _info(client)
    assert status == 200 and resp.json()["collections"][0]["count"] == 12, resp.text


def test_a_hanging_count_answers_info_503_within_the_budget(served: Any) -> None:
    client, outage, _ = served
    outage.down.set()
    status, took, resp = _info(client)
    assert status == 503 and int(resp.headers["retry-after"]) > 0, resp.text
    assert took < BUDGET_S + 2.0, took  # the wall-clock budget, not the store's hang (60 s)
    status, took, resp = _timed(client)  # the count's hang closed the gate: a search is answered at once
    assert status == 503 and took < 0.5, (status, took)


def test_an_add_that_fails_transiently_closes_the_gate(served: Any) -> None:
    client, outage, new_image = served
    outage.down.set()
    outage.release.set()  # the add's storage calls fail at once (transiently)
    status, _, resp = _add(client, new_image)
    assert status == 503, resp.text
    assert outage.asked, "the add never asked the store"
    outage.release.clear()  # from now on the store hangs: only a closed gate answers at once
    status, took, resp = _timed(client)
    assert status == 503 and took < 0.5, (status, took)


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
