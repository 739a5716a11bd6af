"""Helpers shared by the ``cir-milvus serve`` tests and benchmark (importable as ``serve_helpers``: ``tests/`` is on
``sys.path`` through its conftest)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cir_milvus.synthetic import SyntheticWorld


def write_gallery(root: Path, n: int = 40, seed: int = 3) -> tuple[list[str], list[dict[str, Any]]]:
    """Render ``n`` synthetic gallery images into ``root``; returns their paths and metadata (the attributes)."""
    root.mkdir(parents=True, exist_ok=True)
    paths, metadata = [], []
    for item in SyntheticWorld(seed=seed, instances=1).gallery()[:n]:
        p = root / f"{item.id}.png"
        item.render().save(p)
        paths.append(str(p))
        a = item.attributes
        metadata.append({"shape": a.shape, "colour": a.colour, "size": a.size, "background": a.background})
    return paths, metadata


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any, head_timeout_s: float | None = None) -> Iterator[tuple[str, int]]:
    """Run ``app`` on a real uvicorn server on 127.0.0.1 in a thread, configured as ``cir-milvus serve`` runs it
    (``head_timeout_s`` overrides its timeout before a request head); yields ``(host, port)``."""
    import uvicorn

    from cir_milvus.serve.server import server_config

    port = free_port()
    extra = {} if head_timeout_s is None else {"head_timeout_s": head_timeout_s}
    srv = uvicorn.Server(server_config(app, port=port, log_level="warning", **extra))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        srv.should_exit = True
        thread.join(10)


def trickle(sock: socket.socket, head: bytes, body: bytes, stop: threading.Event, interval_s: float) -> None:
    """Send ``head`` at once, then ``body`` one byte every ``interval_s`` (a trickled head when ``head`` is empty);
    returns early once ``stop`` is set or the server closes the socket."""
    try:
        if head:
            sock.sendall(head)
        for i in range(len(body)):
            if stop.wait(interval_s):
                return
            sock.sendall(body[i:i + 1])
    except OSError:  # the server closed it
        return


def wait_closed(socks: dict[socket.socket, float], limit: float) -> tuple[dict[socket.socket, float],
                                                                            dict[socket.socket, bytes]]:
    """Read every socket (``socket -> monotonic time it opened``) until the server closes it or ``limit`` seconds
    pass; returns when each closed (seconds after it opened) and what each received."""
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
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                got[s] += data
                continue
            closed[s] = time.monotonic() - socks[s]
            sel.unregister(s)
    sel.close()
    return closed, got
