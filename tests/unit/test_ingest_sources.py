"""Ingestion sources: folders, CSV / JSON Lines / Parquet lists, WebDataset tar shards, brace expansion, URLs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ingest_helpers import write_shard
from PIL import Image

from cir_milvus.errors import ConfigError, DatasetError
from cir_milvus.images import read_bytes
from cir_milvus.ingest.sources import (
    FolderSource,
    ListSource,
    Record,
    ShardSource,
    expand_shards,
    open_source,
)


def _png(colour: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_source_is_sorted_recursive_and_filters_suffixes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.JPG", "sub/c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    src = FolderSource(tmp_path)
    recs = [r for r in src if r.error is None]
    assert len(src) == 4  # notes.txt is reported, not dropped
    assert [r.metadata["path"] for r in recs] == ["a.JPG", "b.png", "sub/c.webp"]
    assert all(r.id is None and isinstance(r.source, str) for r in recs)
    assert [p.name for p in src.files()] == ["a.JPG", "b.png", "c.webp"]
    (other,) = [r for r in src if r.error is not None]
    assert other.metadata["path"] == "notes.txt" and other.source is None and "'.txt'" in other.error
    with pytest.raises(ConfigError, match="not a folder"):
        FolderSource(tmp_path / "missing")


def test_csv_list_with_ids_metadata_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text(
        'id,path,brand,metadata\n'
        'p1,img/a.jpg,acme,"{""price"": 3}"\n'
        ',/abs/b.jpg,other,\n'
    )
    src = ListSource(tmp_path / "list.csv")
    assert len(src) == 2
    a, b = list(src)
    assert a.id == "p1" and a.source == str(tmp_path / "img/a.jpg")
    assert a.metadata == {"brand": "acme", "price": 3}
    assert b.id is None and b.source == "/abs/b.jpg" and b.metadata == {"brand": "other"}
    assert "list.csv:1" in a.origin
    other_root = ListSource(tmp_path / "list.csv", root="/data")
    assert next(iter(other_root)).source == "/data/img/a.jpg"


def test_jsonl_list_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    p.write_text('{"image": "x.png", "key": "k1", "metadata": {"a": 1}, "b": [1, 2]}\n\n{"image": ""}\n')
    recs = list(ListSource(p))
    assert recs[0] == Record("k1", str(tmp_path / "x.png"), {"a": 1, "b": [1, 2]}, recs[0].origin)
    assert recs[1].error is not None and "no 'image'" in recs[1].error
    p.write_text('{"nopath": 1}\n')
    with pytest.raises(DatasetError, match="no path column"):
        list(ListSource(p))
    p.write_text("not json\n")
    with pytest.raises(DatasetError, match="not valid JSON"):
        list(ListSource(p))
    with pytest.raises(DatasetError, match="does not exist"):
        ListSource(tmp_path / "none.csv")


def test_parquet_list(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": ["a", "b"], "path": ["1.png", "2.png"], "score": [0.5, 1.5]})
    pq.write_table(table, tmp_path / "l.parquet")
    src = open_source(tmp_path / "l.parquet")
    assert isinstance(src, ListSource) and len(src) == 2
    assert [(r.id, Path(str(r.source)).name, r.metadata) for r in src] == [
        ("a", "1.png", {"score": 0.5}), ("b", "2.png", {"score": 1.5})]


def test_urls_are_refused_unless_allowed(tmp_path: Path) -> None:
    p = tmp_path / "urls.csv"
    p.write_text("path\nhttps://example.com/a.jpg\n")
    with pytest.raises(ConfigError, match="allow_urls"):
        list(ListSource(p))
    assert next(iter(ListSource(p, allow_urls=True))).source == "https://example.com/a.jpg"
    with pytest.raises(ConfigError, match="allow_urls"):
        list(open_source(["http://example.com/x.png"]))
    with pytest.raises(ConfigError, match="allow_urls"):
        open_source("https://example.com/list.csv")
    with pytest.raises(ConfigError, match="allow_urls"):
        read_bytes("http://example.com/x.png")


def test_brace_and_glob_expansion(tmp_path: Path) -> None:
    assert expand_shards("d/{00000..00002}.tar") == ["d/00000.tar", "d/00001.tar", "d/00002.tar"]
    assert expand_shards("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    for n in ("x1.tar", "x0.tar"):
        (tmp_path / n).write_bytes(b"")
    assert expand_shards(str(tmp_path / "x*.tar")) == [str(tmp_path / "x0.tar"), str(tmp_path / "x1.tar")]
    with pytest.raises(ConfigError, match="no shards"):
        expand_shards(str(tmp_path / "none*.tar"))


def test_webdataset_shards_keys_metadata_and_missing_images(tmp_path: Path) -> None:
    s0 = write_shard(tmp_path / "00000.tar", [("000000000", {"url": "u0", "caption": "c0"}, _png()),
                                              ("000000001", {"url": "u1"}, None)], caption=True)
    s1 = write_shard(tmp_path / "00001.tar", [("000010000", None, _png((0, 0, 255)))])
    src = open_source(str(tmp_path / "{00000..00001}.tar"))
    assert isinstance(src, ShardSource) and src.shards == [str(s0), str(s1)]
    recs = list(src)
    assert [r.id for r in recs] == ["000000000", "000000001", "000010000"]
    assert recs[0].metadata == {"url": "u0", "caption": "c0", "shard": "00000.tar"}
    assert isinstance(recs[0].source, bytes) and recs[0].source.startswith(b"\x89PNG")
    assert recs[0].origin == "00000.tar#000000000"
    assert recs[1].source is None and "no image" in str(recs[1].error)
    assert recs[1].metadata["caption"] == "caption of 000000001", "the .txt caption is used when the json has none"
    assert recs[2].metadata == {"shard": "00001.tar"}


def test_truncated_shard_reports_and_keeps_earlier_samples(tmp_path: Path) -> None:
    full = write_shard(tmp_path / "full.tar", [(f"{i:09d}", {"i": i}, _png()) for i in range(4)])
    data = full.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    recs = list(ShardSource(str(cut)))
    good = [r for r in recs if r.error is None]
    assert 1 <= len(good) < 4
    assert any(r.error and "shard" in r.error for r in recs)
    with pytest.raises(DatasetError, match="does not exist"):
        ShardSource(str(tmp_path / "missing.tar"))


def test_open_source_dispatch(tmp_path: Path) -> None:
    assert isinstance(open_source(tmp_path), FolderSource)
    recs = list(open_source([str(tmp_path / "a.png"), b"\x89PNG", ("id1", tmp_path / "b.png", {"k": 1})]))
    assert recs[0].source == str(tmp_path / "a.png") and recs[1].source == b"\x89PNG"
    assert recs[2].id == "id1" and recs[2].metadata == {"k": 1}
    with pytest.raises(ConfigError):
        open_source(str(tmp_path / "file.unknown"))
    with pytest.raises(ConfigError, match="cannot ingest"):
        list(open_source([3.5]))


# -- folder entries that are not stored are reported --------------------------------------------------------------


def test_folder_reports_every_entry_it_does_not_store(tmp_path: Path) -> None:
    import os
    import socket

    (tmp_path / "good.png").write_bytes(_png())
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path)  # a loop through a folder above
    (tmp_path / "dir.jpg").mkdir()
    (tmp_path / "dir.jpg" / "inner.png").write_bytes(_png((0, 0, 255)))
    os.mkfifo(tmp_path / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.png"))
    (tmp_path / "readme.md").write_text("hi")
    try:
        recs = list(FolderSource(tmp_path))
    finally:
        sock.close()
    by_path = {r.metadata["path"]: r for r in recs}
    assert sorted(p for p, r in by_path.items() if r.error is None) == ["dir.jpg/inner.png", "good.png"]
    kinds = {p: r.kind.value for p, r in by_path.items() if r.error is not None}
    assert kinds == {"broken.jpg": "broken_symlink", "self.jpg": "symlink_loop", "sub/up": "symlink_loop",
                     "dir.jpg": "not_a_file", "pipe.jpg": "not_a_file", "sock.png": "not_a_file",
                     "readme.md": "unsupported_format"}
    assert "FIFO" in by_path["pipe.jpg"].error and "socket" in by_path["sock.png"].error
    assert "gone.jpg" in by_path["broken.jpg"].error


def test_folder_avif_and_jpeg2000_stored_or_reported_by_codec(tmp_path: Path) -> None:
    from PIL import features

    for name in ("a.avif", "b.jp2"):
        (tmp_path / name).write_bytes(b"whatever")
    recs = {r.metadata["path"]: r for r in FolderSource(tmp_path)}
    for name, feature in (("a.avif", "avif"), ("b.jp2", "jpg_2000")):
        if features.check(feature):
            assert recs[name].error is None
        else:
            assert "unsupported format" in (recs[name].error or "")


def test_folder_non_utf8_names_are_kept_and_spelled_in_utf8(tmp_path: Path) -> None:
    import json
    import os

    from cir_milvus.images import text_path

    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    with open(raw, "wb") as f:
        f.write(_png())
    (rec,) = list(FolderSource(tmp_path))
    assert rec.error is None
    assert os.fsencode(rec.source) == raw  # the real name, openable
    assert read_bytes(rec.source) == _png()
    assert rec.metadata["path"] == "caf\\xe9.png"
    json.dumps(rec.metadata, ensure_ascii=False).encode("utf-8")  # valid UTF-8 throughout
    rec.origin.encode("utf-8")
    assert os.fsencode(text_path(rec.origin)) == raw
