"""Every batch entry point with 0 and 1 items (issue 24 item 8, issue 25 item 6): zero inputs give an empty
result, never an error from inside the encoder; one input gives one result."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("milvus_lite")

from cir_milvus import CIRCollection, EncoderSpec, FakeEncoder, IngestReport  # noqa: E402
from cir_milvus.ingest import ingest  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402


def _encoders() -> list[Any]:
    def needs(module: str, why: str) -> Any:
        return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=why)

    return ["fake", pytest.param("torch", marks=needs("open_clip", "the torch path needs open_clip")),
            pytest.param("bundle", marks=needs("onnxruntime", "the bundle path needs onnxruntime"))]


@pytest.fixture(params=_encoders())
def col(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "fake":
        c = CIRCollection.create(str(tmp_path / "e.db"), "e", encoder=FakeEncoder(dim=16))
    elif request.param == "torch":
        c = CIRCollection.create(str(tmp_path / "e.db"), "e", "cir-demo-tiny", "cir-demo",
                                 encoder=EncoderSpec(device="cpu"))
    else:  # an ONNX bundle of the tiny model (the session's shared export)
        bundle = request.getfixturevalue("tiny_bundle")
        c = CIRCollection.create(str(tmp_path / "e.db"), "e", f"bundle:{bundle}", encoder=EncoderSpec(device="cpu"))
    yield c
    c.close()


@pytest.fixture
def photo(tmp_path: Path) -> str:
    path = tmp_path / "one.png"
    SyntheticWorld(seed=0).gallery()[0].render().save(path)
    return str(path)


def test_zero_items(col: Any) -> None:
    assert col.search_batch([], []) == []
    assert col.search_batch(None, [], composer="text") == []
    assert col.compose([], []).shape == (0, col.store.dim)
    added = col.add([])
    assert isinstance(added, IngestReport) and (added.seen, added.stored, list(added)) == (0, 0, [])
    report = ingest(col, [], workers=0, progress=False)
    assert (report.seen, report.stored, list(report)) == (0, 0, [])
    assert len(col) == 0


def test_one_item(col: Any, photo: str) -> None:
    added = col.add([photo])
    assert added.stored == 1 and len(added) == 1 and added[0] is not None
    again = ingest(col, [photo], workers=0, progress=False)
    assert (again.seen, again.already_stored, list(again)) == (1, 1, [added[0]])
    hits = col.search_batch([photo], ["make it blue"], k=1, exclude_reference=False)
    assert len(hits) == 1 and [h.id for h in hits[0]] == [added[0]]
    q = col.compose([photo], ["make it blue"])
    assert q.shape == (1, col.store.dim) and np.isfinite(q).all()
