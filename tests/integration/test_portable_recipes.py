"""Portable recipes on Milvus Lite: a collection made in one folder is opened from another folder (another "host")
with its weights, heads and ONNX bundle found by content, never by the creating machine's paths."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from ingest_helpers import write_synthetic_pngs

pytest.importorskip("milvus_lite")
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from cir_milvus import (  # noqa: E402
    CIRCollection,
    ComposerSpec,  # noqa: E402
    EncoderSpec,  # noqa: E402
    ModelNotFoundError,
    RecipeMismatchError,
)
from cir_milvus.artifacts import CACHE_ENV_VAR, ENV_VAR  # noqa: E402
from cir_milvus.hashing import file_sha256  # noqa: E402
from cir_milvus.models.demo import DATA_DIR, demo_weights_path  # noqa: E402

pytestmark = pytest.mark.integration

TEXT = "make it red"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No search folders from the environment and an empty index of known files: only what a test sets up counts."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "elsewhere").mkdir()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_synthetic_pngs(tmp_path_factory.mktemp("images"), 10, seed=5)


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo architecture with other weights (the demo's image projection perturbed)."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(demo_weights_path()))
    gen = torch.Generator().manual_seed(1)
    sd["visual.proj"] = sd["visual.proj"] + 0.05 * torch.randn(sd["visual.proj"].shape, generator=gen)
    out = tmp_path_factory.mktemp("other") / "w.safetensors"
    save_file(sd, str(out))
    return out


def _ids(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.id for h in hits]


def _move_host(src: Path, dst: Path) -> Path:
    """Copy a collection folder to another place and delete the original (nothing may point back at it)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst)
    shutil.rmtree(src)
    return dst


def _create_in(folder: Path, images: list[Path], **kw: object) -> list[str]:
    """Create collection ``c`` in ``folder/cir.db``, add the images, return the hits of one composed query."""
    kw.setdefault("model", "cir-demo-tiny")
    if "head" in kw:
        kw["composer"] = ComposerSpec(str(kw.pop("composer")), head=kw.pop("head"))
    with CIRCollection.create(str(folder / "cir.db"), "c", encoder=EncoderSpec(device="cpu"), **kw) as col:  # type: ignore[arg-type]
        col.add(images)
        assert str(folder) not in col.recipe.to_json()  # no path of this machine in the stored recipe
        return _ids(col.search(images[0], TEXT, k=5))


