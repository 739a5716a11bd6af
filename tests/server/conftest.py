"""A real Milvus server for the ``server``-marked tests: the PyPI ``milvus`` 2.3.5 standalone, started once per session.

``CIR_MILVUS_TEST_URI=http://host:19530`` uses an existing server instead (restart tests are then skipped). Without
the ``milvus`` package the server tests are skipped (``pip install 'cir_milvus[server]'``); a server that is
installed but fails to start fails the tests, with the tail of its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerHandle:
    """The test server: ``uri``, and ``stop()`` / ``start()`` for restart tests (same ports, same data)."""

    def __init__(self, uri: str, server: Any = None, base_dir: Path | None = None) -> None:
        self.uri = uri
        self.server = server
        self.base_dir = base_dir
        self.start_seconds: list[float] = []

    @property
    def restartable(self) -> bool:
        return self.server is not None

    def start(self, timeout: float = 180.0) -> None:
        assert self.server is not None
        t = time.monotonic()
        try:
            self.server.start()
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"Milvus 2.3.5 failed to start: {e}\n{self.log_tail()}") from e
        self.start_seconds.append(time.monotonic() - t)

    def stop(self, graceful: float = 10.0) -> None:
        """SIGTERM, wait up to ``graceful`` seconds, then SIGKILL (the package's own stop() kills after 1 s)."""
        srv = self.server
        if srv is None or srv.server_proc is None:
            return
        proc: subprocess.Popen[bytes] = srv.server_proc
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=graceful)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        srv.stop()  # closes log files and clears the handle

    def log_tail(self, n: int = 30) -> str:
        if self.base_dir is None:
            return ""
        out = []
        for name in ("milvus-stderr.log", "milvus-stdout.log"):
            p = self.base_dir / "logs" / name
            if p.is_file():
                out.append(f"--- {p}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)


def _make_server(base_dir: Path) -> Any:
    from milvus import MilvusServer, MilvusServerConfig

    class Config(MilvusServerConfig):  # type: ignore[misc]
        """Probe ports with SO_REUSEADDR, as the Go server binds them: a restart can take its ports back while the
        old connections sit in TIME_WAIT."""

        def try_bind_port(self, port: int) -> socket.socket | None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                return sock
            except OSError:
                sock.close()
                return None

    server = MilvusServer(Config(), proxy_port=_free_port())
    server.set_base_dir(str(base_dir))
    for comp in COMPONENTS:  # register and talk over loopback only
        server.config.set(f"{comp}.ip", "127.0.0.1")
    return server


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A running Milvus 2.3.5 (or the server named by ``CIR_MILVUS_TEST_URI``) for the whole session."""
    external = os.environ.get("CIR_MILVUS_TEST_URI")
    if external:
        yield ServerHandle(external)
        return
    pytest.importorskip("milvus", reason="the server tests need the PyPI Milvus server: pip install 'cir_milvus[server]'")
    base = tmp_path_factory.mktemp("milvus-server")
    handle = ServerHandle("", _make_server(base), base)
    try:
        handle.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    srv = handle.server
    # pin every port the first start resolved, so a restart comes back on the same URI
    srv.config.configs.update({k: v[1] for k, v in srv.config.configurable_items.items() if k.endswith("_port")})
    handle.uri = f"http://127.0.0.1:{srv.listen_port}"
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def server_uri(milvus_server: ServerHandle) -> Iterator[str]:
    """The server URI; collections created by the test are dropped afterwards."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_server.uri)
    before = set(client.list_collections())
    try:
        yield milvus_server.uri
    finally:
        if milvus_server.server is None or milvus_server.server.server_proc is not None:
            try:
                for name in set(client.list_collections()) - before:
                    client.drop_collection(name)
            except Exception:  # noqa: BLE001 - a test that stopped the server must not hide its own failure
                pass
        client.close()
