"""CIRCollection on Milvus Lite in a temp dir: storage, idempotency, recipes, filters, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("milvus_lite")

from cir_milvus import (  # noqa: E402
    CIRCollection,
    CollectionLockedError,
    CollectionNotFoundError,
    ConfigError,
    EncoderSpec,  # noqa: E402
    FakeEncoder,
    RecipeMismatchError,
)
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], dict[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("world")
    world = SyntheticWorld(seed=3, instances=1)
    items = world.gallery()[:40]
    paths = []
    attrs = {}
    for it in items:
        p = root / f"{it.id}.png"
        it.render().save(p)
        paths.append(p)
        attrs[p.name] = dict(it.attributes.__dict__)
    return root, paths, attrs


def _create(tmp_path: Path, name: str = "c", seed: int = 0, **kw: object) -> CIRCollection:
    return CIRCollection.create(str(tmp_path / "c.db"), name, encoder=FakeEncoder(dim=16, seed=seed), **kw)


def test_add_is_idempotent_and_search_finds_the_exact_image(tmp_path, world_files):
    _, paths, attrs = world_files
    col = _create(tmp_path)
    first = col.add(paths, metadata=[attrs[p.name] for p in paths])
    assert len(first) == len(paths) and first.encoded == len(paths)
    assert len(col) == len(paths)
    again = col.add(paths)
    assert len(col) == len(paths), "re-adding the same files must not create duplicates"
    assert again.encoded == 0 and again.already_stored == len(paths) and list(again) == list(first)
    hits = col.search(paths[5], "anything", k=3, composer="image", exclude_reference=False)
    assert hits[0].id == first[5]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].source == str(paths[5])
    assert hits[0].metadata == attrs[paths[5].name]
    hits = col.search(paths[5], "anything", k=3, composer="image")
    assert first[5] not in [h.id for h in hits], "the reference is excluded by default"


def test_ref_id_search_reuses_the_stored_vector(tmp_path, world_files):
    _, paths, _ = world_files
    col = _create(tmp_path)
    ids = col.add(paths[:10])
    by_image = col.search(paths[2], "make it blue", k=5, composer="slerp", alpha=0.6)
    by_ref = col.search(ref_id=ids[2], text="make it blue", k=5, composer="slerp", alpha=0.6)
    assert [h.id for h in by_image] == [h.id for h in by_ref]
    assert all(h.id != ids[2] for h in by_ref)
    with pytest.raises(ConfigError, match="not stored"):
        col.search(ref_id="nope", text="x")


def test_search_batch_matches_single_searches(tmp_path, world_files):
    _, paths, _ = world_files
    col = _create(tmp_path)
    col.add(paths)
    texts = ["make it red", "turn it into a star", "put it on a white background"]
    batch = col.search_batch(paths[:3], texts, k=4)
    single = [col.search(p, t, k=4) for p, t in zip(paths[:3], texts)]
    assert [[h.id for h in row] for row in batch] == [[h.id for h in row] for row in single]


def test_filter_templates_and_injection_safety(tmp_path, world_files):
    _, paths, attrs = world_files
    col = _create(tmp_path)
    col.add(paths, metadata=[attrs[p.name] for p in paths])
    colours = {a["colour"] for a in attrs.values()}
    colour = sorted(colours)[0]
    hits = col.search(paths[0], "x", k=40, composer="image", exclude_reference=False,
                      filter='metadata["colour"] == {c}', filter_params={"c": colour})
    expected = sum(1 for a in attrs.values() if a["colour"] == colour)
    assert len(hits) == expected and all(h.metadata["colour"] == colour for h in hits)
    evil = f'{colour}" or metadata["colour"] != "'
    assert col.search(paths[0], "x", k=40, composer="image", filter='metadata["colour"] == {c}',
                      filter_params={"c": evil}) == []
    with pytest.raises(ConfigError, match="no value"):
        col.search(paths[0], "x", filter='metadata["colour"] == {c}')


def test_delete_and_count(tmp_path, world_files):
    _, paths, _ = world_files
    col = _create(tmp_path)
    ids = col.add(paths[:6])
    col.delete(ids[:2])
    assert len(col) == 4
    assert all(h.id not in ids[:2] for h in col.search(paths[0], "x", k=10, composer="image"))


def test_wrong_dimension_and_bad_queries(tmp_path, world_files):
    _, paths, _ = world_files
    col = _create(tmp_path)
    col.add(paths[:3])
    with pytest.raises(ConfigError, match=r"\[N, 16\]"):
        col.search_vectors(np.ones((1, 8), dtype=np.float32))
    with pytest.raises(ConfigError, match="unknown composer"):
        col.search(paths[0], "x", composer="nope")
    with pytest.raises(ConfigError, match="non-empty"):
        col.search(paths[0], "   ")
    with pytest.raises(ConfigError, match="alpha"):
        col.search(paths[0], "x", alpha=2.0)


def test_corrupt_file_is_skipped_and_reported(tmp_path, world_files):
    _, paths, _ = world_files
    bad = tmp_path / "broken.png"
    bad.write_bytes(paths[0].read_bytes()[:60])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    col = _create(tmp_path)
    res = col.add([paths[1], bad, paths[2], empty])
    assert res.stored == 2 and len(col) == 2
    assert [i is None for i in res] == [False, True, False, True]  # one entry per input, None where skipped
    reasons = {Path(s.source).name: s.reason for s in res.skipped}
    assert set(reasons) == {"broken.png", "empty.jpg"}
    assert "empty" in reasons["empty.jpg"]
    assert [s.source for s in res.skipped] == [str(bad), str(empty)]  # the report names the file, not "<60 bytes>"
    missing = col.add([tmp_path / "gone.png"])
    assert list(missing) == [None] and missing.stored == 0 and "not found" in missing.skipped[0].reason


def test_add_reads_each_file_once(tmp_path, world_files, monkeypatch):
    _, paths, _ = world_files
    import os

    reads: list[str] = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(path).endswith(".png"):
            reads.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    real_path_open = Path.open

    def counting_path_open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.suffix == ".png":
            reads.append(self.name)
        return real_path_open(self, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)  # images.read_image_file opens with os.open (non-blocking)
    monkeypatch.setattr(Path, "open", counting_path_open)  # Path.read_bytes opens through Path.open
    col = _create(tmp_path)
    res = col.add(paths[:5])
    assert res.encoded == 5 and sorted(reads) == sorted(p.name for p in paths[:5])
    assert col.add(paths[:5], ids=[f"u{i}" for i in range(5)]).encoded == 5  # with ids: no hashing at all
    assert len(reads) == 10


def test_create_refuses_existing_and_opens_with_exist_ok(tmp_path):
    _create(tmp_path).close()
    with pytest.raises(ConfigError, match="already exists"):
        _create(tmp_path)
    col = _create(tmp_path, if_exists="open")
    assert col.recipe.encoder["dim"] == 16
    with pytest.raises(RecipeMismatchError):
        _create(tmp_path, seed=1, if_exists="open")


def test_open_with_another_model_names_both_recipes(tmp_path):
    col = _create(tmp_path)
    col.close()
    with pytest.raises(RecipeMismatchError) as e:
        CIRCollection.open(str(tmp_path / "c.db"), "c", encoder=FakeEncoder(dim=16, seed=7))
    msg = str(e.value)
    assert "seed=0" in msg and "seed=7" in msg
    with pytest.raises(CollectionNotFoundError, match="existing: c"):
        CIRCollection.open(str(tmp_path / "c.db"), "other", encoder=FakeEncoder(dim=16))


def test_open_with_another_real_model_fails(tmp_path, world_files):
    """A collection built with one backbone refuses another one (torch, random tiny vs demo weights)."""
    pytest.importorskip("open_clip")
    from cir_milvus.models.demo import demo_weights_path

    if not demo_weights_path().is_file():
        pytest.fail("the demo weights must ship with the package")
    col = CIRCollection.create(str(tmp_path / "r.db"), "r", model="cir-demo-tiny", pretrained="cir-demo",
                               encoder=EncoderSpec(device="cpu"))
    col.close()
    with pytest.raises(RecipeMismatchError) as e:
        CIRCollection.open(str(tmp_path / "r.db"), "r", model="cir-demo-tiny", pretrained=None, encoder=EncoderSpec(device="cpu"))
    assert "'cir-demo'" in str(e.value) and "None" in str(e.value)


CHILD = textwrap.dedent(
    """
    import json, sys
    from cir_milvus import CIRCollection, EncoderSpec
    col = CIRCollection.open(sys.argv[1], "r", encoder=EncoderSpec(device="cpu"))
    hits = col.search(sys.argv[2], "make it blue", k=3)
    print(json.dumps({"n": len(col), "ids": [h.id for h in hits], "model": col.recipe.encoder["model"]}))
    col.close()
    """
)


def test_created_in_one_process_searched_from_another(tmp_path, world_files):
    pytest.importorskip("open_clip")
    _, paths, _ = world_files
    db = str(tmp_path / "x.db")
    col = CIRCollection.create(db, "r", model="cir-demo-tiny", pretrained="cir-demo", encoder=EncoderSpec(device="cpu"))
    col.add(paths[:12])
    expected = [h.id for h in col.search(paths[0], "make it blue", k=3)]
    col.close()
    out = subprocess.run([sys.executable, "-c", CHILD, db, str(paths[0])], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == 12 and got["model"] == "cir-demo-tiny"
    assert got["ids"] == expected


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pymilvus import MilvusClient
    c = MilvusClient(sys.argv[1])
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_second_process_on_a_locked_lite_file_gets_a_clear_error(tmp_path):
    db = str(tmp_path / "locked.db")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(CollectionLockedError, match="another process"):
            CIRCollection.create(db, "c", encoder=FakeEncoder(dim=16))
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
