"""The ``cir-milvus`` command line on Milvus Lite: ingest, search (+ contact sheet), info."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from PIL import Image  # noqa: E402

from cir_milvus.cli import main  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    world = SyntheticWorld(seed=5, instances=1)
    for i, it in enumerate(world.gallery()[:20]):
        folder = root / "sub" if i % 2 else root
        it.render().save(folder / f"{it.id}.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("reported: not an image suffix")
    return root


def test_ingest_search_info(tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    common = ["--uri", db, "--collection", "imgs", "--device", "cpu"]
    report = tmp_path / "skipped.jsonl"
    assert main(["ingest", str(image_dir), *common, "--skip-report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "22 images in" in out  # every entry of the folder is either stored or reported
    assert "skipped 2" in out and "corrupt.jpg" in out
    assert "holds 20 images" in out
    skipped = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(Path(s["source"]).name for s in skipped) == ["corrupt.jpg", "notes.txt"]

    # re-ingesting the same folder leaves the count unchanged and encodes nothing
    assert main(["ingest", str(image_dir), *common]) == 0
    out = capsys.readouterr().out
    assert "stored 0 " in out and "already stored 20" in out and "holds 20 images" in out

    ref = sorted(image_dir.glob("*.png"))[0]
    grid = tmp_path / "grid.png"
    assert main(["search", *common, "--image", str(ref), "--text", "make it blue", "-k", "4", "--grid",
                 str(grid)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 4
    assert ref.name not in out, "the reference itself is excluded from its hits"
    with Image.open(grid) as im:
        assert im.width > 4 * 96 and im.height >= 96

    assert main(["search", *common, "--image", str(ref), "--text", "make it blue", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 10 and all({"id", "score", "metadata", "source"} <= set(h) for h in hits)
    assert hits == sorted(hits, key=lambda h: -h["score"])

    assert main(["info", *common]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 20
    assert info["recipe"]["encoder"]["model"] == "cir-demo-tiny"
    assert info["recipe"]["encoder"]["pretrained"] == "cir-demo"
    assert info["recipe"]["composer"]["name"] == "slerp"
    assert info["index"]["index_type"] == "HNSW"


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "none.db")
    assert main(["info", "--uri", db, "--collection", "missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no collection 'missing'" in err
