"""torch vs onnxruntime (fp32, int8) on the same inputs: images/s and composed-query latency, as ratios.

    python benchmarks/bench_onnx.py                          # demo model + random-weight ViT-B-32, CPU
    python benchmarks/bench_onnx.py --models ViT-B-32 --device cuda --out benchmarks/results/onnx_cuda.json

For each model the script exports ONNX bundles (fp32 and int8 — fp16 too on CUDA), then times, on identical inputs:
- images/s: decode + preprocess + image tower for a batch of image files (after warm-up);
- composed-query latency: one reference image file + one text → slerp query vector (image tower, text tower,
  slerp), the path a search takes before Milvus.
Ratios are torch time / onnxruntime time (> 1 means onnxruntime is faster). Parity (min cosine vs torch) is
reported beside each bundle.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _median_time(fn: Any, warmup: int = 2, repeat: int = 7) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_model(model: str, pretrained: str | None, device: str, batch: int, tmp: Path) -> dict[str, Any]:
    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus.composers import get_composer
    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.synthetic import SyntheticWorld

    torch_enc = TorchEncoder(model, pretrained, device=device)
    size = torch_enc.preprocess_config.size
    world = SyntheticWorld(seed=21, instances=1)
    paths = []
    for it in world.gallery()[:batch]:
        p = tmp / f"{model}-{it.id}.png"
        it.render(size).save(p)
        paths.append(str(p))
    text = "make it blue and put it on a white background"
    slerp = get_composer("slerp", alpha=0.7)
    precisions = ["fp32", "int8"] + (["fp16"] if device.startswith("cuda") else [])
    encoders: dict[str, Any] = {"torch": torch_enc}
    parity: dict[str, Any] = {}
    for prec in precisions:
        t = time.perf_counter()
        path = export_bundle(torch_enc, tmp / f"{model}-{prec}", precision=prec, fused=False, overwrite=True)
        export_s = time.perf_counter() - t
        enc = OrtEncoder(path, device="cuda" if device.startswith("cuda") else "cpu")
        encoders[f"onnx-{prec}"] = enc
        report = json.loads((path / "parity.json").read_text())
        parity[prec] = {"export_s": round(export_s, 1), "report": report.get(prec, report)}
    reference = np.asarray(torch_enc.encode_images(paths[:1], normalize=False))
    out: dict[str, Any] = {"model": model, "pretrained": pretrained, "batch": batch, "parity": parity, "backends": {}}
    for name, enc in encoders.items():
        img_s = _median_time(lambda enc=enc: enc.encode_images(paths, batch_size=batch))
        query_s = _median_time(
            lambda enc=enc: slerp.compose(enc, np.asarray(enc.encode_images(paths[:1], normalize=False)), [text]),
            warmup=3, repeat=15)
        q_torch = slerp.compose(torch_enc, reference, [text])[0]
        q_here = slerp.compose(enc, np.asarray(enc.encode_images(paths[:1], normalize=False)), [text])[0]
        out["backends"][name] = {
            "images_per_s": round(batch / img_s, 1),
            "composed_query_ms": round(query_s * 1000, 2),
            "query_cosine_vs_torch": round(float(q_torch @ q_here), 6),
        }
    base = out["backends"]["torch"]
    for name, row in out["backends"].items():
        if name != "torch":
            row["images_per_s_ratio_vs_torch"] = round(row["images_per_s"] / base["images_per_s"], 2)
            row["query_speedup_vs_torch"] = round(base["composed_query_ms"] / row["composed_query_ms"], 2)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cir-demo-tiny:cir-demo,ViT-B-32",
                   help="comma-separated model[:pretrained] (ViT-B-32 without pretrained = random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "onnx.json")
    args = p.parse_args(argv)
    import onnxruntime
    import torch

    res: dict[str, Any] = {"machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                                       "device": args.device, "onnxruntime": onnxruntime.__version__,
                                       "providers": onnxruntime.get_available_providers()}, "models": []}
    with tempfile.TemporaryDirectory(prefix="cir-onnx-bench-") as tmp:
        for spec in args.models.split(","):
            model, _, pretrained = spec.partition(":")
            row = bench_model(model, pretrained or None, args.device, args.batch, Path(tmp))
            res["models"].append(row)
            print(f"\n{model} ({pretrained or 'random weights'}), batch {args.batch}, {args.device}")
            print(f"{'backend':<12}{'images/s':>10}{'ratio':>8}{'query ms':>10}{'speedup':>9}{'cos':>10}")
            for name, b in row["backends"].items():
                print(f"{name:<12}{b['images_per_s']:>10.1f}{b.get('images_per_s_ratio_vs_torch', 1.0):>8.2f}"
                      f"{b['composed_query_ms']:>10.2f}{b.get('query_speedup_vs_torch', 1.0):>9.2f}"
                      f"{b['query_cosine_vs_torch']:>10.6f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return res


if __name__ == "__main__":
    main()
