"""Opening a collection with an encoder of another kind re-encodes a few stored items (cir_milvus.collection.verify).

A torch-built collection records no bundle id, so a bundle whose weights were changed and whose manifest was
rewritten to match passes every checksum; only re-encoding stored sources tells it from the genuine bundle.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("milvus_lite")

from bundle_helpers import swap_weights_and_rewrite_manifest  # noqa: E402

from cir_milvus import CIRCollection  # noqa: E402
from cir_milvus.collection.verify import needs_reencode  # noqa: E402
from cir_milvus.encoders.ort import OrtEncoder  # noqa: E402
from cir_milvus.errors import RecipeMismatchError  # noqa: E402


@pytest.fixture
def torch_built(tiny_torch_encoder, tmp_path: Path, make_image) -> tuple[str, list[Path]]:  # type: ignore[no-untyped-def]
    """A Lite collection built by the torch demo architecture from 6 image files (their paths are its sources)."""
    paths = []
    for i in range(6):
        p = tmp_path / "images" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        make_image(40 + 8 * i, 32, seed=i).save(p)
        paths.append(p)
    uri = str(tmp_path / "cir.db")
    with CIRCollection.create(uri, "items", encoder=tiny_torch_encoder) as col:
        assert col.add([str(p) for p in paths]).stored == 6
    return uri, paths


def test_tampered_bundle_is_refused_and_the_genuine_one_opens(torch_built, tiny_bundles, tiny_torch_encoder,
                                                             tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    uri, paths = torch_built
    genuine = tiny_bundles.get(fused=False)
    tampered = tiny_bundles.copy(tmp_path / "tampered", fused=False)
    swap_weights_and_rewrite_manifest(tampered)
    enc = OrtEncoder(tampered)  # the bundle's own checks pass: its manifest matches its files
    assert enc.recipe["weights_sha256"] == tiny_torch_encoder.recipe["weights_sha256"]  # and it claims the weights

    with pytest.raises(RecipeMismatchError, match="collection 'items' was not encoded by this encoder's weights"):
        CIRCollection.open(uri, "items", encoder=enc)

    with caplog.at_level(logging.INFO, logger="cir_milvus.collection.verify"):
        col = CIRCollection.open(uri, "items", encoder=OrtEncoder(genuine))
    assert "re-encode with the onnx encoder" in caplog.text
    with col:
        q = tiny_torch_encoder.encode_images([str(paths[3])])
        assert col.search_vectors(q, k=1)[0][0].source == str(paths[3])

    # create(if_exists="open") is an open: the same check
    with pytest.raises(RecipeMismatchError, match="not encoded by this encoder's weights"):
        CIRCollection.create(uri, "items", encoder=enc, if_exists="open")


def test_without_readable_sources_the_open_warns_that_nothing_was_checked(torch_built, tiny_bundles, tmp_path: Path,
                                                                         caplog) -> None:  # type: ignore[no-untyped-def]
    uri, paths = torch_built
    tampered = tiny_bundles.copy(tmp_path / "tampered", fused=False)
    swap_weights_and_rewrite_manifest(tampered)
    for p in paths:
        p.unlink()
    with caplog.at_level(logging.WARNING, logger="cir_milvus.collection.verify"):
        CIRCollection.open(uri, "items", encoder=OrtEncoder(tampered)).close()
    assert "no stored item's source is a readable file here" in caplog.text
    assert "could not be checked" in caplog.text


def _relative_build(tiny_torch_encoder, make_image, writer_dir: Path, db: Path) -> None:  # type: ignore[no-untyped-def]
    """A collection whose stored sources are relative paths (``images/i.png``), added from ``writer_dir``."""
    (writer_dir / "images").mkdir(parents=True)
    for i in range(4):
        make_image(40 + 8 * i, 32, seed=i).save(writer_dir / "images" / f"{i}.png")
    cwd = os.getcwd()
    os.chdir(writer_dir)
    try:
        with CIRCollection.create(str(db), "items", encoder=tiny_torch_encoder) as col:
            assert col.add([f"images/{i}.png" for i in range(4)]).stored == 4
            assert {r["source"] for r in col.store.query("", output_fields=["source"], limit=10)} == {
                f"images/{i}.png" for i in range(4)}
    finally:
        os.chdir(cwd)


def test_relative_sources_are_found_from_another_working_folder(tiny_torch_encoder, tiny_bundles, make_image,
                                                                tmp_path: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """Added next to the Lite file, opened from elsewhere: the sources are found in the Lite file's folder, so a
    tampered bundle is still refused and the genuine one verified."""
    _relative_build(tiny_torch_encoder, make_image, tmp_path / "project", tmp_path / "project" / "cir.db")
    tampered = tiny_bundles.copy(tmp_path / "tampered", fused=False)
    swap_weights_and_rewrite_manifest(tampered)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = str(tmp_path / "project" / "cir.db")
    with pytest.raises(RecipeMismatchError, match="not encoded by this encoder's weights"):
        CIRCollection.open(uri, "items", encoder=OrtEncoder(tampered))
    with caplog.at_level(logging.INFO, logger="cir_milvus.collection.verify"):
        CIRCollection.open(uri, "items", encoder=OrtEncoder(tiny_bundles.get(fused=False))).close()
    assert "4 stored item(s) re-encode with the onnx encoder" in caplog.text


def test_relative_sources_elsewhere_are_found_through_search_path(tiny_torch_encoder, tiny_bundles, make_image,
                                                                  tmp_path: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """Added from a folder that is neither the Lite file's nor the working one: the warning names the folders it
    tried and says what to do; ``search_path=`` naming the writer's folder verifies (and refuses the tampered)."""
    writer, db = tmp_path / "photos", tmp_path / "dbs" / "cir.db"
    db.parent.mkdir()
    _relative_build(tiny_torch_encoder, make_image, writer, db)
    tampered = tiny_bundles.copy(tmp_path / "tampered", fused=False)
    swap_weights_and_rewrite_manifest(tampered)
    monkeypatch.chdir(db.parent)
    with caplog.at_level(logging.WARNING, logger="cir_milvus.collection.verify"):
        CIRCollection.open(str(db), "items", encoder=OrtEncoder(tampered)).close()
    assert "could not be checked" in caplog.text and str(db.parent) in caplog.text
    assert "search_path=" in caplog.text
    with pytest.raises(RecipeMismatchError, match="not encoded by this encoder's weights"):
        CIRCollection.open(str(db), "items", encoder=OrtEncoder(tampered), search_path=[str(writer)])


