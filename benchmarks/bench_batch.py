"""Encoder throughput by batch size and backend on this CPU: the measurement behind ``ingest(batch_size=64)``.

    python benchmarks/bench_batch.py                    # demo model + ViT-B-32, 3 interleaved rounds
    python benchmarks/bench_batch.py --models ViT-B-32 --batches 8,16,32,64,128

Per model: torch fp32, torch bf16, onnxruntime fp32 and int8 bundles (exported once from the same weights; ViT-B-32
uses one random-weights checkpoint), each at every batch size, on random pixels in memory, all cores, no spinning
(as ``ingest()`` runs the encoder). Every round visits every (backend, batch) once, in a rotated order; reported:
median images/s with min–max. JSON in ``benchmarks/results/batch.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rate(fn: Any, n: int, seconds: float = 2.0) -> float:
    """Calls of ``fn`` (``n`` items each) per second over at least ``seconds``, after one warm-up call."""
    fn()  # warm-up
    done, t0 = 0, time.perf_counter()
    while True:
        fn()
        done += n
        el = time.perf_counter() - t0
        if el >= seconds:
            return done / el


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cir-demo-tiny,ViT-B-32")
    p.add_argument("--batches", default="16,32,64,128")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", type=Path, default=None, help="keep bundles and checkpoints here (default: temp dir)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "batch.json")
    a = p.parse_args(argv)
    from bench_peers import export_bundles, random_checkpoint

    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.ingest.decode import encoder_threads

    tmpdir = None if a.data else tempfile.TemporaryDirectory(prefix="cir-batch-")
    data = a.data or Path(tmpdir.name)  # type: ignore[union-attr]
    batches = [int(b) for b in a.batches.split(",")]
    res: dict[str, Any] = {"machine": {"platform": platform.platform(), "threads": encoder_threads()},
                           "command": "python benchmarks/bench_batch.py " + " ".join(argv or sys.argv[1:]),
                           "models": {}}
    for model in a.models.split(","):
        pre = "cir-demo" if model == "cir-demo-tiny" else random_checkpoint(model, data)
        export_bundles(model, pre, data / f"bundles-{model}")
        encs = {"torch fp32": TorchEncoder(model, pre, device="cpu"),
                "torch bf16": TorchEncoder(model, pre, device="cpu", precision="bf16"),
                "onnx fp32": OrtEncoder(data / f"bundles-{model}" / "fp32", device="cpu"),
                "onnx int8": OrtEncoder(data / f"bundles-{model}" / "int8", device="cpu")}
        for e in encs.values():
            e.set_threads(encoder_threads(), spin=False)
        size = encs["torch fp32"].preprocess_config.size
        cells = [(name, b) for name in encs for b in batches]
        rates: dict[str, list[float]] = {f"{n} b{b}": [] for n, b in cells}
        for r in range(a.rounds):
            for name, b in cells[r % len(cells):] + cells[: r % len(cells)]:
                x = np.random.default_rng(0).standard_normal((b, 3, size, size)).astype(np.float32)
                rate_ = rate(lambda e=encs[name], x=x: e.encode_pixels(x), b)
                rates[f"{name} b{b}"].append(rate_)
                print(f"[{model}] round {r + 1} {name:<11} batch {b:>4}: {rate_:8.1f} images/s", flush=True)
        out = {k: {"median": round(statistics.median(v), 1), "min": round(min(v), 1), "max": round(max(v), 1)}
               for k, v in rates.items()}
        res["models"][model] = out
        for name in encs:
            best = max(batches, key=lambda b, name=name: out[f"{name} b{b}"]["median"])
            print(f"[{model}] {name}: best batch {best} ({out[f'{name} b{best}']['median']} images/s); "
                  + ", ".join(f"b{b} {out[f'{name} b{b}']['median']}" for b in batches), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    if tmpdir is not None:
        tmpdir.cleanup()
    return res


if __name__ == "__main__":
    main()
