"""``cir-milvus serve`` from an ONNX bundle in a process where torch, torchvision and open_clip cannot be imported:
a real uvicorn server on 127.0.0.1 answers every composer the bundle offers, and its hits equal the torch encoder's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from no_torch import BLOCKER  # noqa: E402
from serve_helpers import free_port, write_gallery  # noqa: E402

from cir_milvus import CIRCollection  # noqa: E402

pytestmark = pytest.mark.integration


CHILD = '''
import json, sys, threading, time
import httpx, uvicorn
from cir_milvus import CIRCollection
from cir_milvus.cli import build_parser
from cir_milvus.cli.serve import build_app_from_args

cfg = json.load(open(sys.argv[1]))
col = CIRCollection.create(cfg["db"], "c", model="bundle:" + cfg["bundle"])
ids = list(col.add(cfg["paths"], metadata=cfg["metadata"]))
col.close()

args = build_parser().parse_args(["serve", "--uri", cfg["db"], "--collection", "c", "--image-root", cfg["root"],
                                  "--filter-field", "colour", "--port", str(cfg["port"])])
app, opened = build_app_from_args(args)
server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
base = f"http://{args.host}:{args.port}"
for _ in range(200):
    try:
        if httpx.get(base + "/healthz").status_code == 200:
            break
    except httpx.HTTPError:
        time.sleep(0.05)
report = {"info": httpx.get(base + "/info").json(), "hits": {}}
ref = open(cfg["reference"], "rb").read()
for name in sorted(report["info"]["collections"][0]["composers"]):
    files = None if name == "text" else {"image": ("ref.png", ref, "image/png")}
    r = httpx.post(base + "/search", data={"text": cfg["text"], "composer": name, "k": "5"}, files=files)
    report["hits"][name] = r.json()["hits"] if r.status_code == 200 else r.text
# the library's query arguments (issue 26), torch-free: vector operations over the bundle's encoder
extended = {"ref_id": ids[2], "text": cfg["text"], "negative": "red", "like": [ids[5]], "unlike": [ids[6]],
            "alpha": [0.6, 0.9], "dedupe": 0.99, "k": 5}
report["extended"] = [extended, httpx.post(base + "/search", json=extended).json()]
thumb = httpx.get(base + report["hits"]["slerp"][0]["thumbnail_url"])
report["thumb"] = [thumb.status_code, thumb.headers.get("content-type")]
report["page"] = httpx.get(base + "/").status_code
server.should_exit = True
thread.join(10)
for c in opened:
    c.close()
# a collection built with torch, served from a bundle exported without heads: the composers that need a head the
# bundle lacks (and that only torch could load) are listed as unavailable, with the reason; the others serve
from fastapi.testclient import TestClient
args = build_parser().parse_args(["serve", "--uri", cfg["torch_db"], "--collection", "c", "--model",
                                  "bundle:" + cfg["plain_bundle"]])
app, opened = build_app_from_args(args)
with TestClient(app) as tc:
    report["plain_info"] = tc.get("/info").json()["collections"][0]
    report["plain_slerp"] = tc.post("/search", data={"text": cfg["text"], "composer": "slerp", "k": "5"},
                                    files={"image": ("ref.png", ref, "image/png")}).json()
    r = tc.post("/search", data={"text": cfg["text"], "composer": "lincir", "k": "5"},
                files={"image": ("ref.png", ref, "image/png")})
    report["plain_lincir"] = [r.status_code, r.json()]
for c in opened:
    c.close()
report["torch_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "open_clip", "torchvision"})
print(json.dumps(report))
'''


def test_serve_from_a_bundle_without_torch(demo_bundles, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enc, heads = demo_bundles.encoder, demo_bundles.heads  # the demo model and its LinCIR and Pic2Word heads
    bundle = demo_bundles.get(fused=False, heads=True)
    plain_bundle = demo_bundles.get(fused=False)  # as the README exports: no heads
    paths, metadata = write_gallery(tmp_path / "gallery", n=24, seed=4)
    text = "make it blue"
    torch_db = str(tmp_path / "torch.db")
    with CIRCollection.create(torch_db, "c", encoder=enc) as built:  # closed: the child opens the file
        built.add(paths[1:], metadata=metadata[1:])
    cfg = {"db": str(tmp_path / "ort.db"), "bundle": str(bundle), "paths": paths[1:], "metadata": metadata[1:],
           "root": str(tmp_path / "gallery"), "reference": paths[0], "text": text, "port": free_port(),
           "torch_db": torch_db, "plain_bundle": str(plain_bundle)}
    (tmp_path / "case.json").write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(CHILD), str(tmp_path / "case.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["torch_loaded"] == []
    info = report["info"]["collections"][0]
    assert info["backend"] == "onnx"
    assert info["runtime"] == {"backend": "onnxruntime", "device": "cpu", "provider": "CPUExecutionProvider"}
    assert sorted(info["unavailable_composers"]) == ["searle"]  # no searle head in the bundle: listed, with why
    assert info["unavailable_composers"]["searle"]
    assert sorted(info["composers"]) == ["combined", "image", "lincir", "pic2word", "slerp", "sum", "text"]
    assert report["thumb"] == [200, "image/jpeg"] and report["page"] == 200

    plain = report["plain_info"]
    assert plain["runtime"]["backend"] == "onnxruntime"
    for name in ("lincir", "pic2word"):  # the demo's shipped heads need torch here: unavailable, saying so
        assert "torch" in plain["unavailable_composers"][name], plain["unavailable_composers"]
        assert name not in plain["composers"]
    assert {"slerp", "image", "text", "sum"} <= set(plain["composers"])
    status, body = report["plain_lincir"]
    assert status == 400 and "not offered" in body["error"]["message"] and "torch" in body["error"]["message"]

    # the same queries through the torch encoder in this process
    col = CIRCollection.open(torch_db, "c", encoder=enc)
    for name, got in report["hits"].items():
        assert isinstance(got, list) and len(got) == 5, (name, got)
        kind = {"combined": "lincir"}.get(name, name)
        extra = {"head": heads[kind]} if kind in heads else {}
        want = col.search(None if name == "text" else paths[0], text, k=5, composer=name, **extra)
        np.testing.assert_allclose([h["score"] for h in got], [h.score for h in want], atol=2e-4, err_msg=name)
        assert [h["id"] for h in got][:2] == [h.id for h in want][:2], name
    want = col.search(paths[0], text, k=5, composer="slerp")
    np.testing.assert_allclose([h["score"] for h in report["plain_slerp"]["hits"]], [h.score for h in want],
                               atol=2e-4)
    query, got = report["extended"]
    want = col.search(**{k: v for k, v in query.items()})  # the same ids: content ids of the same files
    assert len(got["hits"]) == 5 and [h["id"] for h in got["hits"]][:2] == [h.id for h in want][:2], got
    assert not {query["ref_id"], *query["like"], *query["unlike"]} & {h["id"] for h in got["hits"]}
    col.close()