def test_the_encoder_that_built_it_is_not_re_encoded(torch_built, tiny_torch_encoder, caplog) -> None:  # type: ignore[no-untyped-def]
    uri, paths = torch_built
    for p in paths:
        p.unlink()  # a re-encode would find nothing readable and warn
    with caplog.at_level(logging.INFO, logger="cir_milvus.collection.verify"):
        CIRCollection.open(uri, "items", encoder=tiny_torch_encoder).close()
    assert [r.getMessage() for r in caplog.records if r.name == "cir_milvus.collection.verify"] == []


def test_which_recipes_need_a_re_encode() -> None:
    torch = {"backend": "torch", "weights_sha256": "w"}
    bundle = {"backend": "onnx", "weights_sha256": "w", "bundle_sha256": "b"}
    assert needs_reencode(torch, bundle)  # the bundle's weights_sha256 is its manifest's claim
    assert needs_reencode(bundle, torch)  # another backend
    assert not needs_reencode(torch, dict(torch))
    assert not needs_reencode(bundle, {**bundle, "bundle_sha256": "c"})  # content ids: check_compatible decides
    assert needs_reencode({"backend": "onnx", "weights_sha256": "w"}, bundle)  # an old bundle-built collection


def test_an_encoder_that_makes_nan_is_refused(tiny_torch_encoder, make_image) -> None:  # type: ignore[no-untyped-def]
    """A NaN cosine compares False with every threshold: it must not pass as agreement."""
    from cir_milvus.encoders.agreement import check_reencode

    class Broken:
        recipe = {"backend": "torch", "model": "broken"}

        def encode_images(self, images, normalize=True):  # type: ignore[no-untyped-def]
            return np.full((len(images), 128), np.nan, dtype=np.float32)

    images = [make_image(40, 32, seed=i) for i in range(2)]
    with pytest.raises(RecipeMismatchError, match="cosine nan"):
        check_reencode(Broken(), images, tiny_torch_encoder.encode_images(images))  # type: ignore[arg-type]
