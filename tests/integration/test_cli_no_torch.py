"""Torch-free serving from the command line: a collection ingested with torch (the demo model) is inspected and
searched, through an ONNX bundle of the same weights, by a ``cir-milvus`` process in which torch, torchvision and
open_clip cannot be imported (the same import blocker as test_ort_no_torch.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from no_torch import BLOCKER  # noqa: E402

from cir_milvus import CIRCollection, EncoderSpec  # noqa: E402
from cir_milvus.cli import main  # noqa: E402
from cir_milvus.eval import make_miniature  # noqa: E402
from cir_milvus.models.demo import DATA_DIR  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration


CHILD = '''
import contextlib, io, json, sys
from cir_milvus.cli import main

runs = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    runs.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
runs.append(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "open_clip", "torchvision"}))
print(json.dumps(runs))
'''


def test_info_and_bundle_search_without_torch(demo_bundles, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for it in SyntheticWorld(seed=7, instances=1).gallery()[:20]:
        it.render().save(imgs / f"{it.id}.png")
    new = tmp_path / "more"
    new.mkdir()
    for it in SyntheticWorld(seed=8, instances=1).gallery()[:3]:
        it.render().save(new / f"{it.id}.png")
    ref = str(sorted(imgs.glob("*.png"))[0])
    db = str(tmp_path / "t.db")
    cirr = make_miniature("cirr", tmp_path / "cirr")
    assert main(["ingest", str(imgs), "--uri", db, "--collection", "c", "--model", "cir-demo-tiny", "--device", "cpu",
                 "--no-progress", "-q"]) == 0
    lincir = str(DATA_DIR / "cir-demo-tiny.lincir.safetensors")
    bundle = demo_bundles.get(fused=False, heads=True)  # the demo model with its LinCIR (and Pic2Word) head
    with CIRCollection.open(db, "c", encoder=EncoderSpec(device="cpu")) as col:
        want_slerp = [h.id for h in col.search(ref, "make it blue", k=5)]
        want_lincir = [h.id for h in col.search(ref, "make it blue", k=5, composer="lincir", head=lincir)]

    common = ["--uri", db, "--collection", "c"]
    with_bundle = [*common, "--model", f"bundle:{bundle}", "--json", "-k", "5"]
    runs = [
        ["info", *common],
        ["info", *common, "--json"],
        ["search", *with_bundle, "--image", ref, "--text", "make it blue"],
        ["search", *with_bundle, "--image", ref, "--text", "make it blue", "--composer", "lincir", "--head", "lincir"],
        ["search", *with_bundle, "--composer", "text", "--text", "a blue circle"],
        ["search", *common, "--image", ref, "--text", "make it blue"],  # no --model: the torch recipe
        ["ingest", str(new), *common, "--model", f"bundle:{bundle}", "--no-progress", "--workers", "0"],
        ["eval", "cirr", "--root", str(cirr), "--uri", str(tmp_path / "eval.db"), "--model", f"bundle:{bundle}",
         "--json"],
        ["eval", "cirr", "--root", str(cirr), "--uri", str(tmp_path / "eval.db"), "--model", f"bundle:{bundle}",
         "--composer", "lincir", "--head", "lincir", "--collection", "lincir", "--json"],  # the bundle's own head
        ["set-default", *common, "--model", f"bundle:{bundle}", "--composer", "slerp", "--alpha", "0.7"],  # last
    ]
    script = BLOCKER + textwrap.dedent(CHILD)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(runs)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *results, torch_modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert torch_modules == []
    for argv, r in zip(runs, results):
        if argv[0] == "search" and "--model" not in argv:
            continue
        assert r["code"] == 0, (argv, r["err"])

    table, info = results[0]["out"], json.loads(results[1]["out"])
    assert "cir-demo-tiny (torch backend" in table and "20" in table
    assert info["count"] == 20 and info["recipe"]["encoder"]["backend"] == "torch"
    assert [h["id"] for h in json.loads(results[2]["out"])] == want_slerp
    assert [h["id"] for h in json.loads(results[3]["out"])] == want_lincir
    assert len(json.loads(results[4]["out"])) == 5
    # without --model the torch recipe cannot be served here: one line that names the bundle option
    no_model = results[5]
    assert no_model["code"] == 2 and "--model bundle:DIR" in no_model["err"] and len(no_model["err"].splitlines()) == 1
    assert "holds 23 images" in results[6]["out"]
    scored = json.loads(results[7]["out"])  # eval scores the miniature CIRR through the bundle
    assert scored["results"][0]["config"]["backend"] == "onnx" and "R@1" in scored["results"][0]["milvus"]
    lincir_eval = json.loads(results[8]["out"])["results"][0]
    assert lincir_eval["config"]["composer"]["name"] == "lincir" and "R@1" in lincir_eval["milvus"]
    assert "-> slerp (alpha=0.7)" in results[9]["out"]


@pytest.mark.slow
def test_demo_runs_on_the_shipped_bundle_without_torch(tmp_path: Path) -> None:
    """``cir-milvus demo`` in a process where torch cannot be imported runs the bundle shipped in the package on
    onnxruntime (about 100 s on 2 cores)."""
    runs = [["demo", "--workdir", str(tmp_path / "demo"), "--queries", "100", "--json"]]
    proc = subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(CHILD), json.dumps(runs)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, torch_modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert torch_modules == [] and result["code"] == 0, result["err"][-2000:]
    figures = json.loads(result["out"])
    names = {r["config"]["composer"]["name"] for r in figures["results"]}
    assert {"slerp", "lincir", "pic2word", "combined"} <= names  # the bundle's own heads serve the pseudo-token rows
    assert figures["slerp_margin_pass"]
