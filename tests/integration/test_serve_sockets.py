"""The service closes what it should: sockets that never send a request, request heads and bodies trickled byte by
byte; while 300 of them are open, ordinary clients keep getting answers (a real uvicorn server on 127.0.0.1, the
server configuration ``cir-milvus serve`` runs with, short limits to keep the test quick)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from serve_helpers import serving, trickle, wait_closed, write_gallery  # noqa: E402

from cir_milvus import CIRCollection  # noqa: E402
from cir_milvus.serve import create_app  # noqa: E402

pytestmark = pytest.mark.integration

SILENT, TRICKLE_HEAD, TRICKLE_BODY = 300, 5, 5
HEAD_TIMEOUT_S, BODY_TIMEOUT_S, REQUEST_TIMEOUT_S = 2.0, 2.0, 3.0
CLOSE_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CIRCollection]:
    base = tmp_path_factory.mktemp("sockets")
    paths, metadata = write_gallery(base / "gallery", n=8)
    col = CIRCollection.create(str(base / "c.db"), "c", model="fake")
    col.add(paths, metadata=metadata)
    yield col
    col.close()


@pytest.fixture(scope="module")
def server(collection: CIRCollection) -> Iterator[tuple[str, int]]:
    app = create_app({"c": collection}, request_timeout_s=REQUEST_TIMEOUT_S, body_timeout_s=BODY_TIMEOUT_S)
    with serving(app, HEAD_TIMEOUT_S) as where:
        yield where


def test_silent_and_trickling_sockets_are_closed_while_clients_get_answers(server: tuple[str, int]) -> None:
    host, port = server
    opened: dict[socket.socket, float] = {}
    stop = threading.Event()
    kinds: dict[socket.socket, str] = {}
    threads = []
    try:
        for _ in range(SILENT):
            s = socket.create_connection((host, port))
            opened[s], kinds[s] = time.monotonic(), "silent"
        for i in range(TRICKLE_HEAD + TRICKLE_BODY):
            s = socket.create_connection((host, port))
            opened[s] = time.monotonic()
            if i < TRICKLE_HEAD:  # a request head that never ends
                kinds[s] = "head"
                head, body = b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
            else:  # a complete head, then a body far slower than the deadline allows
                kinds[s] = "body"
                head = (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 200\r\n\r\n")
                body = b'{"text": "' + b"x" * 190
            t = threading.Thread(target=trickle, args=(s, head, body, stop, 0.3), daemon=True)
            t.start()
            threads.append(t)
        # ordinary clients meanwhile: every request answered
        statuses = []
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=10) as client:
            t_end = time.monotonic() + HEAD_TIMEOUT_S + 1
            while time.monotonic() < t_end:
                statuses.append(client.get("/healthz").status_code)
                statuses.append(client.post("/search", json={"text": "a red circle", "composer": "text",
                                                             "k": 3}).status_code)
        assert statuses and set(statuses) == {200}, statuses
        closed, got = wait_closed(opened, CLOSE_WITHIN_S)
        open_still = [kinds[s] for s in opened if s not in closed]
        assert not open_still, f"{len(open_still)} sockets still open after {CLOSE_WITHIN_S:.0f} s: {open_still[:5]}"
        assert max(closed.values()) < CLOSE_WITHIN_S
        for s, kind in kinds.items():
            if kind == "body":  # the body deadline's answer, saying the connection closes
                head = got[s].split(b"\r\n\r\n", 1)[0].lower()
                assert head.startswith(b"http/1.1 408") and b"connection: close" in head, got[s][:300]
            elif kind == "silent":
                assert got[s] == b""  # closed without an answer
        # and the server still answers afterwards
        assert httpx.get(f"http://{host}:{port}/healthz").status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in opened:
            s.close()


def test_requests_in_flight_are_capped(collection: CIRCollection) -> None:
    """Past ``max_inflight`` requests (here two held by slow bodies) a request is answered 503 with ``Retry-After``
    at once instead of queueing; once the slow ones are gone, requests are answered again."""
    app = create_app({"c": collection}, request_timeout_s=REQUEST_TIMEOUT_S, body_timeout_s=BODY_TIMEOUT_S,
                     max_inflight=2)
    with serving(app, HEAD_TIMEOUT_S) as (host, port):
        slow = []
        for _ in range(2):
            s = socket.create_connection((host, port))
            s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{")  # a head, then nothing: in flight until the body timeout
            slow.append(s)
        time.sleep(0.3)
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=10) as client:
            t0 = time.monotonic()
            r = client.get("/healthz")
            assert r.status_code == 503 and time.monotonic() - t0 < 1.0
            assert r.json()["error"]["type"] == "Overloaded" and int(r.headers["retry-after"]) > 0
            for s in slow:  # the body timeout answers them 408 and frees their slots
                s.settimeout(BODY_TIMEOUT_S + 5)
                assert s.recv(64).startswith(b"HTTP/1.1 408")
                s.close()
            assert client.get("/healthz").status_code == 200
