"""The embedded Milvus server's ports (:class:`cir_milvus.storage.embedded.EmbeddedMilvus`), without starting one.

Two servers on one machine must not pick the same ports, and a server must not pick a port an outgoing connection
can take while it is down for a restart: each port is picked at random below the kernel's ephemeral range and
pinned at construction (the package scanned upward from fixed defaults, 53100 for the root coordinator, inside that
range, so a server starting while another was down took its ports: "root_coord_port bind failed")."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("milvus", reason="pip install 'cir_milvus[server]'")

from cir_milvus.storage.embedded import EmbeddedMilvus  # noqa: E402


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except OSError:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range here")


def test_every_port_is_pinned_outside_the_ephemeral_range_and_two_servers_share_none(tmp_path: Path) -> None:
    a, b = EmbeddedMilvus(tmp_path / "a"), EmbeddedMilvus(tmp_path / "b")
    assert {"proxy_port", "root_coord_port", "query_node_port", "etcd_client", "etcd_peer", "webservice"} <= set(a.ports)
    for server in (a, b):
        ports = list(server.ports.values())
        assert len(set(ports)) == len(ports)
        assert all(1024 <= p < _ephemeral_low() for p in ports), server.ports
    assert not set(a.ports.values()) & set(b.ports.values())
    assert a.uri == f"http://127.0.0.1:{a.ports['proxy_port']}"


def test_a_given_proxy_port_is_kept(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert EmbeddedMilvus(tmp_path / "a", port=port).ports["proxy_port"] == port
