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
import random
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from cir_milvus._optional import require

__all__ = ["EmbeddedMilvus"]

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


PORT_FLOOR = 10000
"""The lowest port picked for a server (below it: well-known and registered services)."""


def _listener(port: int) -> socket.socket | None:
    """A socket listening on ``port`` as the Go server binds it (``:port``: every address, IPv6 dual-stack, with
    ``SO_REUSEADDR``), or ``None`` when that bind would fail."""
    for family, addr in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 here: the server binds IPv4
            continue
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((addr, port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            return None
    return None


def _bindable(port: int) -> bool:
    sock = _listener(port)
    if sock is None:
        return False
    sock.close()
    return True


def _ephemeral_floor() -> int:
    """The first port the kernel hands out for outgoing connections and ``bind(0)`` (Linux: 32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # macOS and BSDs start at 49152: below it is outside their range too


def _pick_port(taken: Collection[int] = ()) -> int:
    """A random port that the server can bind now, below the kernel's ephemeral range.

    Not a scan from a fixed default (two servers starting at once, or one starting while another is down for a
    restart, would pick the same port) and not ``bind(0)`` (an ephemeral port: while the server is down, any
    outgoing connection on the machine may take it as its local port).
    """
    top = _ephemeral_floor()
    low, high = (PORT_FLOOR, top) if top - PORT_FLOOR >= 1000 else (1024, max(top, 2048))
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(low, high)
        if port not in taken and _bindable(port):
            return port
    raise RuntimeError(f"no free port found in {low}-{high - 1} for the embedded Milvus server")


class EmbeddedMilvus:
    """Start / stop / restart the bundled Milvus 2.3.5 on 127.0.0.1 (a free port for the proxy).

    Every port (proxy, each component, the embedded etcd, the health endpoint) is picked at random among the free
    ones below the kernel's ephemeral range (:func:`_pick_port`) and pinned: a restart reuses the same ports and
    data directory, so clients reconnect to the same ``uri`` and find their collections. Ports are probed as the Go
    server binds them (every address, dual-stack, ``SO_REUSEADDR``: old connections in TIME_WAIT do not count),
    and a start waits until each is free again.

    Args:
        base_dir: data, logs, configs and the unpacked binary.
        port: proxy port (default: a free one).
    """

    def __init__(self, base_dir: str | os.PathLike[str], port: int | None = None) -> None:
        milvus = require("milvus", extra="server", purpose="the embedded Milvus server")
        self.base_dir = Path(base_dir)

        etcd_yaml = self.base_dir / "configs" / "embed-etcd.yaml"
        ports: dict[str, int] = {}  # every *_port of the package's config template, pinned from the first start

        class Config(milvus.MilvusServerConfig):  # type: ignore[misc,name-defined]
            def write_config(self) -> None:
                super().write_config()
                # The embedded etcd listens on 2379/2380 unless given a config file (the package sets neither), so
                # two servers on one machine collide: give it free loopback ports, kept across restarts.
                if not etcd_yaml.is_file():
                    client, peer = etcd_ports
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
                return _listener(p)  # as the Go server binds (the package probes 127.0.0.1 without SO_REUSEADDR)

        config = Config()
        if port:
            ports["proxy_port"] = port
        for key in sorted(k for k in config.configurable_items if k.endswith("_port")) + ["etcd_client", "etcd_peer",
                                                                                          "webservice"]:
            if key not in ports:
                ports[key] = _pick_port(ports.values())
        etcd_ports = self._etcd_ports = (ports.pop("etcd_client"), ports.pop("etcd_peer"))
        self.server: Any = milvus.MilvusServer(config, wait_for_started=False)
        self.server.webservice_port = ports.pop("webservice")  # the package probes upward from it at each start
        config.configs.update(ports)  # pinned: the package binds these or fails, it never scans for others
        self.server.set_base_dir(str(self.base_dir))
        for comp in COMPONENTS:  # register and talk over loopback only
            self.server.config.set(f"{comp}.ip", "127.0.0.1")
        self.start_seconds: list[float] = []

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.config.configs['proxy_port']}"  # known before the first start

    @property
    def ports(self) -> dict[str, int]:
        """Every port the server binds, by the package's config key (``proxy_port``, ``root_coord_port``, …), plus
        ``etcd_client``, ``etcd_peer`` and ``webservice`` (health); pinned across restarts."""
        out = {k: int(v) for k, v in self.server.config.configs.items() if k.endswith("_port")}
        out.update(etcd_client=self._etcd_ports[0], etcd_peer=self._etcd_ports[1],
                   webservice=int(self.server.webservice_port))
        return out

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
            self._claim_ports()
            self.server.start()
            self._wait_healthy(timeout)
        except Exception as e:  # noqa: BLE001
            if self.server.server_proc is not None:
                self.stop(graceful=2)
            raise RuntimeError(f"Milvus 2.3.5 failed to start: {e}\n{self.log_tail()}") from e
        self.start_seconds.append(time.monotonic() - t)
        return self

    def _claim_ports(self, wait_s: float = 30.0) -> None:
        """Wait until every pinned port can be bound again; a component's port still held by another process after
        ``wait_s`` is replaced by a fresh one (the proxy's is the ``uri`` clients know and etcd's are recorded in
        its data folder: those are waited for, then refused with what holds them).

        Raises:
            RuntimeError: the proxy's or etcd's port is still held after ``wait_s``.
        """
        configs = self.server.config.configs
        pinned = self.ports
        pinned.pop("webservice")  # the package probes upward from it at each start
        deadline = time.monotonic() + wait_s
        while busy := [k for k, p in pinned.items() if not _bindable(p)]:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        fixed = [f"{k}={pinned[k]}" for k in busy if k in ("proxy_port", "etcd_client", "etcd_peer")]
        if fixed:
            raise RuntimeError(f"{', '.join(fixed)} still in use {wait_s:.0f} s after the server stopped: another "
                               "process holds it (ss -tanp 'sport = :PORT' shows which); stop it or start a server "
                               "in a new folder")
        for k in busy:
            configs[k] = _pick_port(set(pinned.values()))
            pinned[k] = configs[k]

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
