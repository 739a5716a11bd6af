"""``evaluate()`` guards the official path: it refuses a collection whose images are loaded or decoded other than the
research code does, scores it with ``official=False`` (and says so in the result), and ``cir-milvus eval`` refuses
the same collection with the same reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from cir_milvus.cli import main  # noqa: E402
from cir_milvus.collection import CIRCollection  # noqa: E402
from cir_milvus.encoders.fake import FakeEncoder  # noqa: E402
from cir_milvus.encoders.torch import TorchEncoder  # noqa: E402
from cir_milvus.errors import ConfigError  # noqa: E402
from cir_milvus.eval import CIRRDataset, evaluate, make_miniature, official_deviations, sweep_alpha  # noqa: E402

pytestmark = pytest.mark.integration

MODEL, WEIGHTS = "cir-demo-tiny", "cir-demo"


@pytest.fixture(scope="module")
def cirr(tmp_path_factory: pytest.TempPathFactory) -> CIRRDataset:
    return CIRRDataset(make_miniature("cirr", tmp_path_factory.mktemp("cirr")), "val")


@pytest.fixture(scope="module")
def product() -> TorchEncoder:
    """The library's defaults for user photos: product loading, the reduced decode."""
    return TorchEncoder(MODEL, WEIGHTS, device="cpu")


def test_evaluate_refuses_a_product_collection_before_touching_it(tmp_path: Path, cirr: CIRRDataset,
                                                                  product: TorchEncoder) -> None:
    with CIRCollection.create(str(tmp_path / "p.db"), "p", encoder=product) as col:
        with pytest.raises(ConfigError) as info:
            evaluate(cirr, col, composer="image", progress=False)
        msg = str(info.value)
        assert "image_loading='product'" in msg and "decode='reduce'" in msg
        assert "official=False" in msg and "image_loading='official'" in msg  # the Python fix, in Python's terms
        assert len(col) == 0  # refused before the gallery was ingested
        with pytest.raises(ConfigError, match="official=False"):
            sweep_alpha(cirr, col, [0.5, 0.9])


def test_official_false_scores_and_records_the_deviations(tmp_path: Path, cirr: CIRRDataset,
                                                          product: TorchEncoder) -> None:
    with CIRCollection.create(str(tmp_path / "p.db"), "p", encoder=product) as col:
        res = evaluate(cirr, col, composer="image", progress=False, official=False)
        assert res.scored and res.official is False
        assert res.config["official"] is False and res.to_json()["config"]["official"] is False
        deviations = res.config["deviations"]
        assert deviations == official_deviations(col)
        assert any("image_loading='product'" in d for d in deviations)
        assert any("decode='reduce'" in d for d in deviations)
        assert "not the official path" in res.table()


def test_an_official_collection_is_scored_and_says_so(tmp_path: Path, cirr: CIRRDataset) -> None:
    enc = TorchEncoder(MODEL, WEIGHTS, device="cpu", image_loading="official", decode="exact")
    with CIRCollection.create(str(tmp_path / "o.db"), "o", encoder=enc) as col:
        assert official_deviations(col) == []
        res = evaluate(cirr, col, composer="image", progress=False)
        assert res.official is True and res.config["deviations"] == []
        assert "not the official path" not in res.table()


def test_one_deviation_is_enough(tmp_path: Path, cirr: CIRRDataset) -> None:
    """Official loading with the reduced decode (the library default) is still off the path, and so is the reverse."""
    for enc, named in ((TorchEncoder(MODEL, WEIGHTS, device="cpu", image_loading="official"), "decode='reduce'"),
                       (TorchEncoder(MODEL, WEIGHTS, device="cpu", decode="exact"), "image_loading='product'")):
        with CIRCollection.create(str(tmp_path / "one.db"), "one", encoder=enc, if_exists="overwrite") as col:
            deviations = official_deviations(col)
            assert deviations and all(named in d for d in deviations)
            with pytest.raises(ConfigError, match=named):
                evaluate(cirr, col, composer="image", progress=False)


def test_an_encoder_without_image_preprocessing_is_recorded_as_unchecked(tmp_path: Path, cirr: CIRRDataset) -> None:
    with CIRCollection.create(str(tmp_path / "f.db"), "f", encoder=FakeEncoder(dim=16)) as col:
        assert official_deviations(col) is None
        res = evaluate(cirr, col, composer="image", progress=False)
        assert res.official is None and res.config["official"] is None


def test_the_cli_refuses_what_python_refuses(tmp_path: Path, cirr: CIRRDataset,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Exact decoding but product loading: the CLI once accepted such a collection; now both refuse it."""
    db = str(tmp_path / "cli.db")
    enc = TorchEncoder(MODEL, WEIGHTS, device="cpu", decode="exact")
    with CIRCollection.create(db, "mine", encoder=enc) as col:
        with pytest.raises(ConfigError, match="image_loading='product'"):
            evaluate(cirr, col, composer="image", progress=False)
    capsys.readouterr()
    code = main(["eval", "cirr", "--root", str(cirr.root), "--uri", db, "--collection", "mine", "--device", "cpu",
                 "--composer", "image"])
    err = capsys.readouterr().err
    assert code == 2
    assert "image_loading='product'" in err and "--collection" in err
