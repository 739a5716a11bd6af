"""Export a model and time torch against onnxruntime on the CPU (image tower, text tower, fused slerp query).

``python -m cir_milvus_export.benchmark --model ViT-B-32 --threads 2 --out bench/`` (random weights unless
``--pretrained``) prints one JSON object: export seconds, parity figures, and per graph the median latency of torch
and onnxruntime (after warm-up) with their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "time_call"]


def time_call(fn: Callable[[], Any], *, warmup: int = 2, repeat: int = 5) -> float:
    """Median wall time of ``fn`` in seconds after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(model: str, pretrained: str | None, out: Path, *, precision: str, threads: int, batch: int,
        repeat: int) -> dict[str, Any]:
    import torch
    from cir_milvus_export.graphs import FusedSlerpGraph
    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.encoders.torch import TorchEncoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc = TorchEncoder(model, pretrained, device="cpu", precision="fp32")
    t = time.perf_counter()
    export_bundle(enc, out, precision=precision, overwrite=True)
    export_s = time.perf_counter() - t
    parity = json.loads((out / "parity.json").read_text())
    ort_enc = OrtEncoder(out, threads=threads)

    size = enc.preprocess_config.size
    pix = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    texts = ["a photo of a red dress with long sleeves"] * batch
    ids = enc.tokenize(texts)
    fused = FusedSlerpGraph(enc.model).eval()
    alpha = torch.tensor([0.8])

    def torch_fused() -> Any:
        with torch.no_grad():
            return fused(torch.from_numpy(pix), torch.from_numpy(ids), alpha)

    def torch_text() -> Any:
        with torch.no_grad():
            return enc.model.encode_text(torch.from_numpy(ids))

    cases = {  # both sides start from the same preprocessed pixels / token ids
        "image": (lambda: enc.encode_pixels(pix), lambda: ort_enc.encode_pixels(pix)),
        "text": (torch_text, lambda: ort_enc.encode_ids(ids)),
        "fused_slerp": (torch_fused, lambda: ort_enc.run("fused_slerp", pixels=pix, input_ids=ids,
                                                         alpha=np.asarray([0.8], np.float32))),
    }
    timings = {}
    for name, (tf, of) in cases.items():
        ts, os_ = time_call(tf, repeat=repeat), time_call(of, repeat=repeat)
        timings[name] = {"torch_ms": round(ts * 1e3, 2), "ort_ms": round(os_ * 1e3, 2),
                         "torch_over_ort": round(ts / os_, 2)}
    return {
        "model": model, "pretrained": pretrained, "precision": precision, "threads": threads, "batch": batch,
        "export_s": round(export_s, 1),
        "bundle_mb": round(sum(p.stat().st_size for p in out.iterdir()) / 1e6, 1),
        "parity_min_cosine": {k: parity[k]["min_cosine"] for k in ("fp32", precision)},
        "parity_max_abs": {k: parity[k]["max_abs"] for k in ("fp32", precision)},
        "timings": timings,
        "torch": torch.__version__,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cir_milvus_export.benchmark", description=__doc__)
    p.add_argument("--model", default="cir-demo-tiny")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default=None, help="bundle folder (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.out:
        result = run(args.model, args.pretrained, Path(args.out), precision=args.precision, threads=args.threads,
                     batch=args.batch, repeat=args.repeat)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.model, args.pretrained, Path(tmp) / "bundle", precision=args.precision,
                         threads=args.threads, batch=args.batch, repeat=args.repeat)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
