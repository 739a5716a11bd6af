"""Mixed galleries (issue 27): item texts in a second vector field, searched alone or fused with the images.

The fused lists are checked three ways: Milvus Lite's ``hybrid_search``, the store's client-side fusion (the path of
servers without hybrid search, forced here by switching the capability off) and a brute-force numpy ranking fused by
the rules written out again below (not cir_milvus.query's code). Runs on Lite; the 2.3.5 server, which keeps the item
texts in a text mirror collection, is checked against Lite in tests/server/test_mixed_mirror.py.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cir_milvus import CIRCollection, ConfigError, FakeEncoder, connect

pytestmark = pytest.mark.integration
N = 24
COLOURS = ["red", "green", "blue", "yellow"]


@pytest.fixture(scope="module")
def images(synthetic_pngs: Callable[..., list[Path]]) -> list[Path]:
    return synthetic_pngs(N)


def _texts() -> list[str | None]:
    # every third item has no text; the others a short caption (word directions: FakeEncoder)
    return [None if i % 3 == 0 else f"a {COLOURS[i % 4]} thing number{i}" for i in range(N)]


@pytest.fixture
def mixed(tmp_path: Path, images: list[Path]):  # type: ignore[no-untyped-def]
    pytest.importorskip("milvus_lite")
    uri = str(tmp_path / "m.db")
    col = CIRCollection.create(uri, f"m{uuid.uuid4().hex[:10]}", encoder=FakeEncoder(dim=16, seed=1), index="FLAT",
                               fields={"group": ("varchar", 16)}, item_text=True)
    ids = list(col.add(images, texts=_texts(), metadata=[{"group": f"g{i % 5}", "n": i} for i in range(N)]))
    col.store.flush()
    yield col, ids
    col.store.drop()


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) / np.linalg.norm(v)


def _brute_lists(col: CIRCollection, ids: list, q: np.ndarray, limit: int) -> tuple[list, list]:
    """Per-field (id, score) lists by brute force: images of every item, texts of items that have one."""
    img = {i: _unit(v) for i, v in col.get_vectors(ids).items()}
    texts = dict(zip(ids, _texts()))
    temb = {i: _unit(col.encoder.encode_texts([t], normalize=False)[0]) for i, t in texts.items() if t}
    a = sorted(((i, float(v @ q)) for i, v in img.items()), key=lambda t: -t[1])[:limit]
    b = sorted(((i, float(v @ q)) for i, v in temb.items()), key=lambda t: -t[1])[:limit]
    return a, b


def _fuse_rrf(lists: list[list]) -> dict:
    out: dict = {}
    for lst in lists:
        for r, (i, _) in enumerate(lst):
            out[i] = out.get(i, 0.0) + 1.0 / (60 + r + 1)
    return out


def _fuse_weighted(lists: list[list], w: tuple) -> dict:  # Milvus: IP scores through 0.5 + atan(s)/pi
    out: dict = {}
    for lst, wi in zip(lists, w):
        for i, s in lst:
            out[i] = out.get(i, 0.0) + wi * (0.5 + math.atan(s) / math.pi)
    return out


def _check(hits, want: dict, k: int) -> None:  # type: ignore[no-untyped-def]
    top = sorted(want.values(), reverse=True)[:k]
    assert [h.score for h in hits] == pytest.approx(top, abs=1e-5)
    for h in hits:  # ties may be ordered differently; each hit carries its own fused score
        assert want[h.id] == pytest.approx(h.score, abs=1e-5)


@pytest.mark.parametrize("ranker", ["rrf", "weighted"])
def test_hybrid_matches_client_fusion_and_brute_force(mixed, ranker: str) -> None:  # type: ignore[no-untyped-def]
    col, ids = mixed
    k = 8
    kw = {"ranker_weights": (0.7, 0.3)} if ranker == "weighted" else {}
    hits = col.search(ref_id=ids[4], text="a red thing", k=k, targets=("image", "text"), ranker=ranker,
                      exclude_reference=False, return_query_vector=True, **kw)
    q = _unit(hits[0].query_vector)
    a, b = _brute_lists(col, ids, q, k)
    want = _fuse_rrf([a, b]) if ranker == "rrf" else _fuse_weighted([a, b], (0.7, 0.3))
    _check(hits, want, k)
    store = col.store
    native = store.capabilities
    store.capabilities = dataclasses.replace(native, hybrid_search=False)  # the path of servers without it
    try:
        client = col.search(ref_id=ids[4], text="a red thing", k=k, targets=("image", "text"), ranker=ranker,
                            exclude_reference=False, **kw)
    finally:
        store.capabilities = native
    _check(client, want, k)


def test_text_target_alone_and_items_without_text(mixed) -> None:  # type: ignore[no-untyped-def]
    col, ids = mixed
    hits = col.search(text="a yellow thing number7", composer="text", k=N, targets=("text",))
    without = {ids[i] for i in range(N) if i % 3 == 0}
    assert hits[0].id == ids[7]  # its own caption
    assert len(hits) == N - len(without) and not without & {h.id for h in hits}  # absent from the text list
    both = col.search(text="a yellow thing number7", composer="text", k=N, targets=("image", "text"))
    assert without <= {h.id for h in both}  # ...but still found through their images


def test_filters_group_by_and_exclusion_keep_working(mixed) -> None:  # type: ignore[no-untyped-def]
    col, ids = mixed
    hits = col.search(ref_id=ids[1], text="a red thing", k=5, targets=("image", "text"),
                      filter='metadata["n"] >= {lo}', filter_params={"lo": 10})
    assert hits and all(h.metadata["n"] >= 10 for h in hits)
    grouped = col.search(ref_id=ids[1], text="a red thing", k=5, targets=("image", "text"), group_by="group")
    groups = [h.metadata["group"] for h in grouped]
    assert len(groups) == len(set(groups)) == 5 and ids[1] not in {h.id for h in grouped}


def test_update_metadata_keeps_item_text(mixed) -> None:  # type: ignore[no-untyped-def]
    col, ids = mixed
    before = col.store.stored_text_vectors([ids[2], ids[3]])
    col.store.update_metadata([ids[2], ids[3]], {"extra": 1})
    after = col.store.stored_text_vectors([ids[2], ids[3]])
    assert after[ids[3]] is None and before[ids[3]] is None  # item 3 has no text
    assert np.allclose(after[ids[2]], before[ids[2]]) and np.linalg.norm(after[ids[2]]) == pytest.approx(1.0)


def test_recipe_records_the_text_field_and_reopens(tmp_path: Path, images: list[Path]) -> None:
    pytest.importorskip("milvus_lite")
    enc = FakeEncoder(dim=16, seed=1)
    db = connect(str(tmp_path / "r.db"))
    col = db.create_collection("r", encoder=enc, item_text=True)
    col.add(images[:3], texts=["a red thing", None, ""])
    assert col.recipe.item_text is not None and col.recipe.item_text["field"] == "text_vector"
    assert col.recipe.item_text["encoder"]["model"] == enc.recipe["model"]
    col.close()
    again = CIRCollection.open(str(tmp_path / "r.db"), "r", encoder=enc)
    assert again.store.fields.text_vector_field == "text_vector"
    assert again.recipe.item_text == col.recipe.item_text
    present = again.store.stored_text_vectors(list(again.iter_ids()))
    assert sorted(v is not None for v in present.values()) == [False, False, True]
    again.close()


def test_bad_input_is_refused_clearly(tmp_path: Path, images: list[Path]) -> None:
    pytest.importorskip("milvus_lite")
    col = CIRCollection.create(str(tmp_path / "b.db"), "b", encoder=FakeEncoder(dim=16, seed=1), item_text=True)
    with pytest.raises(ConfigError, match="texts has 1 entries but there are 2 images"):
        col.add(images[:2], texts=["one"])
    col.add(images[:2], texts=["a red thing", "a blue thing"])
    ref = next(iter(col.iter_ids()))
    with pytest.raises(ConfigError, match="2 ranker_weights for 1 targets"):
        col.search(ref_id=ref, text="x", targets=("text",), ranker="weighted", ranker_weights=(0.5, 0.5))
    with pytest.raises(ConfigError, match="ranker_weights are for ranker='weighted'"):
        col.search(ref_id=ref, text="x", targets=("image", "text"), ranker_weights=(0.5, 0.5))
    with pytest.raises(ConfigError, match="unknown search target 'caption'"):
        col.search(ref_id=ref, text="x", targets=("image", "caption"))
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        col.search(ref_id=ref, text="x", targets=("image", "text"), ranker="weighted", ranker_weights=(2, 0))
    col.close()
    plain = CIRCollection.create(str(tmp_path / "p.db"), "p", encoder=FakeEncoder(dim=16, seed=1))
    plain.add(images[:2])
    ref = next(iter(plain.iter_ids()))
    with pytest.raises(ConfigError, match="has no item-text field.*item_text=True"):
        plain.search(ref_id=ref, text="x", targets=("image", "text"))
    with pytest.raises(ConfigError, match="has no item-text field"):
        plain.add(images[2:3], texts=["a red thing"])
    plain.close()


def test_bm25_target_alone_and_fused(tmp_path: Path, images: list[Path]) -> None:
    pytest.importorskip("milvus_lite")
    col = CIRCollection.create(str(tmp_path / "f.db"), "f", encoder=FakeEncoder(dim=16, seed=1), index="FLAT",
                               item_text="full_text")
    texts = ["red square shoe", "blue circle bag", None, "red circle hat", "green star"]
    ids = list(col.add(images[:5], texts=texts))
    assert col.recipe.item_text is not None and col.recipe.item_text["full_text"]["function"] == "BM25"
    hits = col.search(ref_id=ids[4], text="red square", k=5, targets=("bm25",), exclude_reference=False)
    assert hits[0].id == ids[0] and {h.id for h in hits} == {ids[0], ids[3]}  # only texts sharing a word
    assert hits[0].score > hits[1].score > 0
    col.store.update_metadata([ids[0]], {"x": 1})  # the stored text survives a metadata update
    assert col.store.stored_texts([ids[0], ids[2]]) == {ids[0]: "red square shoe", ids[2]: None}
    again = col.search(ref_id=ids[4], text="red square", k=5, targets=("bm25",), exclude_reference=False)
    assert [h.id for h in again] == [h.id for h in hits]
    # three targets fused by RRF: the same as fusing the three single-target lists by hand
    kw = {"ref_id": ids[4], "text": "red square", "k": 5, "exclude_reference": False}
    lists = [[h.id for h in col.search(targets=(t,), **kw)] for t in ("image", "text", "bm25")]
    want = _fuse_rrf([[(i, 0.0) for i in lst] for lst in lists])
    _check(col.search(targets=("image", "text", "bm25"), **kw), want, 5)
    col.close()


def test_bm25_needs_a_deployment_that_has_it() -> None:
    from cir_milvus.storage.client import LITE_INDEXES, Capabilities
    from cir_milvus.storage.lifecycle import check_index, plan_create

    old = Capabilities(is_lite=False, version="v2.3.5", index_types=LITE_INDEXES, filter_templates=False,
                       full_text=False)
    plan = plan_create(16, None, None, "FLAT", None, None, None, True, item_text=True, full_text=True)
    with pytest.raises(ConfigError, match=r"Milvus v2\.3\.5 lacks: it needs Milvus >= 2\.5 or Milvus Lite >= 3\.0"):
        check_index(plan, old)
    with pytest.raises(ConfigError, match="needs item_text=True"):
        plan_create(16, None, None, "FLAT", None, None, None, True, item_text=False, full_text=True)


def test_ingest_reads_a_text_column(tmp_path: Path, images: list[Path]) -> None:
    pytest.importorskip("milvus_lite")
    import csv

    from ingest_helpers import write_shard

    from cir_milvus.ingest import IngestOptions, ingest

    enc = FakeEncoder(dim=16, seed=1)
    col = CIRCollection.create(str(tmp_path / "i.db"), "i", encoder=enc, item_text=True)
    with (tmp_path / "items.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "caption"])
        w.writeheader()
        for i, p in enumerate(images[:6]):
            w.writerow({"path": str(p), "caption": "" if i == 2 else f"a {COLOURS[i % 4]} item{i}"})
    ingest(col, tmp_path / "items.csv", options=IngestOptions(text_column="caption"), workers=0, progress=False)
    shard = write_shard(tmp_path / "s.tar", [(f"k{i}", {"n": i}, images[10 + i].read_bytes()) for i in range(3)],
                        caption=True)
    ingest(col, str(shard), options=IngestOptions(text_column="caption"), workers=0, progress=False)
    stored = col.store.stored_text_vectors(list(col.iter_ids()))
    assert len(stored) == 9 and sum(v is None for v in stored.values()) == 1  # the empty CSV cell
    hits = col.search(text="caption of k1", composer="text", k=1, targets=("text",))
    assert hits[0].id == "k1"
    col.close()
    plain = CIRCollection.create(str(tmp_path / "j.db"), "j", encoder=enc)
    with pytest.raises(ConfigError, match="has no item-text field"):
        ingest(plain, tmp_path / "items.csv", options=IngestOptions(text_column="caption"), workers=0, progress=False)
    plain.close()


def test_cli_text_column_targets_and_ranker_match_the_api(tmp_path: Path, images: list[Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("milvus_lite")
    import csv
    import json

    from cir_milvus import EncoderSpec
    from cir_milvus.cli import main

    with (tmp_path / "items.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "caption"])
        w.writeheader()
        for i, p in enumerate(images[:12]):
            w.writerow({"path": str(p), "caption": "" if i % 3 == 0 else f"a {COLOURS[i % 4]} thing"})
    db = str(tmp_path / "cli.db")
    assert main(["ingest", "--list", str(tmp_path / "items.csv"), "--uri", db, "--collection", "m", "--model",
                 "cir-demo-tiny", "--device", "cpu", "--no-progress", "--workers", "0", "--text-column", "caption",
                 "--full-text"]) == 0
    capsys.readouterr()
    common = ["search", "--uri", db, "--collection", "m", "--device", "cpu", "-k", "6", "--json", "--image",
              str(images[1]), "--text", "make it red"]
    cases = [(["--targets", "image,text"], {"targets": ("image", "text")}),
             (["--targets", "image,text", "--ranker", "weighted", "--ranker-weights", "0.2,0.8"],
              {"targets": ("image", "text"), "ranker": "weighted", "ranker_weights": (0.2, 0.8)}),
             (["--targets", "text,bm25"], {"targets": ("text", "bm25")})]
    with CIRCollection.open(db, "m", encoder=EncoderSpec(device="cpu")) as col:
        assert col.recipe.item_text is not None and col.store.fields.text_sparse_field is not None
        want = [[h.id for h in col.search(str(images[1]), "make it red", k=6, **kw)] for _, kw in cases]
        plain = [h.id for h in col.search(str(images[1]), "make it red", k=6)]
    for (argv, _), ids in zip(cases, want):
        assert main([*common, *argv]) == 0
        assert [h["id"] for h in json.loads(capsys.readouterr().out)] == ids, argv
    assert sum(ids != plain for ids in want) >= 2  # the flags are not ignored
    assert main([*common, "--ranker", "weighted"]) != 0
    assert "add e.g. --targets image,text" in capsys.readouterr().err
    assert main([*common, "--targets", "image,text", "--ranker-weights", "1"]) != 0
    assert "1 weights for 2 --targets" in capsys.readouterr().err


def test_http_add_texts_and_search_targets_match_the_library(tmp_path: Path, images: list[Path]) -> None:
    pytest.importorskip("milvus_lite")
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import json

    from fastapi.testclient import TestClient

    from cir_milvus.serve import create_app

    col = CIRCollection.create(str(tmp_path / "h.db"), "h", encoder=FakeEncoder(dim=16, seed=1), index="FLAT",
                               item_text="full_text")
    token = "tok-123"
    head = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app({"h": col}, token=token, allow_add=True)) as client:
        files = [("images", (p.name, p.read_bytes(), "image/png")) for p in images[:8]]
        texts = [None if i % 3 == 0 else f"a {COLOURS[i % 4]} thing" for i in range(8)]
        r = client.post("/add", files=files, data={"texts": json.dumps(texts)}, headers=head)
        assert r.status_code == 200, r.text
        ids = r.json()["ids"]
        bad = client.post("/add", files=files[:2], data={"texts": json.dumps(["one"])}, headers=head)
        assert bad.status_code == 400 and "texts must be a JSON list of 2" in bad.text
        assert client.get("/info", headers=head).json()["collections"][0]["targets"] == ["image", "text", "bm25"]
        for kw in ({"targets": ["image", "text"]}, {"targets": ["image", "text"], "ranker": "weighted",
                                                     "ranker_weights": [0.3, 0.7]}, {"targets": ["bm25"]}):
            r = client.post("/search", json={"ref_id": ids[1], "text": "a red thing", "k": 5, **kw}, headers=head)
            assert r.status_code == 200, r.text
            want = col.search(ref_id=ids[1], text="a red thing", k=5,
                              **{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})
            assert [h["id"] for h in r.json()["hits"]] == [h.id for h in want]
        r = client.post("/search", json={"ref_id": ids[1], "text": "x", "targets": ["image", "text"],
                                         "ranker_weights": [0.5, 0.5]}, headers=head)
        assert r.status_code == 400 and "ranker_weights are for ranker='weighted'" in r.text
    col.close()


def test_servers_with_one_vector_field_get_a_text_mirror_and_older_ones_a_clear_error() -> None:
    from cir_milvus.storage.client import SERVER_INDEXES, Capabilities
    from cir_milvus.storage.lifecycle import check_index, plan_create

    plan = plan_create(16, None, None, "FLAT", None, None, None, True, item_text=True)
    v235 = Capabilities(is_lite=False, version="v2.3.5", index_types=SERVER_INDEXES, filter_templates=False,
                        group_by=False, nullable=False, hybrid_search=False, multi_vector=False, full_text=False)
    check_index(plan, v235)  # accepted: the item texts go to a mirror (tests/server/test_mixed_mirror.py)
    assert plan.on(v235, "shop").field_map(v235).text_collection == "shop__cir_text"
    assert plan.on(dataclasses.replace(v235, multi_vector=True), "shop").text_collection is None
    with pytest.raises(ConfigError, match="reserved for the item-text mirrors"):
        plan.on(v235, "shop__cir_text")
    with pytest.raises(ConfigError, match="too long for a mixed gallery"):
        plan.on(v235, "x" * 250)
    v22 = dataclasses.replace(v235, version="v2.2.16", collection_properties=False)
    with pytest.raises(ConfigError, match=r"Milvus v2\.2\.16 has neither: upgrade the server to Milvus >= 2\.3"):
        check_index(plan, v22)


def test_torch_and_bundle_give_the_same_mixed_gallery(tiny_torch_encoder, tiny_bundle: Path,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path, images: list[Path]) -> None:
    pytest.importorskip("milvus_lite")
    pytest.importorskip("onnxruntime")
    from cir_milvus.encoders.base import create_encoder

    texts = [None if i % 3 == 0 else f"a {COLOURS[i % 4]} thing" for i in range(10)]
    results = []
    for name, enc in (("torch", tiny_torch_encoder), ("bundle", create_encoder(f"bundle:{tiny_bundle}"))):
        col = CIRCollection.create(str(tmp_path / f"{name}.db"), name, encoder=enc, index="FLAT", item_text=True)
        ids = list(col.add(images[:10], texts=texts))
        hits = col.search(ref_id=ids[1], text="make it red", k=6, targets=("image", "text"), ranker="weighted",
                          ranker_weights=(0.5, 0.5))
        results.append(([h.id for h in hits], [h.score for h in hits]))
        col.close()
    assert results[0][0] == results[1][0]
    assert results[0][1] == pytest.approx(results[1][1], abs=1e-4)


def test_attach_a_foreign_collection_naming_its_text_field(tmp_path: Path, images: list[Path]) -> None:
    pytest.importorskip("milvus_lite")
    from pymilvus import DataType, MilvusClient

    enc = FakeEncoder(dim=16, seed=1)
    uri = str(tmp_path / "foreign.db")
    client = MilvusClient(uri)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("emb", DataType.FLOAT_VECTOR, dim=16)
    schema.add_field("temb", DataType.FLOAT_VECTOR, dim=16)
    ip = client.prepare_index_params()
    ip.add_index("emb", index_type="FLAT", metric_type="IP")
    ip.add_index("temb", index_type="FLAT", metric_type="IP")
    client.create_collection("theirs", schema=schema, index_params=ip)
    texts = [f"a {COLOURS[i % 4]} thing number{i}" for i in range(8)]
    img = enc.encode_images([str(p) for p in images[:8]])
    txt = enc.encode_texts(texts)
    client.insert("theirs", [{"pk": i, "emb": img[i].tolist(), "temb": txt[i].tolist()} for i in range(8)])
    client.close()
    col = CIRCollection.open(uri, "theirs", encoder=enc,
                             schema={"vector_field": "emb", "id_field": "pk", "metric": "IP",
                                     "text_vector_field": "temb"})
    assert col.store.fields.text_vector_field == "temb" and col.store.fields.text_flag_field is None
    hits = col.search(text="a green thing number5", composer="text", k=8, targets=("text",))
    assert hits[0].id == 5 and len(hits) == 8  # no presence flag: every item counts as having text
    both = col.search(ref_id=2, text="make it red", k=4, targets=("image", "text"))
    assert len(both) == 4 and 2 not in {h.id for h in both}
    col.close()


def test_search_batch_takes_the_same_targets(mixed) -> None:  # type: ignore[no-untyped-def]
    col, ids = mixed
    texts = ["a red thing", "a blue thing", "make it green"]
    kw = {"targets": ("image", "text"), "ranker": "weighted", "ranker_weights": (0.4, 0.6)}
    batch = col.search_batch(None, texts, k=5, ref_ids=ids[:3], **kw)
    for i, t in enumerate(texts):
        assert [h.id for h in batch[i]] == [h.id for h in col.search(ref_id=ids[i], text=t, k=5, **kw)]
    assert [h.id for h in batch[0]] != [h.id for h in col.search_batch(None, texts, k=5, ref_ids=ids[:3])[0]]


def test_create_or_open_refuses_a_plain_collection_for_a_mixed_one(tmp_path: Path) -> None:
    pytest.importorskip("milvus_lite")
    from cir_milvus import RecipeMismatchError

    enc = FakeEncoder(dim=16, seed=1)
    CIRCollection.create(str(tmp_path / "o.db"), "o", encoder=enc).close()
    with pytest.raises(RecipeMismatchError, match="exists without an item-text field, but item_text=True"):
        CIRCollection.create(str(tmp_path / "o.db"), "o", encoder=enc, item_text=True, if_exists="open")


def test_a_text_mirror_is_not_a_collection_of_its_own(tmp_path: Path) -> None:
    """The existence check agrees with the listing (the rule is by name, so Lite shows it with collections named as
    mirrors; the 2.3.5 server's real mirrors: tests/server/test_mixed_mirror.py)."""
    pytest.importorskip("milvus_lite")
    from pymilvus import DataType, MilvusClient

    from cir_milvus import CollectionNotFoundError, VectorStore

    uri = str(tmp_path / "n.db")
    CIRCollection.create(uri, "shop", encoder=FakeEncoder(dim=8)).close()
    raw = MilvusClient(uri)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=8)
    for name in ("shop__cir_text", "gone__cir_text"):  # the mirror of "shop"; an orphan (no "gone")
        raw.create_collection(name, schema=schema)
    raw.close()
    db = connect(uri)
    assert db.list_collections() == ["gone__cir_text", "shop"]
    assert not db.has_collection("shop__cir_text") and not VectorStore.exists(uri, "shop__cir_text")
    assert db.has_collection("gone__cir_text") and db.has_collection("shop")
    said = "'shop__cir_text' at .* is the text mirror of the mixed gallery 'shop'.*open, search or drop 'shop'"
    with pytest.raises(CollectionNotFoundError, match=said):
        db.open_collection("shop__cir_text", encoder=FakeEncoder(dim=8))
    with pytest.raises(CollectionNotFoundError, match=said):
        db.drop_collection("shop__cir_text")
    db.drop_collection("shop__cir_text", missing_ok=True)  # counts as missing: left alone
    db.drop_collection("gone__cir_text")  # an orphan is an ordinary collection
    db.drop_collection("shop")
    raw = MilvusClient(uri)
    assert raw.list_collections() == ["shop__cir_text"]  # what is left once its gallery is gone: listed again
    raw.close()
    assert db.list_collections() == ["shop__cir_text"] and db.has_collection("shop__cir_text")
