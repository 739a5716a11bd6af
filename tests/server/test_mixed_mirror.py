"""Mixed galleries on the Milvus 2.3.5 server (issue 27): one vector field per collection there, so the item texts
live in a text mirror collection (``cir_milvus.storage.mirror``) and several targets are fused client-side.

The same gallery is built on the server and on Milvus Lite (two vector fields, native ``hybrid_search``); searches
must agree (scores, and ids up to the order of tied items). The failure tests make one of the two writes fail with
a real error of the server (the upsert of one collection is sent to a collection that does not exist), not by
mocking the store.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cir_milvus import (
    CIRCollection,
    CollectionNotFoundError,
    ConfigError,
    FakeEncoder,
    StorageError,
    VectorStore,
    connect,
)

pytestmark = pytest.mark.server
N = 24
COLOURS = ["red", "green", "blue", "yellow"]
SUFFIX = "__cir_text"  # the documented mirror name scheme (README, cir_milvus.storage.mirror)


def _texts(n: int = N) -> list[str | None]:
    return [None if i % 3 == 0 else f"a {COLOURS[i % 4]} thing number{i}" for i in range(n)]


def _meta(n: int = N) -> list[dict[str, Any]]:
    return [{"group": f"g{i % 5}", "n": i} for i in range(n)]


def _enc() -> FakeEncoder:
    return FakeEncoder(dim=16, seed=1)


def _raw(uri: str) -> Any:
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri)


@pytest.fixture(scope="module")
def images(synthetic_pngs: Callable[..., list[Path]]) -> list[Path]:
    return synthetic_pngs(N)


@pytest.fixture(scope="module")
def pair(milvus_server: Any, images: list[Path], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[CIRCollection, CIRCollection, list[Any]]]:
    """The same mixed gallery on the server (text mirror) and on Milvus Lite (second vector field)."""
    pytest.importorskip("milvus_lite")
    name = f"mx{uuid.uuid4().hex[:10]}"
    kw: dict[str, Any] = {"encoder": _enc(), "index": "FLAT", "fields": {"group": ("varchar", 16)}, "item_text": True}
    server = CIRCollection.create(milvus_server.uri, name, **kw)
    lite = CIRCollection.create(str(tmp_path_factory.mktemp("lite") / "m.db"), name, **kw)
    ids = [list(c.add(images, texts=_texts(), metadata=_meta())) for c in (server, lite)]
    assert ids[0] == ids[1]
    try:
        yield server, lite, ids[0]
    finally:
        lite.close()
        VectorStore.drop_collection(milvus_server.uri, name, missing_ok=True)
        server.close()


def _agree(a: Any, b: Any, k: int) -> None:
    """Same scores; the same ids at every score but the lowest kept one (tied items may be ordered, and cut at ``k``,
    differently)."""
    assert len(a) == len(b) == k
    sa, sb = [h.score for h in a], [h.score for h in b]
    assert sa == pytest.approx(sb, abs=1e-5)
    starts = [0] + [i for i in range(1, k) if abs(sa[i] - sa[i - 1]) > 1e-5] + [k]
    for lo, hi in zip(starts[:-2], starts[1:-1]):
        assert {h.id for h in a[lo:hi]} == {h.id for h in b[lo:hi]}, (lo, hi)


def test_layout_recipe_listing_and_reopen(pair: Any, milvus_server: Any) -> None:
    server, lite, ids = pair
    uri = milvus_server.uri
    mirror = server.name + SUFFIX
    assert server.store.fields.text_collection == mirror and lite.store.fields.text_collection is None
    assert server.recipe.item_text is not None and server.recipe.item_text["collection"] == mirror
    raw = _raw(uri)
    try:
        assert {server.name, mirror} <= set(raw.list_collections())  # both exist on the server...
        assert raw.query(mirror, filter='id != ""', output_fields=["count(*)"],
                         consistency_level="Strong")[0]["count(*)"] == N
    finally:
        raw.close()
    assert server.name in connect(uri).list_collections()  # ...but the mirror is part of its gallery
    assert mirror not in connect(uri).list_collections() and mirror not in VectorStore.list_collections(uri)
    # ...and the existence checks agree with the listing; by its name the mirror is refused, naming its gallery
    assert connect(uri).has_collection(server.name) and not connect(uri).has_collection(mirror)
    assert not VectorStore.exists(uri, mirror)
    with pytest.raises(CollectionNotFoundError, match=f"'{mirror}' at .* is the text mirror of the mixed gallery "
                                                      f"'{server.name}'.*open, search or drop '{server.name}'"):
        CIRCollection.open(uri, mirror, encoder=_enc())
    with pytest.raises(CollectionNotFoundError, match=f"text mirror of the mixed gallery '{server.name}'"):
        connect(uri).drop_collection(mirror)
    connect(uri).drop_collection(mirror, missing_ok=True)  # a hidden mirror counts as missing: nothing is dropped
    assert len(server) == N and server.store.existing_ids(ids[:3]) == set(ids[:3])
    with CIRCollection.open(uri, server.name, encoder=_enc()) as again:
        assert again.store.fields.text_collection == mirror
        hits = again.search(text="a yellow thing number7", composer="text", k=3, targets=("text",))
        assert hits[0].id == ids[7]
    with CIRCollection.create(uri, server.name, encoder=_enc(), index="FLAT", fields={"group": ("varchar", 16)},
                              item_text=True, if_exists="open") as same:  # create-or-open finds the mirror too
        assert same.store.fields.text_collection == mirror and len(same) == N
    with pytest.raises(ConfigError, match="reserved for the item-text mirrors"):
        CIRCollection.create(uri, mirror, encoder=_enc())


@pytest.mark.parametrize("kw", [{"targets": ("image", "text")},
                                {"targets": ("image", "text"), "ranker": "weighted", "ranker_weights": (0.7, 0.3)},
                                {"targets": ("text", "image"), "ranker": "weighted"},
                                {"targets": ("text",)}], ids=["rrf", "weighted", "weighted-equal", "text"])
def test_search_agrees_with_lite(pair: Any, kw: dict[str, Any]) -> None:
    server, lite, ids = pair
    for ref in (1, 4, 9):
        a = server.search(ref_id=ids[ref], text="a red thing", k=8, **kw)
        b = lite.search(ref_id=ids[ref], text="a red thing", k=8, **kw)
        _agree(a, b, 8)
        assert ids[ref] not in {h.id for h in a}
    plain = [h.id for h in server.search(ref_id=ids[1], text="a red thing", k=8)]
    if kw["targets"] != ("text",):
        assert [h.id for h in server.search(ref_id=ids[1], text="a red thing", k=8, **kw)] != plain


def test_items_without_text_and_search_batch(pair: Any) -> None:
    server, lite, ids = pair
    without = {ids[i] for i in range(N) if i % 3 == 0}
    text_only = server.search(text="a yellow thing number7", composer="text", k=N, targets=("text",))
    assert len(text_only) == N - len(without) and not without & {h.id for h in text_only}
    both = server.search(text="a yellow thing number7", composer="text", k=N, targets=("image", "text"))
    assert without <= {h.id for h in both}
    texts = ["a red thing", "a blue thing", "make it green"]
    kw: dict[str, Any] = {"targets": ("image", "text"), "ranker": "weighted", "ranker_weights": (0.4, 0.6)}
    batch = server.search_batch(None, texts, k=5, ref_ids=ids[:3], **kw)
    for i, t in enumerate(texts):
        assert [h.id for h in batch[i]] == [h.id for h in server.search(ref_id=ids[i], text=t, k=5, **kw)]
    for a, b in zip(batch, lite.search_batch(None, texts, k=5, ref_ids=ids[:3], **kw)):
        _agree(a, b, 5)


@pytest.mark.parametrize("targets", [("image", "text"), ("text",)])
def test_filters_and_group_by_agree_with_lite(pair: Any, targets: tuple[str, ...]) -> None:
    server, lite, ids = pair
    kw: dict[str, Any] = {"ref_id": ids[1], "text": "a red thing", "targets": targets}
    f = {"filter": 'metadata["n"] >= {lo} and group != {g}', "filter_params": {"lo": 6, "g": "g2"}}
    a = server.search(k=5, **kw, **f)
    assert all(h.metadata["n"] >= 6 and h.metadata["group"] != "g2" for h in a)
    _agree(a, lite.search(k=5, **kw, **f), 5)
    grouped = server.search(k=4, group_by="group", **kw)
    groups = [h.metadata["group"] for h in grouped]
    assert len(groups) == len(set(groups)) == 4
    _agree(grouped, lite.search(k=4, group_by="group", **kw), 4)


def test_bad_input_is_refused_clearly(pair: Any, images: list[Path]) -> None:
    server, _, ids = pair
    with pytest.raises(ConfigError, match="texts has 1 entries but there are 2 images"):
        server.add(images[:2], texts=["one"])
    with pytest.raises(ConfigError, match="has no BM25 field"):
        server.search(ref_id=ids[1], text="x", targets=("image", "bm25"))
    with pytest.raises(ConfigError, match="unknown search target 'caption'"):
        server.search(ref_id=ids[1], text="x", targets=("image", "caption"))
    with pytest.raises(ConfigError, match="1 ranker_weights for 2 targets"):
        server.search(ref_id=ids[1], text="x", targets=("image", "text"), ranker="weighted", ranker_weights=(1.0,))
    with pytest.raises(ConfigError, match="ranker_weights are for ranker='weighted'"):
        server.search(ref_id=ids[1], text="x", targets=("image", "text"), ranker_weights=(0.5, 0.5))
    assert len(server) == N


class _FailingUpserts:
    """A real client whose upserts into one collection go to a collection that does not exist: the server refuses
    them (a real storage error), everything else is forwarded."""

    def __init__(self, client: Any, failing: str) -> None:
        self._client = client
        self._failing = failing

    def upsert(self, collection_name: str, data: Any, **kw: Any) -> Any:
        target = f"missing_{uuid.uuid4().hex[:8]}" if collection_name == self._failing else collection_name
        return self._client.upsert(target, data, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture(scope="module")
def scratch(milvus_server: Any) -> Iterator[CIRCollection]:
    """A server gallery for the write tests (each uses its own images)."""
    name = f"mw{uuid.uuid4().hex[:10]}"
    col = CIRCollection.create(milvus_server.uri, name, encoder=_enc(), index="FLAT", fields={"group": ("varchar", 16)},
                               item_text=True)
    try:
        yield col
    finally:
        col.close()
        VectorStore.drop_collection(milvus_server.uri, name, missing_ok=True)


def test_a_write_cut_short_is_repaired_by_adding_again(scratch: CIRCollection, milvus_server: Any,
                                                      images: list[Path]) -> None:
    col, name = scratch, scratch.name
    mirror = name + SUFFIX
    texts, md = _texts(9), _meta(9)
    raw = _raw(milvus_server.uri)
    mine = 'metadata["n"] < 9'  # the items of this test

    def stored() -> tuple[int, int]:
        return col.store.count(mine), int(raw.query(mirror, filter=mine, output_fields=["count(*)"],
                                                    consistency_level="Strong")[0]["count(*)"])

    try:
        ids = list(col.add(images[:3], texts=texts[:3], metadata=md[:3]))
        for failing, items in ((mirror, slice(3, 6)), (name, slice(6, 9))):
            with CIRCollection.open(_FailingUpserts(raw, failing), name, encoder=_enc()) as broken:
                with pytest.raises(StorageError, match="upsert"):
                    broken.add(images[items], texts=texts[items], metadata=md[items])
        # the main collection is the commit record: items 3..5 are nowhere, items 6..8 reached the mirror only
        assert stored() == (3, 6)
        hits = col.search(text="a green thing number5", composer="text", k=9, targets=("text",), filter=mine)
        assert {h.id for h in hits} == {ids[1], ids[2]}  # mirror rows without a main row are never returned
        repaired = list(col.add(images[:9], texts=texts, metadata=md))  # "already stored?" asks main: 6 re-sent
        assert stored() == (9, 9)
        hits = col.search(text="a green thing number5", composer="text", k=9, targets=("text",), filter=mine)
        assert hits[0].id == repaired[5] and len(hits) == 6  # the items with a text, the repaired ones included
        fused = col.search(ref_id=repaired[7], text="a yellow thing number7", k=3, targets=("image", "text"),
                           exclude_reference=False, filter=mine)
        assert fused[0].id == repaired[7]
    finally:
        raw.close()


def test_http_update_and_delete_keep_both_collections_in_step(scratch: CIRCollection, milvus_server: Any,
                                                              images: list[Path]) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from cir_milvus.serve import create_app

    col, name = scratch, scratch.name
    raw = _raw(milvus_server.uri)
    try:
        head = {"Authorization": "Bearer tok"}
        with TestClient(create_app({name: col}, token="tok", allow_add=True)) as client:
            files = [("images", (p.name, p.read_bytes(), "image/png")) for p in images[12:20]]
            md = [{"group": "h", "n": 100 + i} for i in range(8)]
            r = client.post("/add", files=files, data={"texts": json.dumps(_texts(8)), "metadata": json.dumps(md)},
                            headers=head)
            assert r.status_code == 200 and not r.json()["skipped"], r.text
            ids = r.json()["ids"]
            assert client.get("/info", headers=head).json()["collections"][0]["targets"] == ["image", "text"]
            for kw in ({"targets": ["image", "text"]}, {"targets": ["text"]},
                       {"targets": ["image", "text"], "ranker": "weighted", "ranker_weights": [0.3, 0.7]}):
                r = client.post("/search", json={"ref_id": ids[1], "text": "a red thing", "k": 4, **kw}, headers=head)
                assert r.status_code == 200, r.text
                want = col.search(ref_id=ids[1], text="a red thing", k=4,
                                  **{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})
                assert [h["id"] for h in r.json()["hits"]] == [h.id for h in want] and len(want) == 4
        before = col.store.stored_text_vectors([ids[2], ids[3]])
        col.update_metadata([ids[2], ids[3]], {"extra": 1})
        after = col.store.stored_text_vectors([ids[2], ids[3]])
        assert before[ids[3]] is None and after[ids[3]] is None  # item 3 has no text
        assert after[ids[2]] is not None and np.allclose(after[ids[2]], before[ids[2]])
        assert [h.id for h in col.search(text="a blue thing", composer="text", k=1, targets=("text",),
                                         filter='metadata["extra"] == 1')] == [ids[2]]  # the mirror's copy changed
        assert col.delete([ids[2], "never-stored"]) == 1
        assert raw.query(name + SUFFIX, filter=f'id in ["{ids[2]}"]', output_fields=["id"],
                         consistency_level="Strong") == []
        assert ids[2] not in {h.id for h in col.search(text="a blue thing", composer="text", k=20, targets=("text",))}
        assert col.delete(filter='metadata["n"] == {n}', filter_params={"n": 104}) == 1  # item 4, which has a text
        assert raw.query(name + SUFFIX, filter=f'id in ["{ids[4]}"]', output_fields=["id"],
                         consistency_level="Strong") == []
    finally:
        raw.close()


def test_broken_mirrors_get_errors_that_say_what_to_do(milvus_server: Any) -> None:
    from pymilvus import DataType, MilvusClient

    uri = milvus_server.uri
    name = f"mo{uuid.uuid4().hex[:10]}"
    mirror = name + SUFFIX
    CIRCollection.create(uri, name, encoder=_enc(), index="FLAT", item_text=True).close()
    raw = _raw(uri)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("text_vector", DataType.FLOAT_VECTOR, dim=8)
    schema.add_field("has_text", DataType.BOOL)
    try:
        raw.drop_collection(mirror)
        with pytest.raises(CollectionNotFoundError, match=f"item texts in the collection '{mirror}', which is missing.*"
                                                          "if_exists='overwrite'"):
            CIRCollection.open(uri, name, encoder=_enc())
        raw.create_collection(mirror, schema=schema, properties={"cir_milvus.mirror_of": name})
        with pytest.raises(ConfigError, match="holds 8-d text vectors but .* 16-d image vectors"):
            CIRCollection.open(uri, name, encoder=_enc())
        raw.drop_collection(mirror)
        raw.create_collection(mirror, schema=schema)  # someone else's collection of that name
        with pytest.raises(ConfigError, match="is not the text mirror"):
            CIRCollection.create(uri, name, encoder=_enc(), item_text=True, if_exists="overwrite")
        assert raw.has_collection(name)  # refused before anything was dropped
        raw.drop_collection(mirror)
        # what the message says to do works: re-create it
        col = CIRCollection.create(uri, name, encoder=_enc(), index="FLAT", item_text=True, if_exists="overwrite")
        col.close()
        with CIRCollection.open(uri, name, encoder=_enc()) as again:
            assert again.store.fields.text_collection == mirror
        connect(uri).drop_collection(name)
        assert not raw.has_collection(name) and not raw.has_collection(mirror)
        raw.create_collection(mirror, schema=schema)  # an orphan (main gone): an ordinary collection, so it can go
        assert mirror in connect(uri).list_collections() and connect(uri).has_collection(mirror)
        connect(uri).drop_collection(mirror)
        assert not raw.has_collection(mirror)
    finally:
        raw.close()
        for n in (name, mirror):
            VectorStore.drop_collection(uri, n, missing_ok=True)
