"""The default decode mode: new collections decode with "reduce" where it applies, every collection keeps the mode
its recipe records (a recipe without one: "exact"), and the research paths (eval) stay exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import photo_like

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from cir_milvus import (  # noqa: E402
    CIRCollection,
    EncoderSpec,  # noqa: E402
    RecipeMismatchError,
)
from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.ingest import ingest  # noqa: E402

pytestmark = pytest.mark.integration

MODEL, WEIGHTS = "cir-demo-tiny", "cir-demo"


def _photo(path: Path, w: int, h: int, seed: int) -> Path:
    """A photo-like JPEG far above the 64 px input: reduce changes it."""
    photo_like(w, h, seed).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def encoders() -> dict[str, TorchEncoder]:
    default = TorchEncoder(MODEL, WEIGHTS, device="cpu")
    return {"default": default, **{m: default.with_decode(m) for m in ("exact", "reduce", "draft")}}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("photos")
    return [_photo(root / f"p{i}.jpg", 800 + 40 * i, 600, seed=i) for i in range(3)]


def _raw(enc: TorchEncoder, paths: list[Path]) -> np.ndarray:
    return np.asarray(enc.encode_images([str(p) for p in paths], normalize=False), dtype=np.float32)


def _stored(col: CIRCollection, before: set[object] = frozenset()) -> np.ndarray:  # type: ignore[assignment]
    ids = [i for i in col.iter_ids() if i not in before]
    assert len(ids) == 1
    return col.get_vectors(ids)[ids[0]]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_three_modes_give_different_vectors_on_a_large_jpeg(encoders, photos) -> None:  # type: ignore[no-untyped-def]
    """The premise of the tests below: on a large photo-like JPEG the modes are distinguishable, yet close."""
    exact, reduce, draft = (_raw(encoders[m], photos[:1])[0] for m in ("exact", "reduce", "draft"))
    for other in (reduce, draft):
        assert np.abs(other - exact).max() > 1e-4 and _cos(other, exact) > 0.999
    assert np.abs(reduce - draft).max() > 1e-4


def test_a_new_collection_records_and_ingests_with_reduce(tmp_path, encoders, photos) -> None:  # type: ignore[no-untyped-def]
    col = CIRCollection.create(str(tmp_path / "c.db"), "c", model=MODEL, pretrained=WEIGHTS, encoder=EncoderSpec(device="cpu"))
    try:
        assert col.recipe.encoder["preprocess"]["decode"] == "reduce"
        assert col.encoder.preprocess_config.decode == "reduce"
        ingest(col, [str(photos[0])], workers=0, progress=False)
        got = _stored(col)
    finally:
        col.close()
    np.testing.assert_allclose(got, _raw(encoders["reduce"], photos[:1])[0], rtol=1e-4, atol=1e-4)
    assert np.abs(got - _raw(encoders["exact"], photos[:1])[0]).max() > 1e-4


def test_hf_clip_encoders_keep_recording_exact(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """LinCIR/RTD preprocessing (hf_clip) takes no shortcut: its recipe is the one written before the change."""
    enc = TorchEncoder(MODEL, WEIGHTS, device="cpu", preprocess="hf_clip")
    assert enc.preprocess_config.decode == "exact" and "decode" not in enc.recipe["preprocess"]
    col = CIRCollection.create(str(tmp_path / "h.db"), "h", encoder=enc)
    try:
        assert "decode" not in col.recipe.encoder["preprocess"]
    finally:
        col.close()


def test_a_collection_made_exact_opens_with_a_default_encoder_and_stays_exact(tmp_path, encoders,  # type: ignore[no-untyped-def]
                                                                             photos) -> None:
    """Every collection made before the default changed recorded no decode mode (exact): it opens with a default
    encoder (encoder= or model=) or its own recipe, and its queries and new images decode exactly."""
    db = str(tmp_path / "e.db")
    col = CIRCollection.create(db, "e", encoder=encoders["exact"])
    assert "decode" not in col.recipe.encoder["preprocess"]
    ingest(col, [str(photos[0])], workers=0, progress=False)
    want_hits = [(h.id, round(h.score, 5)) for h in col.search(str(photos[1]), composer="image", k=1)]
    want_q = col.compose([str(photos[1])], ["x"], composer="image")
    col.close()

    col = CIRCollection.open(db, "e", encoder=encoders["default"])  # no RecipeMismatchError
    try:
        assert col.encoder.preprocess_config.decode == "exact"
        assert col.encoder.model is encoders["default"].model  # a copy sharing the model, not a reload
        assert encoders["default"].preprocess_config.decode == "reduce"  # the caller's encoder is left alone
        q = col.compose([str(photos[1])], ["x"], composer="image")
        np.testing.assert_allclose(q, want_q, atol=1e-6)
        reduce_q = encoders["reduce"].encode_images([str(photos[1])])
        assert np.abs(q - reduce_q).max() > 1e-5  # the query did not decode with the encoder's own mode
        assert [(h.id, round(h.score, 5)) for h in col.search(str(photos[1]), composer="image", k=1)] == want_hits
        before = set(col.iter_ids())
        ingest(col, [str(photos[2])], workers=0, progress=False)  # the ingest pipeline reads col.encoder
        got = _stored(col, before)
    finally:
        col.close()
    np.testing.assert_allclose(got, _raw(encoders["exact"], photos[2:])[0], rtol=1e-4, atol=1e-4)
    assert np.abs(got - _raw(encoders["reduce"], photos[2:])[0]).max() > 1e-4

    for kwargs in ({"model": MODEL, "pretrained": WEIGHTS}, {}):  # a default-built model=, and the recipe rebuild
        col = CIRCollection.open(db, "e", encoder=EncoderSpec(device="cpu"), **kwargs)  # type: ignore[arg-type]
        try:
            assert col.encoder.preprocess_config.decode == "exact"
            np.testing.assert_allclose(col.compose([str(photos[1])], ["x"], composer="image"), want_q, atol=1e-6)
        finally:
            col.close()


def test_rebuilding_a_recipe_without_a_decode_mode_decodes_exactly(encoders) -> None:  # type: ignore[no-untyped-def]
    """encoder_from_recipe serves Ray ingestion actors directly (no collection adopts a mode for them)."""
    from cir_milvus.encoders.rebuild import encoder_from_recipe

    recipe = encoders["exact"].recipe
    assert "decode" not in recipe["preprocess"]
    assert encoder_from_recipe(recipe, device="cpu").preprocess_config.decode == "exact"
    assert encoder_from_recipe(encoders["draft"].recipe, device="cpu").preprocess_config.decode == "draft"


def test_a_reduce_collection_opened_with_a_draft_encoder_uses_reduce(tmp_path, encoders) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "r.db")
    CIRCollection.create(db, "r", encoder=encoders["default"]).close()
    with CIRCollection.open(db, "r", encoder=encoders["draft"]) as col:
        assert col.encoder.preprocess_config.decode == "reduce"
    with CIRCollection.create(db, "r", encoder=encoders["draft"], if_exists="open") as col:  # the existing branch
        assert col.encoder.preprocess_config.decode == "reduce"
        assert col.recipe.encoder["preprocess"]["decode"] == "reduce"


def test_other_preprocessing_differences_are_still_refused(tmp_path, encoders) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "m.db")
    CIRCollection.create(db, "m", encoder=encoders["default"]).close()
    for other in (TorchEncoder(MODEL, WEIGHTS, device="cpu", preprocess="targetpad", decode="draft"),
                  TorchEncoder(MODEL, WEIGHTS, device="cpu", image_loading="official")):
        with pytest.raises(RecipeMismatchError, match="preprocess"):
            CIRCollection.open(db, "m", encoder=other)
        with pytest.raises(RecipeMismatchError, match="preprocess"):
            CIRCollection.create(db, "m", encoder=other, if_exists="open")


def test_eval_builds_exact_collections_and_refuses_a_reduce_one(tmp_path,  # type: ignore[no-untyped-def]
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from cir_milvus.cli import main

    db = str(tmp_path / "eval.db")
    args = ["eval", "synthetic", "--root", str(tmp_path / "world"), "--split", "val", "--uri", db, "--model", MODEL,
            "--device", "cpu", "--composer", "image"]
    assert main(args) == 0
    with CIRCollection.open(db, "synthetic_val", encoder=EncoderSpec(device="cpu")) as col:
        assert "decode" not in col.recipe.encoder["preprocess"]  # exact, like the official code
        assert col.encoder.preprocess_config.decode == "exact"
    capsys.readouterr()
    # a gallery eval would otherwise accept (official loading), ingested with the library default
    fast = TorchEncoder(MODEL, WEIGHTS, device="cpu", image_loading="official")
    assert fast.preprocess_config.decode == "reduce"
    CIRCollection.create(db, "fast", encoder=fast).close()
    assert main([*args, "--collection", "fast"]) == 2
    err = capsys.readouterr().err
    assert "decode='reduce'" in err and "--collection" in err
