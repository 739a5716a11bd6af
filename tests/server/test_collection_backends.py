"""The same CIRCollection behaviours on Milvus Lite and on a real Milvus server (2.3.5).

Each test runs once per backend: ``lite`` (a temp ``.db``, in the default run) and ``server`` (marked ``server``;
``pytest -m server tests/server``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from cir_milvus import (
    CIRCollection,
    CollectionNotFoundError,
    ComposerSpec,
    ConfigError,
    FakeEncoder,
    RecipeMismatchError,
)
from cir_milvus.synthetic import SyntheticWorld

BACKENDS = ["lite", pytest.param("server", marks=pytest.mark.server)]


@pytest.fixture(params=BACKENDS)
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "lite":
        pytest.importorskip("milvus_lite")
        return str(tmp_path / "c.db")
    return str(request.getfixturevalue("server_uri"))


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("world")
    paths, attrs = [], {}
    for it in SyntheticWorld(seed=3, instances=1).gallery()[:24]:
        p = root / f"{it.id}.png"
        it.render().save(p)
        paths.append(p)
        attrs[p.name] = dict(it.attributes.__dict__)
    return paths, attrs


def _create(uri: str, name: str, seed: int = 0, **kw: object) -> CIRCollection:
    return CIRCollection.create(uri, name, encoder=FakeEncoder(dim=16, seed=seed), **kw)


def test_add_search_len_and_idempotency(uri: str, name: str, world) -> None:  # type: ignore[no-untyped-def]
    paths, attrs = world
    col = _create(uri, name)
    ids = col.add(paths, metadata=[attrs[p.name] for p in paths])
    assert len(ids) == len(paths) == len(col)
    again = col.add(paths)
    assert again.encoded == 0 and len(col) == len(paths), "re-adding must not duplicate"
    hits = col.search(paths[3], "anything", k=3, composer="image", exclude_reference=False)
    assert hits[0].id == ids[3] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].metadata == attrs[paths[3].name] and hits[0].source == str(paths[3])
    assert ids[3] not in [h.id for h in col.search(paths[3], "anything", k=3, composer="image")]
    by_ref = col.search(ref_id=ids[2], text="make it blue", k=4)
    by_img = col.search(paths[2], "make it blue", k=4)
    assert [h.id for h in by_ref] == [h.id for h in by_img]
    batch = col.search_batch(paths[:3], ["make it red", "a star", "on white"], k=4)
    assert [[h.id for h in r] for r in batch] == [[h.id for h in col.search(p, t, k=4)] for p, t in
                                                  zip(paths[:3], ["make it red", "a star", "on white"])]
    col.close()


def test_filters_templates_and_injection(uri: str, name: str, world) -> None:  # type: ignore[no-untyped-def]
    paths, attrs = world
    col = _create(uri, name)
    col.add(paths, metadata=[attrs[p.name] for p in paths])
    colour = sorted({a["colour"] for a in attrs.values()})[0]
    hits = col.search(paths[0], "x", k=24, composer="image", exclude_reference=False,
                      filter='metadata["colour"] == {c}', filter_params={"c": colour})
    assert len(hits) == sum(a["colour"] == colour for a in attrs.values())
    assert all(h.metadata["colour"] == colour for h in hits)
    evil = f'{colour}" or metadata["colour"] != "'
    assert col.search(paths[0], "x", k=24, composer="image", filter='metadata["colour"] == {c}',
                      filter_params={"c": evil}) == []
    col.close()


def test_delete_by_ids_and_filter(uri: str, name: str, world) -> None:  # type: ignore[no-untyped-def]
    paths, attrs = world
    col = _create(uri, name)
    ids = col.add(paths[:8], metadata=[{"n": i} for i in range(8)])
    col.delete(ids[:2])
    assert len(col) == 6
    col.delete(filter='metadata["n"] >= {k}', filter_params={"k": 6})
    assert len(col) == 4
    assert sorted(col.iter_ids()) == sorted(ids[2:6])
    col.close()


def test_recipe_round_trip_and_mismatch(uri: str, name: str) -> None:
    _create(uri, name, composer=ComposerSpec("slerp", alpha=0.7)).close()
    with pytest.raises(ConfigError, match="already exists"):
        _create(uri, name)
    col = CIRCollection.open(uri, name, encoder=FakeEncoder(dim=16, seed=0))
    assert col.recipe.composer == {"name": "slerp", "params": {"alpha": 0.7}}
    col.set_default_composer("slerp", alpha=0.55)
    col.close()
    col = CIRCollection.open(uri, name, encoder=FakeEncoder(dim=16, seed=0))
    assert col.recipe.composer["params"]["alpha"] == 0.55
    col.close()
    with pytest.raises(RecipeMismatchError) as e:
        CIRCollection.open(uri, name, encoder=FakeEncoder(dim=16, seed=7))
    assert "seed=0" in str(e.value) and "seed=7" in str(e.value)
    with pytest.raises(CollectionNotFoundError, match="no collection"):
        CIRCollection.open(uri, name + "x", encoder=FakeEncoder(dim=16))


def test_bad_queries_are_clear_errors(uri: str, name: str, world) -> None:  # type: ignore[no-untyped-def]
    paths, _ = world
    col = _create(uri, name)
    col.add(paths[:3])
    with pytest.raises(ConfigError, match=r"\[N, 16\]"):
        col.search_vectors(np.ones((1, 8), dtype=np.float32))
    with pytest.raises(ConfigError, match="unknown composer"):
        col.search(paths[0], "x", composer="nope")
    with pytest.raises(ConfigError, match="non-empty"):
        col.search(paths[0], "  ")
    too_long = " ".join(["word"] * 100)
    with pytest.raises(ConfigError, match="context length is 77"):
        col.search(paths[0], too_long)
    with pytest.warns(UserWarning, match="truncated"):
        assert len(col.search(paths[0], too_long, k=2, truncate=True)) == 2
    col.close()


def test_ingest_pipeline_resumes(uri: str, name: str, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.ingest import ingest

    paths, _ = world
    col = _create(uri, name)
    first = ingest(col, paths[:10], batch_size=4, progress=False)
    assert first.stored == 10 and len(col) == 10
    second = ingest(col, [*paths, paths[0]], batch_size=4, progress=False)
    assert (second.already_stored, second.stored, second.duplicates) == (10, len(paths) - 10, 1)
    assert second.encoded == len(paths) - 10, "nothing already stored is encoded again"
    assert len(col) == len(paths)
    col.close()
