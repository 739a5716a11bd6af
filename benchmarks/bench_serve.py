"""``cir-milvus serve`` throughput and latency: queries/s and p50/p99 of ``POST /search`` (an uploaded reference
image + a text, slerp) under 1, 4 and 16 concurrent clients on 127.0.0.1, with the torch encoder and with an ONNX
bundle, with and without batching concurrent queries into one encoder pass, next to in-process
``CIRCollection.search``.

    python benchmarks/bench_serve.py               # CPU, demo model, writes benchmarks/results/serve.json

The server is the real command (``python -m cir_milvus.cli serve ...``) in its own process; clients are threads
with one keep-alive ``httpx.Client`` each. Everything runs on the shipped demo model over the synthetic world.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus import EncoderSpec

TEXTS = ["make it blue", "turn it into a star", "on a white background", "make it large", "a red one"]


def _percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(xs)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _in_process(col: Any, refs: list[bytes], n: int) -> dict[str, Any]:
    for i in range(5):  # warm-up
        col.search(refs[i % len(refs)], TEXTS[i % len(TEXTS)], k=10)
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        col.search(refs[i % len(refs)], TEXTS[i % len(TEXTS)], k=10)
        lat.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    return {"qps": round(n / wall, 1), **_percentiles(lat)}


def _load(base: str, refs: list[bytes], clients: int, per_client: int) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            http.get("/healthz")
            barrier.wait()
            for i in range(per_client):
                j = c * per_client + i
                s = time.perf_counter()
                r = http.post("/search", data={"text": TEXTS[j % len(TEXTS)], "k": "10"},
                              files={"image": ("ref.png", refs[j % len(refs)], "image/png")})
                d = time.perf_counter() - s
                with lock:
                    (lat.append(d) if r.status_code == 200 else errors.append(r.text[:200]))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return {"clients": clients, "qps": round(len(lat) / wall, 1), **_percentiles(lat)}


def _serve(db: str, port: int, max_batch: int, threads: int) -> subprocess.Popen[bytes]:
    import httpx

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch; onnxruntime keeps its own default
    cmd = [sys.executable, "-m", "cir_milvus.cli", "serve", "--uri", db, "--collection", "c", "--port", str(port),
           "--max-batch", str(max_batch), "--request-timeout", "120"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 180 s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=2, help="renders per attribute combination (2 → 1,024 images)")
    p.add_argument("--requests", type=int, default=96, help="requests per load level (split over the clients)")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--backends", default="torch,bundle")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads, in-process and in the server (default 1: on a small shared machine "
                        "more threads contend with the server's own threads; onnxruntime keeps its default)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve.json")
    args = p.parse_args(argv)

    import torch
    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus import CIRCollection
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.synthetic import SyntheticWorld

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="cir-bench-serve-"))
    items = SyntheticWorld(seed=11, instances=args.instances).gallery()
    print(f"rendering {len(items)} synthetic images to {tmp} ...", flush=True)
    paths = []
    for it in items:
        path = tmp / f"{it.id}.png"
        it.render().save(path)
        paths.append(str(path))
    refs = [Path(x).read_bytes() for x in paths[:: max(1, len(paths) // 50)]]
    enc = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")
    bundle = export_bundle(enc, tmp / "bundle", fused=False)
    clients = [int(c) for c in args.clients.split(",")]
    res: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "threads": args.threads, "load_average_at_start": [round(x, 1) for x in os.getloadavg()]},
        "setup": {"gallery": len(paths), "composer": "slerp", "k": 10, "requests_per_level": args.requests,
                  "reference": "uploaded PNG (multipart)", "uri": "Milvus Lite file"},
        "command": "python benchmarks/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "in_process": {}, "http": {},
    }
    for backend in args.backends.split(","):
        db = str(tmp / f"{backend}.db")
        model = {"model": "cir-demo-tiny", "pretrained": "cir-demo"} if backend == "torch" else \
            {"model": f"bundle:{bundle}"}
        col = CIRCollection.create(db, "c", encoder=EncoderSpec(device="cpu"), **model)
        col.add(paths, batch_size=128)
        col.close()
        col = CIRCollection.open(db, "c", encoder=EncoderSpec(device="cpu"))  # as the server finds it: reopened, indexed
        res["in_process"][backend] = {**_in_process(col, refs, n=args.requests),
                                      "load_average_1m": round(os.getloadavg()[0], 1)}
        print(f"{backend:6s} in-process  {res['in_process'][backend]}", flush=True)
        col.close()
        for max_batch in (1, 32):
            port = _free_port()
            proc = _serve(db, port, max_batch, args.threads)
            try:
                base = f"http://127.0.0.1:{port}"
                _load(base, refs, 2, 4)  # warm-up
                rows = []
                for c in clients:
                    row = {**_load(base, refs, c, max(1, args.requests // c)),
                           "load_average_1m": round(os.getloadavg()[0], 1)}
                    rows.append(row)
                    print(f"{backend:6s} max_batch={max_batch:<3d} {row}", flush=True)
                res["http"][f"{backend}/max_batch={max_batch}"] = rows
            finally:
                proc.terminate()
                proc.wait(30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
