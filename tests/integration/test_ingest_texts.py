"""Item texts (mixed galleries, issue 27) read by ``ingest()`` from Parquet and JSON Lines lists, by the Ray
pipeline and by ``cir-milvus ingest --text-column``, on Milvus Lite.

The reference for what ingest must store is ``col.add(images, texts=...)`` with the texts the list means (null, a
missing key and a blank string are all "no text"), plus the FakeEncoder's own text vector of each caption.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("milvus_lite")

from ingest_helpers import write_shard, write_synthetic_pngs  # noqa: E402

from cir_milvus import CIRCollection, CollectionNotFoundError, ConfigError, FakeEncoder, SkipKind  # noqa: E402
from cir_milvus.cli import main  # noqa: E402
from cir_milvus.ingest import IngestOptions, ingest  # noqa: E402
from cir_milvus.storage.policy import MAX_METADATA_BYTES  # noqa: E402

pytestmark = pytest.mark.integration
N = 8
# one caption per image: the list spells "no text" as null, a missing key, "" or blanks (column -> JSON Lines value)
CAPTIONS: list[Any] = ["a red kite", None, "", "a green boat", "   ", "a blue lamp", "missing", "a yellow drum"]
MEANT = [c if isinstance(c, str) and c.strip() and c != "missing" else None for c in CAPTIONS]


def _enc() -> FakeEncoder:
    return FakeEncoder(dim=16, seed=1)


def _unit(v: Any) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _write_lists(root: Path, paths: list[Path]) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"it{i}" for i in range(N)]
    parquet = root / "items.parquet"
    pq.write_table(pa.table({"id": ids, "path": [str(p) for p in paths],
                             "caption": [None if c == "missing" else c for c in CAPTIONS]}), parquet)
    jsonl = root / "items.jsonl"
    rows = []
    for i, (p, c) in enumerate(zip(paths, CAPTIONS)):
        row: dict[str, Any] = {"id": ids[i], "path": str(p)}
        if c != "missing":
            row["caption"] = c
        rows.append(row)
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"parquet": parquet, "jsonl": jsonl}


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, Path]]:
    pytest.importorskip("pyarrow")
    root = tmp_path_factory.mktemp("texts")
    paths = write_synthetic_pngs(root / "imgs", N)
    return paths, _write_lists(root, paths)


@pytest.fixture(scope="module")
def stored(lists: tuple[list[Path], dict[str, Path]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CIRCollection]]:
    """The same items stored three ways: ``add(texts=...)`` and ingest from each list."""
    paths, files = lists
    uri = str(tmp_path_factory.mktemp("texts-db") / "t.db")
    cols = {name: CIRCollection.create(uri, name, encoder=_enc(), index="FLAT", item_text=True)
            for name in ("add", *files)}
    added = cols["add"].add(paths, ids=[f"it{i}" for i in range(N)], texts=MEANT)
    for name, f in files.items():
        report = ingest(cols[name], f, workers=0, progress=False, options=IngestOptions(text_column="caption"))
        assert (report.stored, report.with_text) == (added.stored, added.with_text) == (N, 4)
    yield cols
    for c in cols.values():
        c.close()


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_list_text_columns_store_what_add_stores(stored: dict[str, CIRCollection], fmt: str) -> None:
    ids = [f"it{i}" for i in range(N)]
    got = stored[fmt].store.stored_text_vectors(ids)
    want = stored["add"].store.stored_text_vectors(ids)
    assert set(got) == set(ids)
    assert [i for i in ids if got[i] is None] == [i for i, t in zip(ids, MEANT) if t is None] == ["it1", "it2",
                                                                                                 "it4", "it6"]
    enc = _enc()
    for i, t in zip(ids, MEANT):
        if t is not None:
            np.testing.assert_allclose(_unit(got[i]), _unit(want[i]), atol=1e-5)
            np.testing.assert_allclose(_unit(got[i]), _unit(enc.encode_texts([t], normalize=False)[0]), atol=1e-5)
    assert stored[fmt].get_vectors(ids).keys() == set(ids)  # the images are stored too


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_text_search_finds_the_captioned_item_and_never_a_textless_one(stored: dict[str, CIRCollection],
                                                                       fmt: str) -> None:
    col = stored[fmt]
    for i, t in enumerate(MEANT):
        if t is not None:
            assert col.search(text=t, composer="text", k=1, targets=("text",))[0].id == f"it{i}"
    hits = {h.id for h in col.search(text="a red kite", composer="text", k=N, targets=("text",))}
    assert hits == {f"it{i}" for i, t in enumerate(MEANT) if t is not None}


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[CIRCollection]:
    col = CIRCollection.create(str(tmp_path / "e.db"), "e", encoder=_enc(), index="FLAT", item_text=True)
    yield col
    col.close()


def test_a_text_column_no_row_has_is_refused_before_anything_is_stored(
        lists: tuple[list[Path], dict[str, Path]], empty: CIRCollection, tmp_path: Path) -> None:
    paths, files = lists
    csv = tmp_path / "items.csv"
    csv.write_text("path,title\n" + "".join(f"{p},x\n" for p in paths))
    for f in (files["parquet"], files["jsonl"], csv):
        with pytest.raises(ConfigError, match=rf"{f.name} has no column 'captions' \(its columns: .*path"):
            ingest(empty, f, workers=0, progress=False, options=IngestOptions(text_column="captions"))
    with pytest.raises(ConfigError, match="a folder of images has no text column"):
        ingest(empty, paths[0].parent, workers=0, progress=False, options=IngestOptions(text_column="caption"))
    assert len(empty) == 0


def test_a_shard_key_no_sample_has_stores_items_without_text_and_says_so(
        lists: tuple[list[Path], dict[str, Path]], empty: CIRCollection, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    paths, _ = lists
    shard = write_shard(tmp_path / "s.tar", [(f"k{i}", {"title": f"thing {i}"} if i == 1 else {"n": i},
                                              paths[i].read_bytes()) for i in range(3)], caption=True)
    report = ingest(empty, str(shard), workers=0, progress=False, options=IngestOptions(text_column="titel"))
    assert (report.stored, report.with_text) == (3, 0)
    assert "none has an item text: no record had a text in 'titel'" in caplog.text
    assert "0 of the 3 stored rows have an item text; none does" in report.summary()
    assert set(empty.store.stored_text_vectors(["k0", "k1", "k2"]).values()) == {None}
    report = ingest(empty, str(shard), workers=0, progress=False, skip_existing=False,
                    options=IngestOptions(text_column="title"))
    assert (report.stored, report.with_text) == (3, 1)
    got = empty.store.stored_text_vectors(["k0", "k1", "k2"])
    assert [k for k, v in sorted(got.items()) if v is not None] == ["k1"]


def test_a_text_that_is_not_a_string_is_refused_naming_the_row(
        lists: tuple[list[Path], dict[str, Path]], empty: CIRCollection, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths, _ = lists
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text("".join(json.dumps({"path": str(p), "caption": 7 if i == 2 else f"thing {i}"}) + "\n"
                             for i, p in enumerate(paths[:4])))
    with pytest.raises(ConfigError, match=r"bad\.jsonl:3: the text column 'caption' holds a int \(7\), not a string"):
        ingest(empty, jsonl, workers=0, progress=False, options=IngestOptions(text_column="caption"))
    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"path": [str(p) for p in paths[:3]], "caption": [1, 2, 3]}), parquet)
    with pytest.raises(ConfigError, match=r"bad\.parquet: the text column 'caption' holds int64 values"):
        ingest(empty, parquet, workers=0, progress=False, options=IngestOptions(text_column="caption"))
    assert len(empty) == 0
    categorical = tmp_path / "cat.parquet"  # pandas writes a categorical column dictionary-encoded: still text
    pq.write_table(pa.table({"path": [str(p) for p in paths[:3]],
                             "caption": pa.array(["a red kite", None, "a red kite"]).dictionary_encode()}), categorical)
    report = ingest(empty, categorical, workers=0, progress=False, options=IngestOptions(text_column="caption"))
    assert (report.stored, report.with_text) == (3, 2)
    with pytest.raises(ConfigError, match=r"texts\[0\] must be a string or None"):  # add() draws the same line
        empty.add(paths[:1], texts=[7])


def test_cli_text_column_reads_parquet_and_jsonl_lists(lists: tuple[list[Path], dict[str, Path]], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, files = lists
    db = str(tmp_path / "cli.db")
    common = ["--uri", db, "--model", "fake", "--workers", "0", "--no-progress", "--text-column"]
    assert main(["ingest", "--list", str(files["jsonl"]), "--collection", "bad", *common, "captions"]) == 2
    assert "has no column 'captions'" in capsys.readouterr().err
    for fmt in ("parquet", "jsonl"):
        assert main(["ingest", "--list", str(files[fmt]), "--collection", fmt, *common, "caption"]) == 0
    capsys.readouterr()
    for fmt in ("parquet", "jsonl"):
        with CIRCollection.open(db, fmt, model="fake") as col:
            got = col.store.stored_text_vectors([f"it{i}" for i in range(N)])
            assert [i for i in sorted(got) if got[i] is None] == ["it1", "it2", "it4", "it6"]
    with CIRCollection.open(db, "parquet", model="fake") as col:
        assert col.search(text="a blue lamp", composer="text", k=1, targets=("text",))[0].id == "it5"
    with pytest.raises(CollectionNotFoundError):  # refused before the collection was created
        CIRCollection.open(db, "bad", model="fake")


def _same_rows(cols: dict[str, CIRCollection], n: int, textless: list[str], atol: float) -> None:
    """The Ray-ingested collection holds the local pipeline's rows: ids, image vectors, text vectors, has_text."""
    ids = sorted(cols["local"].iter_ids())
    assert sorted(cols["ray"].iter_ids()) == ids and len(ids) == n
    local, dist = (cols[m].store.stored_text_vectors(ids) for m in ("local", "ray"))
    assert [i for i in ids if dist[i] is None] == [i for i in ids if local[i] is None] == textless
    limg, dimg = (cols[m].get_vectors(ids) for m in ("local", "ray"))
    for i in ids:
        np.testing.assert_allclose(dimg[i], limg[i], rtol=atol, atol=atol)
        if local[i] is not None:
            np.testing.assert_allclose(dist[i], local[i], rtol=atol, atol=atol)


