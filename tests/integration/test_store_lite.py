"""VectorStore on Milvus Lite: ids are values, true delete counts, the one write path shared by add / ingest,
the metadata policy, typed fields, group-by, metadata updates, failed opens that release the file."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_helpers import write_synthetic_pngs

pytest.importorskip("milvus_lite")

from cir_milvus import (  # noqa: E402
    CIRCollection,
    ConfigError,
    FakeEncoder,
    StorageError,
    VectorStore,
    connect,  # noqa: E402
)
from cir_milvus.ingest import RayOptions, ingest  # noqa: E402

pytestmark = pytest.mark.integration

# ids that must be stored, looked up and deleted as values (issue 14's payloads)
PAYLOAD_IDS = ["x'] or id not in ['", 'x"] or id not in ["', "it's", "back\\slash", "new\nline", "tab\there",
               "nul\x00byte", "uni-\u00e9\u4e2d", "plain"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_synthetic_pngs(tmp_path_factory.mktemp("imgs"), 12, seed=5)


def _vecs(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _store(tmp_path: Path, **kw: Any) -> VectorStore:
    return VectorStore.create(str(tmp_path / "s.db"), "s", dim=8, index="FLAT", **kw)


def test_payload_ids_store_look_up_and_delete_exactly_the_rows_they_name(tmp_path: Path) -> None:
    store = _store(tmp_path)
    others = [f"keep-{i}" for i in range(5)]
    ids = PAYLOAD_IDS + others
    wr = store.upsert(ids, _vecs(len(ids)))
    assert wr.written == ids and not wr.skipped
    assert len(store) == len(ids)
    assert store.existing_ids(PAYLOAD_IDS + ["absent"]) == set(PAYLOAD_IDS)
    assert [r["id"] for r in store.get(list(reversed(PAYLOAD_IDS)))] == list(reversed(PAYLOAD_IDS))
    for pid in PAYLOAD_IDS:
        assert store.delete([pid]) == 1, pid
        assert store.existing_ids(ids) == set(ids) - set(PAYLOAD_IDS[: PAYLOAD_IDS.index(pid) + 1])
    assert sorted(store.iter_ids()) == sorted(others)
    assert store.delete(["x'] or id not in ['"]) == 0 and len(store) == len(others)


def test_delete_returns_the_true_count(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.upsert([f"r{i}" for i in range(10)], _vecs(10), metadata=[{"n": i} for i in range(10)])
    assert store.delete(["r0", "r1", "nope"]) == 2
    assert store.delete(["r0"]) == 0
    assert store.delete(filter='metadata["n"] >= {lo}', filter_params={"lo": 7}) == 3
    assert len(store) == 5
    with pytest.raises(ConfigError):
        store.delete("r2")  # a bare string is not a list of ids


def test_one_bad_record_never_costs_another(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cyc: dict[str, Any] = {"a": 1}
    cyc["self"] = cyc
    ids = ["ok-1", "é" * 300, "ok-2", "", "ok-3", "ok-4", "ok-5"]  # 600 bytes: over the 512-byte id limit
    mds: list[Any] = [{"price": np.float32(2.5), "n": np.int64(3)}, {}, {"bad": math.nan, "inf": math.inf},
                      {}, cyc, {"s": "lone \udc80 surrogate"}, {"deep": [np.arange(3)]}]
    wr = store.upsert(ids, _vecs(len(ids)), metadata=mds)
    assert wr.written == ["ok-1", "ok-2", "ok-4", "ok-5"]
    reasons = {i: sk.reason for i, sk in wr.skipped}
    assert "600 bytes" in reasons[1] and "non-empty" in reasons[3] and "cycle" in reasons[4]
    assert 5 not in reasons, "a lone surrogate is replaced, not refused"
    rows = {r["id"]: r["metadata"] for r in store.get(wr.written)}
    assert rows["ok-1"] == {"price": 2.5, "n": 3}
    assert rows["ok-2"] == {"bad": None, "inf": None}
    assert rows["ok-5"] == {"deep": [[0, 1, 2]]}


def test_refused_chunk_is_bisected_to_the_bad_row(tmp_path: Path) -> None:
    class Picky:
        """Delegates to a real client but refuses (permanently) any upsert containing the row 'poison'."""

        def __init__(self, real: Any) -> None:
            self.real, self.calls = real, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def upsert(self, name: str, rows: list[dict[str, Any]]) -> Any:
            self.calls += 1
            if any(r["id"] == "poison" for r in rows):
                from pymilvus.exceptions import ParamError

                raise ParamError(message="value of field 'id' is invalid")
            return self.real.upsert(name, rows)

    from cir_milvus.storage.client import connect, disconnect

    _store(tmp_path).close()
    real = connect(str(tmp_path / "s.db"))
    picky = Picky(real)
    store = VectorStore.open(picky, "s")  # an injected client: the store writes through the fault injector
    ids = [f"g{i}" for i in range(7)] + ["poison"] + [f"h{i}" for i in range(8)]
    wr = store.upsert(ids, _vecs(len(ids)))
    assert [i for i, _ in wr.skipped] == [7] and "refused by Milvus" in wr.skipped[0][1].reason
    assert sorted(wr.written) == sorted(set(ids) - {"poison"}) and len(store) == 15
    assert picky.calls <= 1 + 2 * math.ceil(math.log2(16)), "bisection, not one call per row"
    disconnect(real, str(tmp_path / "s.db"))


def test_add_three_times_the_same_image_reports_truthfully(tmp_path: Path, images: list[Path]) -> None:
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8))
    res = col.add([images[0], images[1], images[0], images[0]], metadata=[{"v": 1}, {"v": 2}, {"v": 3}, {"v": 4}])
    assert res.stored == 2 and res.duplicates == 2 and len(col) == 2
    assert res[0] == res[2] == res[3] != res[1], "returned ids line up with the inputs"
    assert col.get([res[0]])[0]["metadata"] == {"v": 1}, "the first occurrence is stored"
    assert "duplicates in the input 2" in res.summary()


def test_add_and_ingest_agree_on_ids_counts_metadata_and_skips(tmp_path: Path, images: list[Path]) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(images[0].read_bytes()[:50])
    fifo = tmp_path / "fifo.png"
    import os

    os.mkfifo(fifo)
    (tmp_path / "dir.png").mkdir()
    cyc: dict[str, Any] = {}
    cyc["c"] = cyc
    inputs = [images[0], images[1], bad, images[0], tmp_path / "missing.png", fifo, tmp_path / "dir.png",
              images[2], images[3]]
    mds: list[dict[str, Any]] = [{"p": np.int64(1)}, {"x": math.nan}, {}, {}, {}, {}, {}, cyc, {"ok": True}]

    a = CIRCollection.create(str(tmp_path / "a.db"), "c", encoder=FakeEncoder(dim=8))
    t0 = time.monotonic()
    res = a.add(inputs, metadata=mds)
    assert time.monotonic() - t0 < 60, "a FIFO must not block add()"
    b = CIRCollection.create(str(tmp_path / "b.db"), "c", encoder=FakeEncoder(dim=8))
    rep = ingest(b, [(None, str(p), m) for p, m in zip(inputs, mds)], workers=0, progress=False)

    assert (res.stored, res.already_stored, res.duplicates, len(res.skipped)) == \
        (rep.stored, rep.already_stored, rep.duplicates, len(rep.skipped)) == (3, 0, 1, 5)
    assert sorted(a.iter_ids()) == sorted(b.iter_ids())
    ids = sorted(a.iter_ids())
    assert {r["id"]: r["metadata"] for r in a.get(ids)} == {r["id"]: r["metadata"] for r in b.get(ids)}
    assert a.get([res[0]])[0]["metadata"] == {"p": 1} and a.get([res[1]])[0]["metadata"] == {"x": None}

    def kinds(skipped: list[Any]) -> list[tuple[str, str]]:
        return sorted((Path(s.source.split(" (")[0]).name, s.kind.value) for s in skipped)

    assert kinds(res.skipped) == kinds(rep.skipped)
    assert dict(kinds(res.skipped)) == {"broken.png": "corrupt", "missing.png": "missing", "fifo.png": "not_a_file",
                                        "dir.png": "not_a_file", images[2].name: "bad_metadata"}
    assert [i is None for i in res] == [False, False, True, False, True, True, True, True, False]


def test_typed_fields_group_by_update_and_in_filters(tmp_path: Path) -> None:
    store = _store(tmp_path, fields={"price": "double", "product": ("varchar", 32), "year": "int64"})
    v = _vecs(6)
    mds = [{"price": 5, "product": "p1", "year": 2020, "colour": "red"},
           {"price": "12.5", "product": "p1", "year": 2021, "colour": "blue"},  # a CSV string converts
           {"price": 30.0, "product": "p2", "year": 2022, "colour": "red"},
           {"price": 8, "product": "p2", "year": 2023, "colour": "green"},
           {"price": 50, "product": "p3", "year": 2024, "colour": "blue"},
           {"price": "cheap", "product": "p3", "year": 2024}]  # not a number: skipped
    wr = store.upsert([f"i{i}" for i in range(6)], v, metadata=mds)
    assert len(wr.written) == 5 and "number" in wr.skipped[0][1].reason
    cheap = store.query("price < {p}", {"p": 20}, limit=10)
    assert sorted(r["id"] for r in cheap) == ["i0", "i1", "i3"]
    assert {r["id"]: r["metadata"]["price"] for r in cheap}["i1"] == 12.5
    got = store.query('metadata["colour"] in {cs}', {"cs": ["red", "green"]}, limit=10)
    assert sorted(r["id"] for r in got) == ["i0", "i2", "i3"]
    got = store.query("product in {ps}", {"ps": ["p2"]}, limit=10)
    assert sorted(r["id"] for r in got) == ["i2", "i3"]
    hits = store.search_vectors(v[:1], k=3, group_by="product")[0]
    assert len(hits) == 3 and len({h.metadata["product"] for h in hits}) == 3
    ungrouped = store.search_vectors(v[:1], k=5)[0]
    assert len({h.metadata["product"] for h in ungrouped}) < 5
    with pytest.raises(ConfigError, match="typed scalar field"):
        store.search_vectors(v[:1], k=3, group_by="colour")
    before = store.vectors(["i0"])["i0"]
    up = store.update_metadata(["i0", "nope"], {"price": 99, "colour": "black"})
    assert up.written == ["i0"] and up.skipped[0][1].reason == "not stored"
    row = store.get(["i0"])[0]
    assert row["metadata"]["price"] == 99 and row["metadata"]["colour"] == "black" and row["metadata"]["year"] == 2020
    assert np.allclose(store.vectors(["i0"])["i0"], before, atol=1e-5), "an update keeps the stored vector"
    table = store.search_vectors(v[:1], k=3)[0]
    df = table.to_pandas()
    assert list(df.columns[:3]) == ["id", "score", "source"] and df["price"].dtype.kind == "f"
    assert table.to_arrow().num_rows == 3


def test_update_metadata_through_the_facade_does_not_re_encode(tmp_path: Path, images: list[Path]) -> None:
    class Counting(FakeEncoder):
        calls = 0

        def encode_images(self, *a: Any, **k: Any) -> np.ndarray:
            Counting.calls += 1
            return super().encode_images(*a, **k)

    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=Counting(dim=8),
                               fields={"price": "double", "product": "varchar"})
    ids = col.add(images[:3], metadata=[{"price": 10, "product": "a"}, {"price": 20, "product": "a"},
                                        {"price": 30, "product": "b"}])
    grouped = col.search(images[0], "x", k=3, composer="image", group_by="product", exclude_reference=False)
    assert [h.id for h in grouped] == [ids[0], ids[2]]  # one hit per product: the best of "a", then "b"
    with pytest.raises(ConfigError, match="integer, string or bool"):
        col.search(images[0], "x", k=3, composer="image", group_by="price")
    calls = Counting.calls
    assert col.update_metadata([ids[1]], {"price": 5}).written == [ids[1]]
    assert Counting.calls == calls
    assert [h.id for h in col.search_vectors(np.ones((1, 8), np.float32), k=3, filter="price < 15")[0]] and \
        sorted(r["id"] for r in col.query("price < {p}", {"p": 15}, limit=5)) == sorted([ids[0], ids[1]])


def test_reference_is_excluded_by_stored_id_whatever_the_id_scheme(tmp_path: Path, images: list[Path]) -> None:
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8))
    col.add(images[:6], ids=[f"sku-{i}" for i in range(6)])
    hits = col.search(images[2], "anything", k=6, composer="image")
    assert "sku-2" not in [h.id for h in hits] and len(hits) == 5
    assert col.search(images[2], "x", k=1, composer="image", exclude_reference=False)[0].id == "sku-2"


def test_query_checks(tmp_path: Path, images: list[Path]) -> None:
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8))
    col.add(images[:3], metadata=[{"t": "a\x00b"}, {"t": "x"}, {"t": "y"}])
    for bad_k in (True, 1.5, 0, "3"):
        with pytest.raises(ConfigError, match="k must"):
            col.search(images[0], "x", k=bad_k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="composer"):
        col.search(images[0], "x", composer="")
    with pytest.raises(ConfigError, match="NaN"):
        col.search_vectors(np.full((1, 8), np.nan, np.float32))
    hits = col.search(images[1], "x", k=3, composer="image", filter='metadata["t"] == {t}',
                      filter_params={"t": "a\x00b"}, exclude_reference=False)
    assert [h.metadata["t"] for h in hits] == ["a\x00b"]


def test_overwrite_with_a_bad_index_keeps_the_old_collection(tmp_path: Path, images: list[Path]) -> None:
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8))
    col.add(images[:4])
    col.close()
    with pytest.raises(ConfigError, match="index"):
        CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8), if_exists="overwrite", index="BAD")
    with pytest.raises(ConfigError, match="fields"):
        CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8), if_exists="overwrite",
                             fields={"price": "money"})
    again = CIRCollection.open(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8))
    assert len(again) == 4


def _can_open_in_another_process(db: Path) -> bool:
    code = textwrap.dedent(f"""
        from pymilvus import MilvusClient
        c = MilvusClient({str(db)!r})
        print(sorted(c.list_collections()))
        c.close()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return proc.returncode == 0


