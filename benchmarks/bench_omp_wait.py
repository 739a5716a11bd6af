"""OpenMP wait policy: cir_milvus's passive waiting vs libgomp's default spinning, quiet and under load.

    python benchmarks/bench_omp_wait.py --data /tmp/perf/pdata          # 3 interleaved rounds, load 0 and 1
    python benchmarks/bench_omp_wait.py --rounds 1 --images 500 --no-vit  # quick look

``import cir_milvus`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (:mod:`cir_milvus._runtime`). This script
compares that default with libgomp's own (spin up to 300,000 iterations, about 3 ms, before sleeping; selected here by
``GOMP_SPINCOUNT=300000``, which is what libgomp uses when neither variable is set, and which cir_milvus leaves
alone). Each cell runs in a fresh process: demo-model ingest of photo JPEGs (default decode, the library's decode
workers), encode alone (uint8 batches of 64, all cores), query-text latency (one caption, p50/p99), and ViT-B-32
(random weights) encode alone. ``--load N`` adds N busy-looping processes for the rounds that measure "under load"
(another job on the machine). Rounds alternate the two policies; medians with min–max. JSON in
``benchmarks/results/omp_wait.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

POLICIES = {"passive (cir_milvus default)": {}, "spin (libgomp default)": {"GOMP_SPINCOUNT": "300000"}}
METRICS = ("ingest_per_s", "ingest_parent_cpu_s", "encode_per_s", "text_p50_ms", "text_p99_ms", "vit_encode_per_s")


def _child(a: argparse.Namespace) -> None:
    import numpy as np
    from bench_batch import rate

    from cir_milvus import CIRCollection
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.ingest import ingest

    out: dict[str, Any] = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                           "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}
    enc = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")
    s = enc.preprocess_config.size
    px = np.random.default_rng(0).integers(0, 256, (64, s, s, 3), dtype=np.uint8)
    out["encode_per_s"] = rate(lambda: enc.encode_uint8(px), 64, seconds=3.0)
    lat = []
    enc.encode_texts(["warm up"])
    for i in range(100):
        t0 = time.perf_counter()
        enc.encode_texts([f"the same jacket but in colour {i}"])
        lat.append(1000 * (time.perf_counter() - t0))
    out["text_p50_ms"], out["text_p99_ms"] = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    paths = sorted(str(p) for p in Path(a.photos).glob("*.jpg"))[: a.images]
    with tempfile.TemporaryDirectory() as tmp:
        col = CIRCollection.create(str(Path(tmp) / "w.db"), "photos", encoder=enc)
        t0, c0 = time.perf_counter(), time.process_time()
        rep = ingest(col, paths, progress=False)
        out["ingest_per_s"] = rep.stored / (time.perf_counter() - t0)
        out["ingest_parent_cpu_s"] = time.process_time() - c0
        col.close()
    if a.vit:
        vit = TorchEncoder("ViT-B-32", a.vit, device="cpu")
        vx = np.random.default_rng(0).integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
        out["vit_encode_per_s"] = rate(lambda: vit.encode_uint8(vx), 64, seconds=6.0)
    print("RESULT " + json.dumps(out), flush=True)


def _run_cell(env_extra: dict[str, str], a: argparse.Namespace, photos: Path, vit: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    cmd = [sys.executable, __file__, "--child", "--photos", str(photos), "--images", str(a.images), "--vit", vit]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--load", default="0,1", help="busy-looping background processes per condition (default: 0,1)")
    p.add_argument("--no-vit", action="store_true", help="skip the ViT-B-32 encode cell")
    p.add_argument("--data", type=Path, default=None, help="keep the JPEGs and the checkpoint here (default: temp dir)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "omp_wait.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--photos", default="", help=argparse.SUPPRESS)
    p.add_argument("--vit", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a)
        return {}
    from _photos import make_photos
    from bench_peers import random_checkpoint, summary

    tmpdir = None if a.data else tempfile.TemporaryDirectory(prefix="cir-omp-")
    data = a.data or Path(tmpdir.name)  # type: ignore[union-attr]
    _, photos_desc = make_photos(data / "photos", a.images)
    vit = "" if a.no_vit else str(random_checkpoint("ViT-B-32", data))
    res: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                           "command": "python benchmarks/bench_omp_wait.py " + " ".join(argv or sys.argv[1:]),
                           "photos": photos_desc, "images": a.images, "conditions": {}}
    names = list(POLICIES)
    for load in (int(x) for x in a.load.split(",")):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
            for r in range(a.rounds):
                for name in names[r % 2:] + names[: r % 2]:
                    got = _run_cell(POLICIES[name], a, data / "photos", vit)
                    runs[name].append(got)
                    print(f"[load {load}] round {r + 1} {name:<28} " + "  ".join(
                        f"{m} {got[m]:.1f}" for m in METRICS if m in got), flush=True)
        finally:
            for h in hogs:
                h.kill()
        cond = {}
        for name in names:
            cond[name] = {m: summary([x[m] for x in runs[name]]) for m in METRICS if m in runs[name][0]}
            cond[name]["env"] = {k: runs[name][0][k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        res["conditions"][f"load {load}"] = cond
    print(table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    if tmpdir is not None:
        tmpdir.cleanup()
    return res


def table(res: dict[str, Any]) -> str:
    """A Markdown table of the medians (min–max)."""
    rows = ["| condition | policy | ingest img/s (parent CPU s) | encode img/s | text p50 / p99 ms | ViT-B-32 encode img/s |",
            "|---|---|---|---|---|---|"]
    for cond, pol in res["conditions"].items():
        for name, m in pol.items():
            rows.append(f"| {cond} | {name} | {_cell(m, 'ingest_per_s', 0)} ({m['ingest_parent_cpu_s']['median']:.1f}) | "
                        f"{_cell(m, 'encode_per_s', 0)} | {m['text_p50_ms']['median']:.1f} / "
                        f"{m['text_p99_ms']['median']:.1f} | {_cell(m, 'vit_encode_per_s', 1)} |")
    return "\n".join(rows)


def _cell(m: dict[str, Any], k: str, digits: int) -> str:
    if k not in m:
        return "-"
    return f"{m[k]['median']:.{digits}f} ({m[k]['min']:.{digits}f}–{m[k]['max']:.{digits}f})"


if __name__ == "__main__":
    main()
