"""A local Milvus server without Docker: the PyPI ``milvus`` 2.3.5 standalone, for tests, benchmarks and demos.

``pip install 'cir_milvus[server]'`` (Linux x86-64 / macOS). The package bundles a real Milvus 2.3.5 with embedded
etcd and local storage; it starts in about 10-50 s. It is Milvus **2.3**: collection properties, JSON fields,
``count(*)`` and ``upsert`` work; filter templates, hybrid search, sparse vectors and primary-key search do not
(cir_milvus renders filters client-side and needs none of the others).

Example:
    >>> with EmbeddedMilvus("/tmp/milvus-data") as server:  # doctest: +SKIP
    ...     col = CIRCollection.create(server.uri, "c", model="cir-demo-tiny", pretrained="cir-demo")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from cir_milvus._optional import require

__all__ = ["EmbeddedMilvus"]

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedMilvus:
    """Start / stop / restart the bundled Milvus 2.3.5 on 127.0.0.1 (a free port for the proxy).

    A restart reuses the same ports and data directory, so clients reconnect to the same ``uri`` and find their
    collections (the package's own port probe fails while old connections sit in TIME_WAIT; this one probes with
    ``SO_REUSEADDR``, as the Go server binds).

    Args:
        base_dir: data, logs, configs and the unpacked binary.
        port: proxy port (default: a free one).
    """

    def __init__(self, base_dir: str | os.PathLike[str], port: int | None = None) -> None:
        milvus = require("milvus", extra="server", purpose="the embedded Milvus server")
        self.base_dir = Path(base_dir)

        etcd_yaml = self.base_dir / "configs" / "embed-etcd.yaml"

        class Config(milvus.MilvusServerConfig):  # type: ignore[misc,name-defined]
            def write_config(self) -> None:
                super().write_config()
                # The embedded etcd listens on 2379/2380 unless given a config file (the package sets neither), so
                # two servers on one machine collide: give it free loopback ports, kept across restarts.
                if not etcd_yaml.is_file():
                    client, peer = _free_port(), _free_port()
                    etcd_yaml.write_text(
                        "name: default\n"
                        f"listen-client-urls: http://127.0.0.1:{client}\n"
                        f"advertise-client-urls: http://127.0.0.1:{client}\n"
                        f"listen-peer-urls: http://127.0.0.1:{peer}\n"
                        f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
                        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
                    )
                path = Path(self.base_data_dir) / "configs" / "milvus.yaml"
                text = path.read_text().replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_yaml}\n", 1)
                path.write_text(text)

            def try_bind_port(self, p: int) -> socket.socket | None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", p))
                    sock.listen()
                    return sock
                except OSError:
                    sock.close()
                    return None

        self.server: Any = milvus.MilvusServer(Config(), wait_for_started=False, proxy_port=port or _free_port())
        self.server.set_base_dir(str(self.base_dir))
        for comp in COMPONENTS:  # register and talk over loopback only
            self.server.config.set(f"{comp}.ip", "127.0.0.1")
        self.start_seconds: list[float] = []
        self._pinned = False

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.listen_port}"

    @property
    def running(self) -> bool:
        return self.server.server_proc is not None

    def start(self, timeout: float = 180.0) -> EmbeddedMilvus:
        """Start and wait until healthy (the first start unpacks the binary).

        Raises:
            RuntimeError: the server exited or was not healthy after ``timeout`` seconds; the message ends with the
                tail of its log.
        """
        t = time.monotonic()
        try:
            self.server.start()
            self._wait_healthy(timeout)
        except Exception as e:  # noqa: BLE001
            if self.server.server_proc is not None:
                self.stop(graceful=2)
            raise RuntimeError(f"Milvus 2.3.5 failed to start: {e}\n{self.log_tail()}") from e
        self.start_seconds.append(time.monotonic() - t)
        if not self._pinned:  # a restart must come back on the same ports
            cfg = self.server.config
            cfg.configs.update({k: v[1] for k, v in cfg.configurable_items.items() if k.endswith("_port")})
            self._pinned = True
        return self

    def _wait_healthy(self, timeout: float) -> None:
        """Poll ``/healthz``; fail fast when the process exits (the package would wait out its timeout)."""
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.server.webservice_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.server.server_proc.poll()
            if code is not None:
                raise RuntimeError(f"the server process exited with code {code}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback health check
                    if b"OK" in resp.read():
                        time.sleep(1.0)  # as the package does: the proxy is ready just after health turns OK
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"not healthy after {timeout:.0f}s")

    def stop(self, graceful: float = 10.0) -> None:
        """SIGTERM, wait up to ``graceful`` seconds, then SIGKILL (the package's own stop() kills after 1 s)."""
        proc: subprocess.Popen[bytes] | None = self.server.server_proc
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=graceful)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self.server.stop()  # closes the log files and clears the handle

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def log_tail(self, n: int = 30) -> str:
        out = []
        for name in ("milvus-stderr.log", "milvus-stdout.log"):
            p = self.base_dir / "logs" / name
            if p.is_file():
                out.append(f"--- {p}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)

    def __enter__(self) -> EmbeddedMilvus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
