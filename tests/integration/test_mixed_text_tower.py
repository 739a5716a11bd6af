"""The text tower of a mixed gallery's item texts (issue 27): a collection whose encoder has a swapped text tower
(``text_weights``, e.g. an RTD-tuned one) embeds item texts with that tower, as it embeds queries, through ``add()``,
the local ingest pipeline and the encoder Ray's actors rebuild. The swapped tower is a random open_clip text tower
(``donor``): its own ``encode_texts`` is the independent reference."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("milvus_lite")

from cir_milvus import CIRCollection, EncoderSpec  # noqa: E402
from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration
TEXTS = ["a red star", None, "make it green and large", "a blue circle on a brown background", "",
         "a small yellow square"]


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> tuple[TorchEncoder, TorchEncoder, Path]:
    """(the demo model, a random text tower ``donor``, its text-tower file)."""
    from safetensors.torch import save_file

    from cir_milvus.models.text_tower import text_tower_state_dict

    torch.manual_seed(2)
    donor = TorchEncoder("cir-demo-tiny", None, device="cpu")
    path = tmp_path_factory.mktemp("tower") / "tower.safetensors"
    save_file({k: v.contiguous() for k, v in text_tower_state_dict(donor.model).items()}, str(path))
    return TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu"), donor, path


def test_item_texts_use_the_swapped_text_tower(towers, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               caplog: pytest.LogCaptureFixture) -> None:
    base, donor, path = towers
    tuned = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", text_weights=str(path))
    images = []
    for i, it in enumerate(SyntheticWorld(seed=3, instances=1).gallery()[:12]):
        images.append(tmp_path / f"{i}.png")
        it.render().save(images[-1])
    present = [t for t in TEXTS if t]
    want = _unit(donor.encode_texts(present, normalize=False))
    assert not np.allclose(want, _unit(base.encode_texts(present, normalize=False)), atol=1e-3)  # another tower

    def stored(col: CIRCollection, ids: list) -> np.ndarray:  # type: ignore[type-arg]
        vecs = col.store.stored_text_vectors(ids)
        assert [vecs[i] is None for i in ids] == [not t for t in TEXTS]
        return np.stack([v for v in (vecs[i] for i in ids) if v is not None])

    uri = str(tmp_path / "t.db")
    with CIRCollection.create(uri, "g", encoder=tuned, index="FLAT", item_text=True) as col:
        assert col.recipe.item_text is not None
        assert col.recipe.item_text["encoder"]["text_weights_sha256"] == tuned.recipe["text_weights_sha256"]
        ids = list(col.add(images[:6], texts=TEXTS))
        np.testing.assert_allclose(stored(col, ids), want, atol=1e-5)  # add()
        from cir_milvus.ingest import IngestOptions, ingest

        with (tmp_path / "items.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["id", "path", "caption"])
            w.writeheader()
            w.writerows({"id": f"c{i}", "path": str(images[6 + i]), "caption": t or ""} for i, t in enumerate(TEXTS))
        ingest(col, tmp_path / "items.csv", options=IngestOptions(text_column="caption"), workers=0, progress=False)
        np.testing.assert_allclose(stored(col, [f"c{i}" for i in range(6)]), want, atol=1e-5)  # the local pipeline
        from cir_milvus.ingest.ray_pipeline import RecipeEncoderFactory

        in_actor = RecipeEncoderFactory(col.encoder.recipe, device="cpu", text_tower=True)()  # Ray's actors
        np.testing.assert_allclose(_unit(in_actor.encode_texts(present, normalize=False)), want, atol=1e-5)
        hits = col.search(text=TEXTS[3], composer="text", k=1, targets=("text",))  # queries use the same tower
        assert hits[0].id == ids[3] and hits[0].score == pytest.approx(1.0, abs=1e-4)

    # a gallery made with the base tower, opened with text_weights=: texts added now use the swapped tower, and
    # the open says that the texts stored before keep the old one's vectors
    with CIRCollection.create(uri, "h", encoder=base, index="FLAT", item_text=True) as col:
        col.add(images[:1], texts=["a red star"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cir_milvus"):
        with CIRCollection.open(uri, "h", encoder=EncoderSpec(device="cpu", text_weights=str(path))) as col:
            ids = list(col.add(images[6:12], texts=TEXTS))
            np.testing.assert_allclose(stored(col, ids), want, atol=1e-5)
    said = [r.getMessage() for r in caplog.records if "mixed gallery 'h'" in r.getMessage()]
    assert len(said) == 1 and "model's own text tower" in said[0] and str(path) in said[0]
    assert "skip_existing=False" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cir_milvus"):
        CIRCollection.open(uri, "g", encoder=EncoderSpec(device="cpu")).close()  # its own tower: nothing to say
    assert not [r for r in caplog.records if "mixed gallery" in r.getMessage()]