def test_collection_and_weights_copied_to_another_folder_open_and_search(tmp_path, images, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a = tmp_path / "hostA" / "catalog"
    a.mkdir(parents=True)
    shutil.copy(demo_weights_path(), a / "w.safetensors")
    before = _create_in(a, images, pretrained=str(a / "w.safetensors"))
    b = _move_host(a, tmp_path / "hostB" / "srv" / "catalog")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu")) as col:
        assert col.recipe.encoder["pretrained"] == "w.safetensors"
        assert col.encoder.recipe["pretrained"] == str(b / "w.safetensors")  # the copy next to the collection
        assert _ids(col.search(images[0], TEXT, k=5)) == before


def test_relative_absolute_and_shipped_names_of_the_same_bytes_are_accepted(tmp_path, images, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a = tmp_path / "A"
    a.mkdir()
    shutil.copy(demo_weights_path(), a / "w.safetensors")
    monkeypatch.chdir(a)
    before = _create_in(a, images[:6], pretrained="./w.safetensors")
    b = _move_host(a, tmp_path / "B")
    monkeypatch.chdir(b)
    for pretrained in ("w.safetensors", str(b / "w.safetensors"), "cir-demo"):
        with CIRCollection.open("cir.db", "c", model="cir-demo-tiny", pretrained=pretrained, encoder=EncoderSpec(device="cpu")) as col:
            assert _ids(col.search(images[0], TEXT, k=5)) == before


def test_shipped_demo_weights_accept_a_copy_of_the_file(tmp_path, images) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "A").mkdir()
    before = _create_in(tmp_path / "A", images[:6], pretrained="cir-demo")
    copy = tmp_path / "copies" / "demo.safetensors"
    copy.parent.mkdir()
    shutil.copy(demo_weights_path(), copy)
    with CIRCollection.open(str(tmp_path / "A" / "cir.db"), "c", model="cir-demo-tiny", pretrained=str(copy),
                            encoder=EncoderSpec(device="cpu")) as col:
        assert _ids(col.search(images[0], TEXT, k=5)) == before


def test_other_weights_are_refused_naming_both_checksums(tmp_path, images, other_weights) -> None:  # type: ignore[no-untyped-def]
    a = tmp_path / "A"
    a.mkdir()
    shutil.copy(demo_weights_path(), a / "w.safetensors")
    _create_in(a, images[:4], pretrained=str(a / "w.safetensors"))
    b = _move_host(a, tmp_path / "B")
    shutil.copy(other_weights, b / "w.safetensors")  # same name, other bytes
    want, got = file_sha256(demo_weights_path()), file_sha256(other_weights)
    with pytest.raises(ModelNotFoundError) as info:
        CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu"))
    assert want in str(info.value) and got in str(info.value)
    with pytest.raises(RecipeMismatchError) as mismatch:
        CIRCollection.open(str(b / "cir.db"), "c", model="cir-demo-tiny", pretrained=str(b / "w.safetensors"),
                           encoder=EncoderSpec(device="cpu"))
    assert want in str(mismatch.value) and got in str(mismatch.value)


def test_weights_outside_the_collection_folder_are_found_through_the_search_path(tmp_path, images, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(demo_weights_path(), models / "w.safetensors")
    (tmp_path / "A").mkdir()
    before = _create_in(tmp_path / "A", images[:6], pretrained=str(models / "w.safetensors"))
    b = _move_host(tmp_path / "A", tmp_path / "B")
    moved = _move_host(models, tmp_path / "shared" / "models")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(ModelNotFoundError, match=ENV_VAR):
        CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu"))
    with CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu"), search_path=str(moved)) as col:
        assert _ids(col.search(images[0], TEXT, k=5)) == before
    monkeypatch.setenv(ENV_VAR, os.pathsep.join([str(tmp_path / "nothing-here"), str(moved)]))
    with CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu")) as col:
        assert _ids(col.search(images[0], TEXT, k=5)) == before


def test_heads_are_found_in_the_moved_folder_or_the_search_path(tmp_path, images, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.heads import Head, SearlePhi

    a = tmp_path / "A"
    torch.manual_seed(2)
    inside = Head("searle", SearlePhi(128, 256, 128)).save(a / "heads" / "searle")  # a saved folder
    before = _create_in(a, images[:8], pretrained="cir-demo", composer="searle", head=str(inside))
    b = _move_host(a, tmp_path / "B")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu")) as col:
        assert col.recipe.composer["params"]["head"]["source"] == "heads/searle"
        assert _ids(col.search(images[0], TEXT, k=5)) == before

    # a head file outside the collection's folder (the shipped Pic2Word head), moved away under another folder
    src = tmp_path / "heads" / "p2w.safetensors"
    src.parent.mkdir()
    shutil.copy(DATA_DIR / "cir-demo-tiny.pic2word.safetensors", src)
    (tmp_path / "C").mkdir()
    before = _create_in(tmp_path / "C", images[:8], pretrained="cir-demo", composer="pic2word", head=str(src))
    d = _move_host(tmp_path / "C", tmp_path / "D")
    moved = _move_host(src.parent, tmp_path / "moved-heads")
    with CIRCollection.open(str(d / "cir.db"), "c", encoder=EncoderSpec(device="cpu")) as col:
        with pytest.raises(ModelNotFoundError, match="pic2word head"):
            col.search(images[0], TEXT, k=5)
        # passing the head again is accepted: its recorded checksum is not needed for a per-call head
        assert _ids(col.search(images[0], TEXT, k=5, head=str(moved / "p2w.safetensors"))) == before
    with CIRCollection.open(str(d / "cir.db"), "c", encoder=EncoderSpec(device="cpu"), search_path=[moved]) as col:
        assert _ids(col.search(images[0], TEXT, k=5)) == before


def test_a_moved_onnx_bundle_is_found_or_named_with_bundle_new(tmp_path, images, tiny_bundles,
                                                                monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.ingest.ray_pipeline import RecipeEncoderFactory

    a = tmp_path / "A"
    bundle = tiny_bundles.copy(a / "bundle", fused=False)  # random weights: no weights checksum
    before = _create_in(a, images[:8], model=f"bundle:{bundle}")
    b = _move_host(a, tmp_path / "B")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu")) as col:  # found next to the collection
        assert col.recipe.encoder["location"] == "bundle:bundle"
        assert isinstance(col.encoder, OrtEncoder) and col.encoder.bundle_dir == b / "bundle"
        assert _ids(col.search(images[0], TEXT, k=5)) == before
        # the Ray actors rebuild the same encoder from the recipe (this failed for bundles before)
        rebuilt = RecipeEncoderFactory(col.encoder.recipe, base_dir=str(b))()
        assert isinstance(rebuilt, OrtEncoder) and rebuilt.recipe == col.encoder.recipe

    new = _move_host(b / "bundle", tmp_path / "models" / "bundle-v1")
    with pytest.raises(ModelNotFoundError, match="bundle:NEW"):
        CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu"))
    with CIRCollection.open(str(b / "cir.db"), "c", model=f"bundle:{new}", encoder=EncoderSpec(device="cpu")) as col:
        assert _ids(col.search(images[0], TEXT, k=5)) == before
    shutil.move(str(new), str(new.parent / "bundle"))  # the recorded name, in a search folder
    with CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu"), search_path=str(new.parent)) as col:
        assert _ids(col.search(images[0], TEXT, k=5)) == before


def test_a_recipe_written_by_an_older_version_opens_on_another_host(tmp_path, images, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Format-1 recipes stored paths as typed; those paths are now hints (found here by file name + sha256)."""
    import json

    from pymilvus import MilvusClient

    from cir_milvus.storage.client import disconnect
    from cir_milvus.storage.recipe import PROPERTY_KEY

    a = tmp_path / "A"
    a.mkdir()
    shutil.copy(demo_weights_path(), a / "w.safetensors")
    before = _create_in(a, images[:6], pretrained=str(a / "w.safetensors"))
    client = MilvusClient(str(a / "cir.db"))
    try:
        recipe = json.loads(client.describe_collection("c")["properties"][PROPERTY_KEY])
        recipe["format"] = 1  # as 0.x wrote it: the checkpoint by the creating machine's absolute path
        recipe["encoder"]["pretrained"] = "/home/alice/ckpt/w.safetensors"
        recipe["encoder"].pop("pretrained_kind")
        client.alter_collection_properties("c", properties={PROPERTY_KEY: json.dumps(recipe)})
    finally:
        disconnect(client, str(a / "cir.db"))
    b = _move_host(a, tmp_path / "B")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with CIRCollection.open(str(b / "cir.db"), "c", encoder=EncoderSpec(device="cpu")) as col:
        assert col.recipe.format == 1 and col.encoder.recipe["pretrained"] == str(b / "w.safetensors")
        assert _ids(col.search(images[0], TEXT, k=5)) == before


@pytest.mark.slow
def test_ray_ingest_into_a_bundle_collection_matches_the_local_encoder(tmp_path, images, tiny_bundles) -> None:  # type: ignore[no-untyped-def]
    """The Ray actors rebuild an ONNX-bundle encoder from the recipe (the old rebuild failed for bundles)."""
    ray = pytest.importorskip("ray")
    import numpy as np

    from cir_milvus.images import content_id
    from cir_milvus.ingest.ray_pipeline import RayOptions, ingest_ray

    bundle = tiny_bundles.copy(tmp_path / "A" / "bundle", fused=False)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images[:6]:
        shutil.copy(p, folder / p.name)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with CIRCollection.create(str(tmp_path / "A" / "cir.db"), "c", model=f"bundle:{bundle}", encoder=EncoderSpec(device="cpu")) as col:
            report = ingest_ray(col, folder, batch_size=4, ray=RayOptions(write="driver"), progress=False)
            assert report.stored == 6
            ids = [content_id(p) for p in images[:6]]
            got = col.get_vectors(ids)
            want = col.encoder.encode_images(list(images[:6]), normalize=False)
            for i, w in zip(ids, want, strict=True):
                np.testing.assert_allclose(got[i], w, rtol=1e-4, atol=1e-4)
    finally:
        ray.shutdown()
