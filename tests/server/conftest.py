"""A real Milvus server for the ``server``-marked tests: the PyPI ``milvus`` 2.3.5 standalone, started once per session.

``CIR_MILVUS_TEST_URI=http://host:19530`` uses an existing server instead (restart tests are then skipped). Without
the ``milvus`` package the server tests are skipped (``pip install 'cir_milvus[server]'``); a server that is
installed but fails to start fails the tests, with the tail of its log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


class ServerHandle:
    """The test server: ``uri``, and ``stop()`` / ``start()`` for restart tests (same ports, same data)."""

    def __init__(self, uri: str, embedded: Any = None) -> None:
        self._uri = uri
        self.embedded = embedded

    @property
    def uri(self) -> str:
        return self.embedded.uri if self.embedded is not None else self._uri

    @property
    def restartable(self) -> bool:
        return self.embedded is not None

    @property
    def running(self) -> bool:
        return self.embedded is None or self.embedded.running

    def start(self) -> None:
        self.embedded.start()

    def stop(self, graceful: float = 10.0) -> None:
        self.embedded.stop(graceful=graceful)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A running Milvus 2.3.5 (or the server named by ``CIR_MILVUS_TEST_URI``) for the whole session."""
    external = os.environ.get("CIR_MILVUS_TEST_URI")
    if external:
        yield ServerHandle(external)
        return
    pytest.importorskip("milvus", reason="the server tests need the PyPI Milvus server: pip install 'cir_milvus[server]'")
    from cir_milvus.storage.embedded import EmbeddedMilvus

    server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus-server"))
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield ServerHandle("", server)
    finally:
        server.stop(graceful=5)


@pytest.fixture
def server_uri(milvus_server: ServerHandle) -> Iterator[str]:
    """The server URI; collections created by the test are dropped afterwards."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_server.uri)
    before = set(client.list_collections())
    try:
        yield milvus_server.uri
    finally:
        if milvus_server.running:
            try:
                for name in set(client.list_collections()) - before:
                    client.drop_collection(name)
            except Exception:  # noqa: BLE001 - a test that stopped the server must not hide its own failure
                pass
        client.close()