@pytest.mark.slow  # a local Ray instance (about a minute)
def test_ray_ingest_stores_the_same_texts_as_the_local_pipeline(lists: tuple[list[Path], dict[str, Path]],
                                                                tmp_path: Path) -> None:
    """FakeEncoder shipped to the actors (lists and shards with key.txt), and the demo model rebuilt from its recipe
    inside the actors (pixel decode tasks, the torch text tower)."""
    ray = pytest.importorskip("ray", reason="pip install 'cir_milvus[ray]'")
    from cir_milvus import EncoderSpec
    from cir_milvus.ingest import RayOptions

    paths, files = lists
    shard = write_shard(tmp_path / "s.tar", [(f"k{i}", {"n": i}, paths[i].read_bytes()) for i in range(3)],
                        caption=True)
    opts = IngestOptions(text_column="caption")
    fake = {m: CIRCollection.create(str(tmp_path / f"{m}.db"), "c", encoder=_enc(), index="FLAT", item_text=True)
            for m in ("local", "ray")}
    tiny = {m: CIRCollection.create(str(tmp_path / f"{m}.db"), "tiny", model="cir-demo-tiny", pretrained="cir-demo",
                                    encoder=EncoderSpec(device="cpu"), index="FLAT", item_text=True)
            for m in ("local", "ray")}
    for src in (files["jsonl"], str(shard)):
        ingest(fake["local"], src, workers=0, progress=False, options=opts)
    ingest(tiny["local"], files["parquet"], workers=0, progress=False, options=opts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_opts = RayOptions(encoder_factory=functools.partial(FakeEncoder, dim=16, seed=1), write="driver")
        reports = [ingest(fake["ray"], src, batch_size=4, progress=False, options=opts, ray=ray_opts)
                   for src in (files["jsonl"], str(shard))]
        reports.append(ingest(tiny["ray"], files["parquet"], batch_size=4, progress=False, options=opts,
                              ray=RayOptions(write="driver")))
    finally:
        ray.shutdown()
    assert [(r.stored, r.with_text) for r in reports] == [(N, 4), (3, 3), (N, 4)]
    textless = ["it1", "it2", "it4", "it6"]
    _same_rows(fake, N + 3, textless, 1e-5)
    _same_rows(tiny, N, textless, 1e-4)
    assert fake["ray"].search(text="caption of k1", composer="text", k=1, targets=("text",))[0].id == "k1"
    for c in (*fake.values(), *tiny.values()):
        c.close()


def _report(r: Any) -> tuple[Any, ...]:
    """Everything an ingest report says, but the time."""
    return (r.seen, r.stored, r.already_stored, r.duplicates, r.encoded, r.with_text, r.skipped_by_reason,
            list(r.ids), sorted((s.source, s.reason, str(s.id)) for s in r.skipped))


@pytest.mark.slow  # a local Ray instance (about a minute)
def test_ray_ingest_dedupes_and_resumes_like_the_local_pipeline(lists: tuple[list[Path], dict[str, Path]],
                                                                tmp_path: Path) -> None:
    """Inputs repeating an id with another caption (a list of files hashed on Ray; tar shards repeating a key, the
    first without a caption) store the first occurrence, as the local pipeline does; a tar sample whose key.json is
    over the store's metadata limit is skipped as bad metadata at admission, never encoded; a re-run of each finds
    every id already stored before encoding. The same reports (counts, kinds, ids, skips) and rows from both."""
    ray = pytest.importorskip("ray", reason="pip install 'cir_milvus[ray]'")
    from cir_milvus.ingest import RayOptions

    paths, _ = lists
    copy = tmp_path / "copy_of_0.png"
    copy.write_bytes(paths[0].read_bytes())
    listing = tmp_path / "dups.jsonl"  # no id column: content ids; 0 and its copy carry different captions
    rows = [(paths[0], "first caption"), (paths[1], None), (copy, "another caption"), (tmp_path / "gone.png", "x"),
            (paths[2], "third")]
    listing.write_text("".join(json.dumps({"path": str(p), **({"caption": c} if c else {})}) + "\n"
                               for p, c in rows))
    write_shard(tmp_path / "a.tar", [(f"k{i}", {"n": i}, paths[i].read_bytes()) for i in range(2)])
    write_shard(tmp_path / "b.tar", [("k1", {"n": 9}, paths[5].read_bytes()), ("k2", {"n": 2}, paths[2].read_bytes())],
                caption=True)  # k1 again: another image, with a caption
    # key.json that the store refuses (bad metadata): over its JSON limit; a typed int64 field that is not a number
    big = {"n": 3, "blob": "x" * (MAX_METADATA_BYTES + 1)}
    write_shard(tmp_path / "c.tar", [("k3", big, paths[3].read_bytes()), ("k4", {"n": 4}, paths[4].read_bytes()),
                                     ("k5", {"n": "five"}, paths[6].read_bytes())])
    spec = str(tmp_path / "{a,b,c}.tar")
    opts = IngestOptions(text_column="caption")
    cols = {m: {s: CIRCollection.create(str(tmp_path / f"{m}.db"), s, encoder=_enc(), index="FLAT", item_text=True,
                                        fields={"n": "int64"} if s == "shards" else None)
                for s in ("list", "shards")} for m in ("local", "ray")}
    local = [ingest(cols["local"][s], src, workers=0, batch_size=2, progress=False, options=opts)
             for _ in range(2) for s, src in (("list", listing), ("shards", spec))]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_opts = RayOptions(encoder_factory=functools.partial(FakeEncoder, dim=16, seed=1), write="driver")
        dist = [ingest(cols["ray"][s], src, batch_size=2, progress=False, options=opts, ray=ray_opts)
                for _ in range(2) for s, src in (("list", listing), ("shards", spec))]
    finally:
        ray.shutdown()
    assert [(r.stored, r.duplicates, r.already_stored, r.with_text) for r in local] == [
        (3, 1, 0, 2), (4, 1, 0, 1), (0, 1, 3, 0), (0, 1, 4, 0)]  # the first k1 has no caption
    for r in local[1::2]:  # k3 and k5 are refused at admission, never decoded or encoded, on every run
        assert r.encoded == r.stored and r.skipped_by_reason == {SkipKind.BAD_METADATA.value: 2}
        assert [(s.source, s.id, s.kind) for s in r.skipped] == [(f"c.tar#{k}", k, SkipKind.BAD_METADATA)
                                                                 for k in ("k3", "k5")]
        assert all(s.reason.startswith("bad metadata: ") for s in r.skipped) and r.ids[4] is r.ids[6] is None
    assert [_report(r) for r in dist] == [_report(r) for r in local]
    assert [[s.kind for s in r.skipped] for r in dist] == [[s.kind for s in r.skipped] for r in local]
    for s, n, textless in (("list", 3, [local[0].ids[1]]), ("shards", 4, ["k0", "k1", "k4"])):
        _same_rows({m: cols[m][s] for m in cols}, n, sorted(textless), 1e-5)
    for c in (c for m in cols.values() for c in m.values()):
        c.close()