def test_failed_open_and_create_release_the_lite_file(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    CIRCollection.create(str(db), "c", encoder=FakeEncoder(dim=8)).close()
    with pytest.raises(StorageError):
        CIRCollection.open(str(db), "missing", encoder=FakeEncoder(dim=8))
    with pytest.raises(ConfigError):
        CIRCollection.open(str(db), "c", encoder=FakeEncoder(dim=16))  # recipe mismatch
    with pytest.raises(ConfigError):
        CIRCollection.create(str(db), "c", encoder=FakeEncoder(dim=8))  # exists
    assert _can_open_in_another_process(db)


def test_unreachable_server_fails_fast() -> None:
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="could not connect"):
        CIRCollection.open(connect("http://127.0.0.1:9", timeout=3), "c", encoder=FakeEncoder(dim=8))
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_typed_fields_from_csv_and_parquet_filter_numerically(tmp_path: Path, images: list[Path], fmt: str) -> None:
    rows = [{"path": str(p), "id": f"00{i}", "price": [5, 12.5, 30, 19.99, 50, 7][i], "year": 2020 + i,
             "brand": ["acme", "zeta"][i % 2]} for i, p in enumerate(images[:6])]
    lst = tmp_path / f"items.{fmt}"
    if fmt == "csv":
        import csv

        with lst.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), lst)
    from cir_milvus.ingest import ListSource

    fields = ListSource(lst).field_types()
    assert fields == {"price": "double", "year": "int64", "brand": "varchar"}
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8), fields=fields)
    rep = ingest(col, str(lst), workers=0, progress=False)
    assert rep.stored == 6
    assert sorted(r["id"] for r in col.query("price < {p}", {"p": 20}, limit=10)) == ["000", "001", "003", "005"]
    assert sorted(r["id"] for r in col.query("year >= 2024", limit=10)) == ["004", "005"]  # ids stay strings


