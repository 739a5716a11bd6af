"""``cir-milvus demo`` end to end: synthetic gallery → Milvus Lite → composed queries → recall table + PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from PIL import Image  # noqa: E402

from cir_milvus.cli import main  # noqa: E402

pytestmark = pytest.mark.integration


def test_demo_prints_recall_table_and_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "demo"
    code = main(["demo", "--workdir", str(workdir), "--device", "cpu", "--queries", "200"])  # half the default: suite time
    out = capsys.readouterr().out
    results = json.loads((workdir / "demo_results.json").read_text())
    by_name = {r["config"]["composer"]["name"]: r for r in results["results"]}
    # the table has every composer with its Milvus recall
    for name in ("image", "text", "sum", "slerp"):
        assert name in by_name
        assert any(line.startswith(name) for line in out.splitlines())
    assert "R@1" in out and "R@10" in out
    # Milvus (HNSW) and exact search agree closely on 1,024 vectors
    for r in results["results"]:
        assert abs(r["milvus"]["R@1"] - r["exact"]["R@1"]) <= 2.0
    # the acceptance criterion of the demo: slerp beats both single-modality baselines by >= 15 points
    slerp = by_name["slerp"]["milvus"]["R@1"]
    assert slerp - by_name["image"]["milvus"]["R@1"] >= 15
    assert slerp - by_name["text"]["milvus"]["R@1"] >= 15
    assert "PASS" in out and code == 0
    # one line per query family, each scored on its own test queries against its naive alternative
    families = results["query_families"]
    assert set(families) == {"negation", "references", "feedback", "alphas"}
    lines = [line.strip() for line in out.splitlines()]
    for name, fam in families.items():
        assert fam["n"] == 200  # each family scores as many test queries as the demo was asked for
        assert any(line.startswith(name) and "R@10" in line for line in lines)
    with Image.open(workdir / "demo_queries.png") as im:
        assert im.width > 300 and im.height > 300
    if "recall against alpha" in out:  # matplotlib installed (the plot extra)
        with Image.open(workdir / "demo_alpha.png") as im:
            assert im.format == "PNG" and im.width > 400
        assert set(results["validation_sweeps"]) == set(results["tuned_alpha"])
