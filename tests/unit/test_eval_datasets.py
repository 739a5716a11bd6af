"""Loaders of CIRR / FashionIQ / CIRCO on miniature copies in the official layouts (no network, no Milvus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cir_milvus.errors import ConfigError, DatasetError
from cir_milvus.eval import (
    FASHIONIQ_CATEGORIES,
    CIRCODataset,
    CIRRDataset,
    FashionIQDataset,
    GalleryImage,
    fashioniq_datasets,
    make_miniature,
)


@pytest.fixture(scope="module")
def cirr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_miniature("cirr", tmp_path_factory.mktemp("cirr"))


@pytest.fixture(scope="module")
def fiq_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_miniature("fashioniq", tmp_path_factory.mktemp("fiq"))


@pytest.fixture(scope="module")
def circo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_miniature("circo", tmp_path_factory.mktemp("circo"))


# ---------------------------------------------------------------------------------------------------------- CIRR


def test_cirr_val_queries_and_gallery(cirr_root: Path) -> None:
    ds = CIRRDataset(cirr_root, "val")
    assert ds.name == "cirr" and ds.remove_reference is True and ds.labeled
    queries = ds.queries()
    assert len(queries) == 4
    raw = json.loads((cirr_root / "cirr" / "captions" / "cap.rc2.val.json").read_text())
    for q, rec in zip(queries, raw, strict=True):
        assert q.query_id == str(rec["pairid"])
        assert q.reference_id == rec["reference"]
        assert q.captions == (rec["caption"],)
        assert q.target_ids == (rec["target_hard"],)
        assert q.subset_ids == tuple(rec["img_set"]["members"])
        assert q.reference_id in q.subset_ids and q.category is None
    corpus = ds.corpus()
    assert [g.id for g in corpus] == list(json.loads((cirr_root / "cirr/image_splits/split.rc2.val.json").read_text()))
    assert all(g.path.parent == cirr_root / "dev" for g in corpus)
    assert {g.path.suffix for g in corpus} == {".png", ".jpg"}  # .jpg found for a stem listed as .png


def test_cirr_test1_has_no_targets_and_test_alias(cirr_root: Path) -> None:
    ds = CIRRDataset(cirr_root, "test")
    assert ds.split == "test1"
    assert all(q.target_ids == () for q in ds.queries())
    assert not ds.labeled
    assert len(ds.corpus()) == 12


def test_cirr_bad_split() -> None:
    with pytest.raises(ConfigError, match="train"):
        CIRRDataset("/nowhere", "dev")


def test_cirr_missing_captions_names_path_and_source(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        CIRRDataset(tmp_path, "val")
    msg = str(err.value)
    assert str(tmp_path / "cirr" / "captions" / "cap.rc2.val.json") in msg
    assert "https://github.com/Cuberick-Orion/CIRR" in msg


def test_cirr_missing_split_file_names_path(tmp_path: Path) -> None:
    make_miniature("cirr", tmp_path)
    (tmp_path / "cirr" / "image_splits" / "split.rc2.val.json").unlink()
    with pytest.raises(DatasetError, match="split.rc2.val.json"):
        CIRRDataset(tmp_path, "val")


def test_cirr_missing_image_names_path(tmp_path: Path) -> None:
    make_miniature("cirr", tmp_path)
    victim = sorted((tmp_path / "dev").glob("*.png"))[0]
    victim.unlink()
    ds = CIRRDataset(tmp_path, "val")  # annotations still load; the gallery check fails
    with pytest.raises(DatasetError) as err:
        ds.corpus()
    assert str(victim) in str(err.value) and "1 gallery image" in str(err.value)


def test_cirr_malformed_entry(tmp_path: Path) -> None:
    make_miniature("cirr", tmp_path)
    path = tmp_path / "cirr" / "captions" / "cap.rc2.val.json"
    path.write_text(json.dumps([{"pairid": 1, "reference": "a", "caption": "c"}]))
    with pytest.raises(DatasetError, match="img_set"):
        CIRRDataset(tmp_path, "val").queries()
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        CIRRDataset(tmp_path, "val")


# ---------------------------------------------------------------------------------------------------- FashionIQ


def test_fashioniq_all_categories(fiq_root: Path) -> None:
    sets = fashioniq_datasets(fiq_root, "val")
    assert list(sets) == list(FASHIONIQ_CATEGORIES)
    for cat, ds in sets.items():
        assert ds.remove_reference is False and ds.category == cat
        queries = ds.queries()
        assert len(queries) == 3
        assert all(q.category == cat and len(q.captions) == 2 and len(q.target_ids) == 1 for q in queries)
        assert [q.query_id for q in queries] == [f"{cat}-0", f"{cat}-1", f"{cat}-2"]
        corpus = ds.corpus()
        assert len(corpus) == 8 and {g.path.suffix for g in corpus} == {".png", ".jpg"}
        assert {q.target_ids[0] for q in queries} <= {g.id for g in corpus}


def test_fashioniq_captions_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "captions").mkdir()
    (tmp_path / "image_splits").mkdir()
    (tmp_path / "captions" / "cap.shirt.val.json").write_text(json.dumps(
        [{"candidate": "B1", "target": "B2", "captions": ["is blue with long sleeves", "has a collar."]}]))
    (tmp_path / "image_splits" / "split.shirt.val.json").write_text(json.dumps(["B1", "B2"]))
    q = FashionIQDataset(tmp_path, "val", "shirt").queries()[0]
    assert q.captions == ("is blue with long sleeves", "has a collar.")
    assert (q.reference_id, q.target_ids, q.category) == ("B1", ("B2",), "shirt")


def test_fashioniq_test_split_without_targets(fiq_root: Path) -> None:
    ds = FashionIQDataset(fiq_root, "test", "toptee")
    assert all(q.target_ids == () for q in ds.queries())


def test_fashioniq_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="category"):
        FashionIQDataset("/nowhere", "val", "shoes")
    with pytest.raises(ConfigError, match="split"):
        FashionIQDataset("/nowhere", "dev", "dress")


def test_fashioniq_missing_files_name_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        FashionIQDataset(tmp_path, "val", "dress")
    assert str(tmp_path / "captions" / "cap.dress.val.json") in str(err.value)
    assert "https://github.com/XiaoxiaoGuo/fashion-iq" in str(err.value)
    make_miniature("fashioniq", tmp_path)
    (tmp_path / "image_splits" / "split.dress.val.json").unlink()
    with pytest.raises(DatasetError, match="split.dress.val.json"):
        FashionIQDataset(tmp_path, "val", "dress")


def test_fashioniq_missing_image_names_path(tmp_path: Path) -> None:
    make_miniature("fashioniq", tmp_path)
    name = json.loads((tmp_path / "image_splits" / "split.shirt.val.json").read_text())[0]
    for p in (tmp_path / "images").glob(f"{name}.*"):
        p.unlink()
    with pytest.raises(DatasetError, match=str(tmp_path / "images" / f"{name}.png")):
        FashionIQDataset(tmp_path, "val", "shirt").corpus()


# -------------------------------------------------------------------------------------------------------- CIRCO


def test_circo_val_queries_and_gallery(circo_root: Path) -> None:
    ds = CIRCODataset(circo_root, "val")
    assert ds.remove_reference is False
    raw = json.loads((circo_root / "annotations" / "val.json").read_text())
    queries = ds.queries()
    assert [len(q.target_ids) for q in queries] == [1, 3, 7]
    for q, rec in zip(queries, raw, strict=True):
        assert q.query_id == str(rec["id"]) and q.reference_id == str(rec["reference_img_id"])
        assert q.target_ids == tuple(str(x) for x in rec["gt_img_ids"])
        assert q.target_ids[0] == str(rec["target_img_id"])
        assert q.captions == (rec["relative_caption"],) and q.shared_concept == "a square"
    corpus = ds.corpus()
    assert len(corpus) == 16 and all(isinstance(g.id, str) and g.id.isdigit() for g in corpus)
    assert {g.path.suffix for g in corpus} == {".png", ".jpg"}
    assert {t for q in queries for t in q.target_ids} <= {g.id for g in corpus}


def test_circo_target_put_first(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "val.json").write_text(json.dumps([
        {"id": 0, "reference_img_id": 5, "target_img_id": 9, "relative_caption": "is red",
         "shared_concept": "a cat", "gt_img_ids": [3, 9, 4]}]))
    q = CIRCODataset(tmp_path, "val").queries()[0]
    assert q.target_ids == ("9", "3", "4") and q.reference_id == "5" and q.query_id == "0"


def test_circo_test_split(circo_root: Path) -> None:
    ds = CIRCODataset(circo_root, "test")
    assert [q.query_id for q in ds.queries()] == ["0", "1"]
    assert all(q.target_ids == () for q in ds.queries())


def test_circo_missing_files_name_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        CIRCODataset(tmp_path, "val")
    assert str(tmp_path / "annotations" / "val.json") in str(err.value)
    assert "https://github.com/miccunifi/CIRCO" in str(err.value)
    make_miniature("circo", tmp_path)
    info = tmp_path / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
    info.unlink()
    ds = CIRCODataset(tmp_path, "val")
    with pytest.raises(DatasetError, match=str(info)):
        ds.corpus()
    with pytest.raises(ConfigError):
        CIRCODataset(tmp_path, "train")


# ------------------------------------------------------------------------------------------------- shared bits


def test_corpus_is_lazy_and_open_reads(circo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = CIRCODataset(circo_root, "val")

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("image read while listing the gallery")

    with monkeypatch.context() as m:
        m.setattr(Image, "open", boom)
        corpus = ds.corpus()
    img = corpus[0].open()
    assert img.size == (8, 8) and img.mode == "RGB"


def test_gallery_image_open_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        GalleryImage("x", tmp_path / "x.png").open()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    from cir_milvus.errors import ImageDecodeError

    with pytest.raises(ImageDecodeError, match="bad.png"):
        GalleryImage("bad", bad).open()


def test_iter_corpus_and_ground_truth(cirr_root: Path) -> None:
    ds = CIRRDataset(cirr_root, "val")
    batches = list(ds.iter_corpus(5))
    assert [len(b) for b in batches] == [5, 5, 2]
    assert [g for b in batches for g in b] == ds.corpus()
    assert ds.ground_truth() == [q.target_ids for q in ds.queries()]
    with pytest.raises(ConfigError):
        list(ds.iter_corpus(0))


def test_miniature_is_deterministic_and_checks_kind(tmp_path: Path) -> None:
    a = make_miniature("circo", tmp_path / "a", seed=3)
    b = make_miniature("circo", tmp_path / "b", seed=3)
    assert (a / "annotations" / "val.json").read_text() == (b / "annotations" / "val.json").read_text()
    with pytest.raises(ConfigError, match="kind"):
        make_miniature("coco", tmp_path / "c")  # type: ignore[arg-type]
