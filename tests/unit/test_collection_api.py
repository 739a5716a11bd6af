"""The collection layer's public shape: the facade forwards the store without drift, constructors stay small and
typed, and ``connect()`` gives connection options once."""

from __future__ import annotations

import inspect

import pytest

import cir_milvus
from cir_milvus import (
    CIRCollection,
    ComposerSpec,
    Database,
    EncoderSpec,
    FakeEncoder,
    FieldSpec,
    IndexSpec,
    VectorStore,
)
from cir_milvus.errors import ConfigError

FORWARDS = {"get": "get", "query": "query", "delete": "delete", "update_metadata": "update_metadata",
            "flush": "flush", "wait_for_index": "wait_for_index", "index_info": "index_info", "iter_ids": "iter_ids",
            "info": "info", "search_vectors": "search_vectors", "get_vectors": "vectors"}


@pytest.mark.parametrize("ours,theirs", sorted(FORWARDS.items()))
def test_facade_forwards_have_the_store_signature(ours: str, theirs: str) -> None:
    # a forward that drops a parameter (get's vectors=, search_vectors' partition_names) or changes the return type
    # (update_metadata's WriteResult) fails here
    assert inspect.signature(getattr(CIRCollection, ours)) == inspect.signature(getattr(VectorStore, theirs))


@pytest.mark.parametrize("fn", [CIRCollection.create, CIRCollection.open, Database.create_collection,
                                Database.open_collection, cir_milvus.connect])
def test_constructors_take_at_most_ten_named_parameters_and_no_kwargs(fn) -> None:  # type: ignore[no-untyped-def]
    params = [p for p in inspect.signature(fn).parameters.values() if p.name not in ("self", "cls")]
    assert len(params) <= 10, [p.name for p in params]
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def test_ingest_entry_points_take_at_most_ten_parameters() -> None:
    from cir_milvus.ingest import ingest
    from cir_milvus.ingest.ray_pipeline import ingest_ray

    for fn in (ingest, ingest_ray):
        params = list(inspect.signature(fn).parameters.values())
        assert len(params) <= 10, (fn.__name__, [p.name for p in params])
        assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def test_connect_keeps_options_and_hides_the_token() -> None:
    db = cir_milvus.connect("./never-created.db", token="user:s3cret", timeout=3, consistency="Strong")
    assert (db.options.token, db.options.timeout, db.options.consistency) == ("user:s3cret", 3, "Strong")
    assert "s3cret" not in repr(db)
    with pytest.raises(ConfigError, match="uri must be"):
        cir_milvus.connect(42)


def test_specs_merge_and_refuse_ambiguity() -> None:
    spec = EncoderSpec(device="cpu").with_model("fake")
    assert (spec.model, spec.device) == ("fake", "cpu")
    with pytest.raises(ConfigError, match="give the model once"):
        EncoderSpec("fake").with_model("ViT-B-32")
    assert EncoderSpec("fake", options={"dim": 4}).build().dim == 4
    assert ComposerSpec("pic2word", alpha=0.5, head="h.pt", params={"template": "x $"}).all_params() == \
        {"template": "x $", "alpha": 0.5, "head": "h.pt"}
    assert FieldSpec.of({"price": "double"}) == FieldSpec({"price": "double"}) and FieldSpec.of(None).types == {}
    assert IndexSpec.of("hnsw").to_recipe() == {"type": "HNSW", "params": {"M": 16, "efConstruction": 200}}
    assert IndexSpec("IVF_FLAT", {"nlist": 8}).to_recipe() == {"type": "IVF_FLAT", "params": {"nlist": 8}}
    with pytest.raises(ConfigError, match="not both"):
        CIRCollection.create("./never-created.db", "c", "fake", encoder=FakeEncoder(dim=4))
