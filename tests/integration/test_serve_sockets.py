"""The service closes what it should: sockets that never send a request, request heads and bodies trickled byte by
byte; while 300 of them are open, ordinary clients keep getting answers (a real uvicorn server on 127.0.0.1, the
server configuration ``cir-milvus serve`` runs with, short limits to keep the test quick)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from serve_helpers import free_port, write_gallery  # noqa: E402

from cir_milvus import CIRCollection  # noqa: E402
from cir_milvus.serve import create_app  # noqa: E402
from cir_milvus.serve.server import server_config  # noqa: E402

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


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[tuple[str, int]]:
    port = free_port()
    srv = uvicorn.Server(server_config(app, port=port, log_level="warning", head_timeout_s=HEAD_TIMEOUT_S))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(collection: CIRCollection) -> Iterator[tuple[str, int]]:
    app = create_app({"c": collection}, request_timeout_s=REQUEST_TIMEOUT_S, body_timeout_s=BODY_TIMEOUT_S)
    with _serving(app) as where:
        yield where


def _trickle(sock: socket.socket, head: bytes, body: bytes, stop: threading.Event) -> None:
    """Send ``head`` at once, then ``body`` one byte every 0.3 s (a trickled head when ``head`` is empty)."""
    try:
        if head:
            sock.sendall(head)
        for i in range(len(body)):
            if stop.wait(0.3):
                return
            sock.sendall(body[i:i + 1])
    except OSError:  # the server closed it: what this test wants
        return


def _wait_closed(socks: dict[socket.socket, float], limit: float) -> tuple[dict[socket.socket, float], dict[
        socket.socket, bytes]]:
    """Read every socket until the server closes it; returns when each closed (seconds after it opened) and what
    it received."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed: dict[socket.socket, float] = {}
    got: dict[socket.socket, bytes] = {s: b"" for s in socks}
    end = time.monotonic() + limit
    while len(closed) < len(socks) and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            s: Any = key.fileobj
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BlockingIOError) as e:
                if isinstance(e, BlockingIOError):
                    continue
                data = b""
            if data:
                got[s] += data
                continue
            closed[s] = time.monotonic() - socks[s]
            sel.unregister(s)
    sel.close()
    return closed, got


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
            t = threading.Thread(target=_trickle, args=(s, head, body, stop), daemon=True)
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
        closed, got = _wait_closed(opened, CLOSE_WITHIN_S)
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
    with _serving(app) as (host, port):
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
