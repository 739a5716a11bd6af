"""A Milvus outage under ``cir-milvus serve``: requests fail fast with 503 and ``Retry-After`` (never a 504 at the
deadline, never an empty 200 or a 400 "not stored"), ``/readyz`` says Milvus is unreachable, and once the server is
back every 200 carries the right hits (a real Milvus server, stopped and started again)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from serve_helpers import write_gallery  # noqa: E402

from cir_milvus import CIRCollection  # noqa: E402
from cir_milvus.serve import create_app  # noqa: E402

# both wait on a real outage of the server: `python -m pytest -m server` runs them (README, Run the tests)
pytestmark = [pytest.mark.server, pytest.mark.slow]

FAIL_FAST_S = 5.0


def _queries(ids: list[str]) -> list[dict[str, Any]]:
    return [{"text": "a red circle", "composer": "text", "k": 5},
            {"ref_id": ids[3], "text": "make it blue", "k": 5}]


def test_outage_answers_503_fast_and_never_a_wrong_answer(milvus_server: Any, server_uri: str,
                                                           tmp_path: Path) -> None:
    if not milvus_server.restartable:
        pytest.skip("CIR_MILVUS_TEST_URI names an external server that the test cannot restart")
    paths, metadata = write_gallery(tmp_path / "gallery", n=16)
    col = CIRCollection.create(server_uri, f"outage_{uuid.uuid4().hex[:8]}", model="fake")
    ids = list(col.add(paths, metadata=metadata))
    col.store.flush()
    app = create_app({"c": col}, image_roots=[tmp_path / "gallery"], request_timeout_s=30)
    try:
        with TestClient(app) as c:
            want = []
            for q in _queries(ids):
                r = c.post("/search", json=q)
                assert r.status_code == 200 and len(r.json()["hits"]) == 5, r.text
                want.append([h["id"] for h in r.json()["hits"]])
            assert c.get("/readyz").status_code == 200
            unseen = next(i for i in ids if all(i not in w for w in want))  # its source is not cached: a lookup

            milvus_server.stop(graceful=0.5)
            for path, body in [("/search", q) for q in _queries(ids)] + [("/readyz", None),
                                                                          (f"/images/c/{unseen}", None)]:
                t0 = time.monotonic()
                r = c.post(path, json=body) if body is not None else c.get(path)
                took = time.monotonic() - t0
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert took < FAIL_FAST_S, (path, took)
                assert int(r.headers["retry-after"]) > 0
                assert r.headers.get("connection") == "close" or path == "/readyz"

            milvus_server.start()
            answers: list[tuple[int, Any]] = []
            deadline = time.monotonic() + 120
            ok = 0
            while ok < 3 and time.monotonic() < deadline:  # three rounds of right answers in a row
                for q, expected in zip(_queries(ids), want):
                    r = c.post("/search", json=q)
                    answers.append((r.status_code, r.json()))
                    assert r.status_code in (200, 503), (r.status_code, r.text)
                    if r.status_code == 200:
                        assert [h["id"] for h in r.json()["hits"]] == expected, r.text  # never a wrong 200
                ok = ok + 1 if all(s == 200 for s, _ in answers[-2:]) else 0
            assert ok == 3, answers[-4:]
            while c.get("/readyz").status_code != 200:  # ready again, once Milvus answers
                assert time.monotonic() < deadline, "/readyz still 503 two minutes after the restart"
                time.sleep(1)
    finally:
        if not milvus_server.running:
            milvus_server.start()
        col.close()


def _client_loop(c: TestClient, queries: list[dict[str, Any]], want: list[list[str]], done: threading.Event,
                 log: list[tuple[float, float, int, str | None, bool]]) -> None:
    """One client searching until ``done``: (started at, seconds, status, Retry-After, right hits) per request."""
    i = 0
    while not done.is_set():
        q, expected = queries[i % len(queries)], want[i % len(queries)]
        i += 1
        t0 = time.monotonic()
        r = c.post("/search", json=q)
        right = r.status_code == 200 and [h["id"] for h in r.json()["hits"]] == expected
        log.append((t0, time.monotonic() - t0, r.status_code, r.headers.get("retry-after"), right))


def test_concurrent_clients_get_503_fast_during_an_outage(milvus_server: Any, server_uri: str,
                                                          tmp_path: Path) -> None:
    """Four clients search while the server is stopped (not waiting for the stop to finish): every request
    started during the outage is answered within 5 s, with 503 + Retry-After or the right hits."""
    if not milvus_server.restartable:
        pytest.skip("CIR_MILVUS_TEST_URI names an external server that the test cannot restart")
    paths, metadata = write_gallery(tmp_path / "gallery", n=16)
    col = CIRCollection.create(server_uri, f"outage_{uuid.uuid4().hex[:8]}", model="fake")
    ids = list(col.add(paths, metadata=metadata))
    col.store.flush()
    app = create_app({"c": col}, request_timeout_s=30)
    log: list[tuple[float, float, int, str | None, bool]] = []
    done = threading.Event()
    try:
        with TestClient(app) as c:
            queries = _queries(ids)
            want = [[h["id"] for h in c.post("/search", json=q).json()["hits"]] for q in queries]
            threads = [threading.Thread(target=_client_loop, args=(c, queries, want, done, log), daemon=True)
                       for _ in range(4)]
            for th in threads:
                th.start()
            time.sleep(1.0)
            t_stop = time.monotonic()
            stopper = threading.Thread(target=milvus_server.stop, kwargs={"graceful": 0.5})
            stopper.start()  # the clients go on while the server goes down
            time.sleep(8.0)
            stopper.join(60)
            t_back = time.monotonic()
            done.set()
            for th in threads:
                th.join(60)
            assert not any(th.is_alive() for th in threads), "a client never got an answer"
        during = [r for r in log if r[0] >= t_stop and r[0] < t_back]
        assert during, log
        assert any(r[2] == 503 for r in during), during
        for started, took, status, retry_after, right in during:
            assert took < FAIL_FAST_S, (started - t_stop, took, status)
            assert (status == 503 and retry_after is not None and int(retry_after) > 0) or (status == 200 and right), (
                started - t_stop, status, retry_after)
    finally:
        done.set()
        if not milvus_server.running:
            milvus_server.start()
        col.close()
