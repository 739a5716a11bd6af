"""The ingestion pipeline on Milvus Lite: kill -9 and resume, and the ``cir-milvus ingest`` sources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("milvus_lite")

from cir_milvus import CIRCollection, FakeEncoder  # noqa: E402
from cir_milvus.cli import main  # noqa: E402
from cir_milvus.images import content_id  # noqa: E402

pytestmark = pytest.mark.integration

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from cir_milvus import CIRCollection, FakeEncoder
    from cir_milvus.ingest import ingest

    class SlowFake(FakeEncoder):
        def encode_images(self, images, **kw):
            out = super().encode_images(images, **kw)
            time.sleep(0.05)
            print(f"encoded {len(images)}", flush=True)
            return out

    db, folder, out = sys.argv[1:4]
    col = CIRCollection.create(db, "c", encoder=SlowFake(dim=16), if_exists="open")
    report = ingest(col, folder, batch_size=8, workers=0, progress=False)
    with open(out, "w") as f:
        json.dump(report.to_dict(), f)
    col.close()
    """
)


def _folder(root: Path, n: int) -> list[Path]:
    root.mkdir()
    paths = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (10, 12, 3), dtype=np.uint8)
        p = root / f"{i:04d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def _stored_ids(db: str) -> list[str]:
    col = CIRCollection.open(db, "c", encoder=FakeEncoder(dim=16))
    try:
        return list(col.iter_ids())
    finally:
        col.close()


def test_kill_9_mid_ingest_then_rerun_gives_the_exact_count_without_re_encoding(tmp_path: Path) -> None:
    n = 160
    paths = _folder(tmp_path / "imgs", n)
    db, out = str(tmp_path / "c.db"), tmp_path / "report.json"
    args = [sys.executable, "-c", CHILD, db, str(tmp_path / "imgs"), str(out)]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    encoded = 0
    assert child.stdout is not None
    for line in child.stdout:
        encoded += int(line.split()[1])
        if encoded >= 64:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL, "the child was killed mid-way"
    assert not out.exists()

    before = _stored_ids(db)
    assert 0 < len(before) < n, f"expected a partial collection after kill -9, got {len(before)}"

    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["already_stored"] == len(before)
    assert report["encoded"] == report["stored"] == n - len(before), "nothing that was stored is encoded again"
    encoded_lines = sum(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("encoded"))
    assert encoded_lines == n - len(before)

    after = _stored_ids(db)
    assert len(after) == len(set(after)) == n, "exact count, no duplicates"
    assert set(after) == {content_id(p) for p in paths}


def test_cli_ingest_from_a_list_and_from_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ingest_helpers import write_shard

    paths = _folder(tmp_path / "imgs", 6)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG broken")
    lst = tmp_path / "list.jsonl"
    rows = [{"id": f"p{i}", "path": f"imgs/{p.name}", "brand": "acme" if i % 2 else "other"} for i, p in
            enumerate(paths)] + [{"id": "bad", "path": "imgs/broken.png"}]
    lst.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = str(tmp_path / "cli.db")
    common = ["--uri", db, "--collection", "c", "--model", "fake", "--workers", "0", "--no-progress"]
    skips, summary = tmp_path / "skips.jsonl", tmp_path / "summary.json"
    assert main(["ingest", "--list", str(lst), *common, "--skip-report", str(skips), "--summary-json",
                 str(summary)]) == 0
    out = capsys.readouterr().out
    assert "7 images in" in out and "stored 6" in out and "holds 6 images" in out
    assert [json.loads(line)["id"] for line in skips.read_text().splitlines()] == ["bad"]
    assert json.loads(summary.read_text())["skipped_by_reason"] == {"not_an_image": 1}

    png = [p.read_bytes() for p in paths]
    write_shard(tmp_path / "s-00000.tar", [(f"{i:09d}", {"i": i}, png[i]) for i in range(3)])
    write_shard(tmp_path / "s-00001.tar", [(f"{i:09d}", {"i": i}, png[i]) for i in range(3, 6)])
    assert main(["ingest", "--shards", str(tmp_path / "s-{00000..00001}.tar"), *common]) == 0
    assert "stored 6" in capsys.readouterr().out
    col = CIRCollection.open(db, "c", model="fake")
    assert len(col) == 12
    hits = col.search(paths[0], "x", k=3, composer="image", exclude_reference=False,
                      filter='metadata["brand"] == {b}', filter_params={"b": "other"})
    assert hits[0].id == "p0"
    col.close()
    assert main(["ingest", str(tmp_path / "imgs"), "--list", str(lst), *common]) == 2
    assert "exactly one of" in capsys.readouterr().err
