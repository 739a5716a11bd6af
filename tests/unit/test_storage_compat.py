"""Servers without collection properties (Milvus < 2.3), auth/TLS pass-through, and secrets kept out of logs."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest

from cir_milvus import CIRCollection, ComposerSpec, ConfigError, FakeEncoder, StorageError
from cir_milvus import connect as cir_connect
from cir_milvus.storage.client import capabilities, connect, redact_uri

SECRET = "root:s3cr3t-Pa55"


class OldServer:
    """A MilvusClient double for a Milvus 2.2 server: no collection properties."""

    def __init__(self, version: str = "v2.2.16") -> None:
        self.version = version
        self.collections: dict[str, dict[str, Any]] = {}

    def get_server_version(self) -> str:
        return self.version

    def has_collection(self, name: str) -> bool:
        return name in self.collections

    def prepare_index_params(self) -> Any:
        return mock.MagicMock()

    def create_collection(self, name: str, *, schema: Any, properties: Any = None, **kw: Any) -> None:
        if properties is not None:
            raise AssertionError("Milvus 2.2 takes no collection properties")
        self.collections[name] = {"description": schema.description, "properties": {},
                                  "fields": schema.to_dict()["fields"]}

    def load_collection(self, name: str) -> None:
        pass

    def describe_collection(self, name: str) -> dict[str, Any]:
        return dict(self.collections[name])

    def list_collections(self) -> list[str]:
        return list(self.collections)

    def alter_collection_properties(self, *a: Any, **k: Any) -> None:
        raise AssertionError("not on 2.2")

    def close(self) -> None:
        pass


def test_capabilities_by_version() -> None:
    assert capabilities(OldServer("v2.2.16")).collection_properties is False
    assert capabilities(OldServer("v2.3.5-lite")).collection_properties is True
    new = capabilities(OldServer("v2.6.3"))
    assert new.collection_properties and new.filter_templates and not new.is_lite
    assert capabilities(OldServer("milvus_lite-3.2.2")).is_lite


def test_recipe_lives_in_the_description_without_properties() -> None:
    server = OldServer()
    with mock.patch("cir_milvus.storage.lifecycle.connect", return_value=server):
        col = CIRCollection.create("http://old:19530", "c", encoder=FakeEncoder(dim=8),
                                   composer=ComposerSpec("slerp", alpha=0.6))
        assert server.collections["c"]["description"].startswith("cir_milvus.recipe=")
        reopened = CIRCollection.open(server, "c", encoder=FakeEncoder(dim=8))  # an injected MilvusClient
        assert reopened.recipe.composer["params"]["alpha"] == 0.6
        assert reopened.recipe.encoder == col.recipe.encoder
        with pytest.raises(ConfigError, match="cannot alter collection properties"):
            reopened.set_default_composer("slerp", alpha=0.7)


def test_token_and_tls_kwargs_reach_the_client_and_never_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with mock.patch("pymilvus.MilvusClient") as client_cls:
        connect("https://db.example.com:19530", token=SECRET, secure=True, server_pem_path="/certs/server.pem",
                server_name="db.example.com")
    kwargs = client_cls.call_args.kwargs
    assert kwargs["token"] == SECRET and kwargs["uri"] == "https://db.example.com:19530"
    assert kwargs["secure"] is True and kwargs["server_pem_path"] == "/certs/server.pem"
    assert kwargs["server_name"] == "db.example.com"

    client = OldServer("v2.6.3")
    client.create_collection = lambda name, schema, properties=None, **kw: client.collections.__setitem__(  # type: ignore[method-assign]
        name, {"description": "", "properties": properties or {}, "fields": schema.to_dict()["fields"]})
    with mock.patch("pymilvus.MilvusClient", return_value=client) as client_cls:
        db = cir_connect("https://db.example.com:19530", token=SECRET,
                         client_options={"secure": True, "ca_pem_path": "/certs/ca.pem"})
        col = CIRCollection.create(db, "c", encoder=FakeEncoder(dim=8))
        assert client_cls.call_args.kwargs["token"] == SECRET
        assert client_cls.call_args.kwargs["ca_pem_path"] == "/certs/ca.pem"
        CIRCollection.open(cir_connect("https://db.example.com:19530", token=SECRET), "c", encoder=FakeEncoder(dim=8))
    assert SECRET not in repr(col)
    assert SECRET not in caplog.text and "s3cr3t" not in caplog.text


def test_failed_connections_redact_credentials(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    boom = RuntimeError(f"auth failed for token {SECRET}")
    with mock.patch("pymilvus.MilvusClient", side_effect=boom), pytest.raises(StorageError) as e:
        connect("https://root:s3cr3t-Pa55@db.example.com:19530", token=SECRET)
    assert "s3cr3t" not in str(e.value) and "db.example.com" in str(e.value)
    assert "s3cr3t" not in caplog.text
    assert redact_uri("http://u:p@h:1/db") == "http://***@h:1/db"


def test_lite_clients_send_no_keepalive_pings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Milvus Lite answers pymilvus' 10 s keep-alive pings with GOAWAY "too_many_pings" after a few idle minutes
    # (printed by gRPC to stderr); its server runs in this process, so the client turns keep-alive off.
    with mock.patch("pymilvus.MilvusClient") as client_cls:
        connect(str(tmp_path / "a.db"))
        assert client_cls.call_args.kwargs["grpc_options"] == {"grpc.keepalive_time_ms": 2**31 - 1}
        connect(str(tmp_path / "b.db"), grpc_options={"grpc.keepalive_time_ms": 60_000, "grpc.x": 1})
        assert client_cls.call_args.kwargs["grpc_options"] == {"grpc.keepalive_time_ms": 60_000, "grpc.x": 1}
        connect("http://db.example.com:19530")
        assert "grpc_options" not in client_cls.call_args.kwargs  # servers keep pymilvus' keep-alive