def test_partition_key_and_ray_refuses_local_options(tmp_path: Path) -> None:
    store = _store(tmp_path, fields={"tenant": ("varchar", 32)}, partition_key="tenant")
    store.upsert([f"r{i}" for i in range(6)], _vecs(6), metadata=[{"tenant": f"t{i % 2}"} for i in range(6)])
    hits = store.search_vectors(_vecs(1, seed=9), k=6, filter="tenant == {t}", filter_params={"t": "t1"})[0]
    assert sorted(h.id for h in hits) == ["r1", "r3", "r5"]
    with pytest.raises(ConfigError, match="partition_key"):
        _store(tmp_path / "x", fields={"n": "double"}, partition_key="n")
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8))
    with pytest.raises(ConfigError, match="workers="):
        ingest(col, [], workers=4, ray=RayOptions(address="local"))


def test_non_utf8_file_names_are_stored_and_reported_in_valid_utf8(tmp_path: Path, images: list[Path]) -> None:
    import json
    import os

    good = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"))
    good.write_bytes(images[0].read_bytes())
    broken = Path(os.fsdecode(bytes(tmp_path) + b"/br\xffoken.png"))
    broken.write_bytes(b"not an image")
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=8))
    res = col.add([good, broken])
    assert res.stored == 1 and col.get([res[0]])[0]["source"].endswith("caf\\xe9.png")
    assert res.skipped[0].source.endswith("br\\xffoken.png")
    report = tmp_path / "skips.jsonl"
    col2 = CIRCollection.create(str(tmp_path / "d.db"), "c", encoder=FakeEncoder(dim=8))
    rep = ingest(col2, [str(good), str(broken)], workers=0, progress=False, skip_report=report)
    assert rep.stored == 1 and len(rep.skipped) == 1
    line = json.loads(report.read_text(encoding="utf-8"))
    assert line["source"].endswith("br\\xffoken.png") and line["kind"] == "not_an_image"
