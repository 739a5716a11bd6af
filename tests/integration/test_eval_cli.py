"""``cir-milvus eval`` end to end on the miniature data sets, through Milvus Lite, with the fake encoder.

The CLI runs in-process (``cir_milvus.cli.main``) with ``--model fake`` so that the cached collection is re-opened
with a rebuilt :class:`~cir_milvus.encoders.FakeEncoder` (its recipe matches: same dim and seed).

Submission files on tiny galleries: the servers take exactly 50 ids per query, and the writers and validators
check an exact length (``top_k``, default 50), so a default-length file cannot be written from a 12-image CIRR or
16-image CIRCO gallery. The CLI therefore writes ``min(50, gallery - 1)`` ids for CIRR (reference removed) and
``min(50, gallery)`` for CIRCO and validates with that same ``top_k``; the CIRR subset file always holds 3 ids
(an ``img_set`` keeps 5 members after removing the reference). Real test splits always get 50.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")

from cir_milvus.cli import main  # noqa: E402
from cir_milvus.collection import CIRCollection  # noqa: E402
from cir_milvus.errors import DatasetError  # noqa: E402
from cir_milvus.eval import (  # noqa: E402
    CIRCODataset,
    CIRRDataset,
    fashioniq_datasets,
    make_miniature,
    validate_circo_submission,
    validate_cirr_submission,
)
from cir_milvus.eval.runner import evaluate_fashioniq  # noqa: E402

CONFIG_KEYS = {"model", "composer", "alpha", "preprocess", "index", "package_version"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {kind: make_miniature(kind, tmp_path_factory.mktemp(kind)) for kind in ("cirr", "fashioniq", "circo")}


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return str(tmp_path / "eval.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def metric_rows(out: str) -> dict[str, tuple[float, float, float]]:
    """``metric  Milvus  exact  diff`` rows of ``EvalResult.table()``."""
    rows = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(\S+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+([+-][\d.]+)", line.strip())
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
    return rows


def test_cirr_val_prints_milvus_and_exact_and_writes_config(roots: dict[str, Path], db: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "res" / "cirr.json"
    code, out, _ = run(capsys, "eval", "cirr", "--root", str(roots["cirr"]), "--uri", db, "--model", "fake",
                       "--alpha", "0.9", "--output", str(out_json))
    assert code == 0
    assert "Milvus" in out and "exact" in out and "diff" in out
    rows = metric_rows(out)
    assert {"R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3"} <= set(rows)
    assert "collection 'cirr_val'" in out and "(12 newly encoded)" in out
    payload = json.loads(out_json.read_text())
    assert CONFIG_KEYS <= set(payload["config"])
    assert payload["config"]["model"] == "fake" and payload["config"]["alpha"] == 0.9
    assert payload["config"]["composer"]["name"] == "slerp"
    assert payload["config"]["collection"] == "cirr_val"
    (res,) = payload["results"]
    assert set(res["milvus"]) == set(res["exact"]) == set(rows)
    assert res["milvus"]["R@1"] == pytest.approx(rows["R@1"][0], abs=0.01)
    assert CONFIG_KEYS - {"alpha"} <= set(res["config"])

    # cached: the second run re-uses the stored gallery
    code, out2, _ = run(capsys, "eval", "cirr", "--root", str(roots["cirr"]), "--uri", db, "--model", "fake",
                        "--alpha", "0.9")
    assert code == 0
    assert "12 images (0 newly encoded)" in out2
    assert metric_rows(out2) == rows


def test_fashioniq_three_categories_in_one_collection(roots: dict[str, Path], db: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "fiq.json"
    code, out, _ = run(capsys, "eval", "fashioniq", "--root", str(roots["fashioniq"]), "--uri", db, "--model", "fake",
                       "--output", str(out_json))
    assert code == 0
    rows = metric_rows(out)
    assert {f"{c}/R@{k}" for c in ("dress", "shirt", "toptee", "avg") for k in (10, 50)} <= set(rows)
    assert "collection 'fashioniq_val'" in out and "24 images" in out
    payload = json.loads(out_json.read_text())
    assert payload["config"]["categories"] == ["dress", "shirt", "toptee"]
    assert CONFIG_KEYS <= set(payload["config"])

    # every query ranks only its own category's gallery (Milvus filter on metadata["category"])
    dss = fashioniq_datasets(roots["fashioniq"])
    with CIRCollection.open(db, "fashioniq_val", model="fake") as col:
        res = evaluate_fashioniq(dss, col, composer="slerp", ingest=False, progress=False)
    for ds in dss.values():
        gallery = {g.id for g in ds.corpus()}
        for q in ds.queries():
            assert set(res.rankings[q.query_id]) == gallery
            assert set(res.exact_rankings[q.query_id]) == gallery
    assert res.milvus.keys() == res.exact.keys()


def test_circo_val_scores_map(roots: dict[str, Path], db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "eval", "circo", "--root", str(roots["circo"]), "--uri", db, "--model", "fake")
    assert code == 0
    rows = metric_rows(out)
    assert {"mAP@5", "mAP@10", "mAP@25", "mAP@50", "R@5"} <= set(rows)
    assert all(abs(diff) < 1e-9 for _, _, diff in rows.values())  # 16 vectors: HNSW is exact


def test_synthetic(tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "eval", "synthetic", "--root", str(tmp_path / "world"), "--split", "val", "--uri", db,
                       "--model", "fake", "--composer", "text")
    assert code == 0
    rows = metric_rows(out)
    assert {"R@1", "R@5", "R@10", "R@50"} <= set(rows)
    assert "synthetic/val  composer=text" in out


def test_cirr_test1_submission_validates(roots: dict[str, Path], db: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    sub = tmp_path / "sub"
    code, out, _ = run(capsys, "eval", "cirr", "--root", str(roots["cirr"]), "--split", "test1", "--uri", db,
                       "--model", "fake", "--submission", str(sub))
    assert code == 0
    assert "unlabeled split: not scored" in out
    assert metric_rows(out) == {}
    recall, subset = sub / "cirr_test1_recall.json", sub / "cirr_test1_recall_subset.json"
    assert f"submission (validated): {recall}" in out and f"submission (validated): {subset}" in out
    queries = CIRRDataset(roots["cirr"], "test1").queries()
    gallery = 12
    validate_cirr_submission(recall, queries, metric="recall", top_k=gallery - 1)
    validate_cirr_submission(subset, queries, metric="recall_subset")
    with pytest.raises(DatasetError, match="expected exactly 50"):
        validate_cirr_submission(recall, queries)  # the default length is the server's 50
    payload = json.loads(recall.read_text())
    assert payload["version"] == "rc2" and payload["metric"] == "recall"
    assert set(payload) - {"version", "metric"} == {q.query_id for q in queries}
    sub_payload = json.loads(subset.read_text())
    for q in queries:
        assert len(payload[q.query_id]) == gallery - 1 and q.reference_id not in payload[q.query_id]
        assert len(sub_payload[q.query_id]) == 3 and set(sub_payload[q.query_id]) <= set(q.subset_ids or ())


def test_circo_test_submission_validates(roots: dict[str, Path], db: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    sub = tmp_path / "sub"
    code, out, _ = run(capsys, "eval", "circo", "--root", str(roots["circo"]), "--split", "test", "--uri", db,
                       "--model", "fake", "--submission", str(sub), "--output", str(tmp_path / "circo.json"))
    assert code == 0
    path = sub / "circo_test.json"
    assert f"submission (validated): {path}" in out
    queries = CIRCODataset(roots["circo"], "test").queries()
    validate_circo_submission(path, queries, top_k=16)
    payload = json.loads(path.read_text())
    assert sorted(payload) == ["0", "1"]
    assert all(len(ids) == 16 and all(isinstance(i, int) for i in ids) for ids in payload.values())
    written = json.loads((tmp_path / "circo.json").read_text())
    assert written["submission"] == [str(path)] and written["results"][0]["milvus"] == {}


def test_sweep_writes_best_alpha_into_recipe(roots: dict[str, Path], db: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "sweep.json"
    code, out, _ = run(capsys, "eval", "cirr", "--root", str(roots["cirr"]), "--uri", db, "--model", "fake",
                       "--sweep", "0.2,0.5,0.9", "--write-default", "--output", str(out_json))
    assert code == 0
    m = re.search(r"best alpha ([\d.]+) by Milvus R@1", out)
    assert m is not None
    best = float(m.group(1))
    assert best in (0.2, 0.5, 0.9)
    assert "slerp a=0.20" in out and "slerp a=0.90" in out
    payload = json.loads(out_json.read_text())
    assert payload["best_alpha"] == pytest.approx(best) and len(payload["results"]) == 3
    if "plot: " in out:  # matplotlib installed (the plot extra): the sweep's PNG sits next to --output
        from PIL import Image

        with Image.open(out_json.with_suffix(".png")) as im:
            assert im.format == "PNG" and im.width > 400
    else:
        assert "no plot" in out and "cir_milvus[plot]" in out
    with CIRCollection.open(db, "cirr_val", model="fake") as col:
        assert col.recipe.composer["name"] == "slerp"
        assert col.recipe.composer["params"]["alpha"] == pytest.approx(best)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cirr", "--split", "test1", "--sweep", "0.5,0.9"], "--sweep needs a labeled split"),
        (["cirr", "--write-default"], "pass --sweep too"),
        (["cirr", "--sweep", "0.5,1.5"], "must lie in [0, 1]"),
        (["fashioniq", "--submission", "x"], "--submission is for the CIRR and CIRCO"),
    ],
)
def test_bad_arguments_exit_2(roots: dict[str, Path], db: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                              message: str) -> None:
    root = roots["fashioniq" if argv[0] == "fashioniq" else "cirr"]
    code, _, err = run(capsys, "eval", argv[0], "--root", str(root), "--uri", db, "--model", "fake", *argv[1:])
    assert code == 2
    assert message in err


def test_fashioniq_sweep_uses_the_category_average(roots: dict[str, Path], db: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "eval", "fashioniq", "--root", str(roots["fashioniq"]), "--uri", db, "--model", "fake",
                       "--sweep", "0.5,0.9", "--write-default")
    assert code == 0
    m = re.search(r"best alpha ([\d.]+) by Milvus avg/R@10", out)
    assert m is not None
    with CIRCollection.open(db, "fashioniq_val", model="fake") as col:
        assert col.recipe.composer["params"]["alpha"] == pytest.approx(float(m.group(1)))


def test_searle_head_on_fashioniq(roots: dict[str, Path], db: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A pseudo-token composer with --head (a random SEARLE-shaped phi for the 32-d fake encoder)."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    sd = {"layers.0.weight": torch.randn(64, 32, generator=g), "layers.0.bias": torch.zeros(64),
          "layers.3.weight": torch.randn(64, 64, generator=g) / 8, "layers.3.bias": torch.zeros(64),
          "layers.6.weight": torch.randn(32, 64, generator=g) / 8, "layers.6.bias": torch.zeros(32)}
    head = tmp_path / "SEARLE_fake.pt"
    torch.save({"epoch": 1, "Phi": sd}, head)
    out_json = tmp_path / "searle.json"
    code, out, _ = run(capsys, "eval", "fashioniq", "--root", str(roots["fashioniq"]), "--uri", db, "--model", "fake",
                       "--composer", "searle", "--head", str(head), "--output", str(out_json))
    assert code == 0
    assert "composer=searle" in out and "avg/R@10" in metric_rows(out)
    assert "collection 'fashioniq_val_targetpad'" in out  # SEARLE's gallery is cached apart (targetpad)
    cfg = json.loads(out_json.read_text())["config"]
    assert cfg["composer"]["name"] == "searle" and cfg["alpha"] is None and cfg["head"] == str(head)
    params = cfg["composer"]["params"]
    assert params["preprocess"] == "targetpad" and params["fiq_join"] == "both"
    assert params["template"] == "a photo of $ that {}"


def test_eval_refuses_a_decode_shortcut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Benchmarks decode exactly as the official code: --decode is an ingest speed option, refused by eval."""
    from cir_milvus.cli import main

    code = main(["eval", "synthetic", "--root", str(tmp_path), "--uri", str(tmp_path / "e.db"), "--model",
                 "cir-demo-tiny", "--decode", "draft", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "--decode draft" in err and "official" in err
