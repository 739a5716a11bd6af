"""Text latency, ONNX bundle vs torch: one query caption and 256 captions, with the bundle fed its pooled prefix.

    python benchmarks/bench_text_bundle.py                         # demo model and ViT-B-32 (random weights)
    python benchmarks/bench_text_bundle.py --models cir-demo-tiny:cir-demo --rounds 3

Per model it exports an fp32 bundle (text graphs with a dynamic sequence axis) and compares, on the same captions,
three ways (interleaved, ``--rounds`` rounds): the torch encoder (pooled prefix, texts of similar length batched
together), the bundle as served now (``OrtEncoder``: the pooled prefix too), and the same bundle fed all ``L``
positions (its manifest without ``text_prefix``: what bundles exported before did). All three tokenise and check
lengths. Reports medians (min–max over rounds) of one caption's latency (ms) and of 256 captions/s, and the
smallest cosine between the bundle's and torch's features. JSON in ``benchmarks/results/text_bundle.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402
from bench_text import CAPTIONS, median_ms, parse_args  # noqa: E402


def _encoders(model: str, pretrained: str | None, tmp: Path) -> dict[str, Any]:
    import torch
    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.encoders.torch import TorchEncoder

    torch.manual_seed(0)
    enc = TorchEncoder(model, pretrained, device="cpu")
    bundle = export_bundle(enc, tmp / model, fused=False)
    full = Path(shutil.copytree(bundle, tmp / f"{model}-full"))
    manifest = json.loads((full / "manifest.json").read_text())
    manifest.pop("text_prefix", None)  # as bundles exported before text graphs took any length
    (full / "manifest.json").write_text(json.dumps(manifest))
    return {"torch (pooled prefix)": enc, "bundle (pooled prefix)": OrtEncoder(bundle),
            "bundle fed all L positions": OrtEncoder(full)}


def bench_model(model: str, pretrained: str | None, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from bench_peers import summary

    ways = _encoders(model, pretrained, tmp)
    batch = [CAPTIONS[i % len(CAPTIONS)] + f" {i}" for i in range(256)]
    got: dict[str, dict[str, list[float]]] = {w: {"query_ms": [], "batch_per_s": []} for w in ways}
    for r in range(a.rounds):
        for w in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            enc = ways[w]
            got[w]["query_ms"].append(median_ms(
                lambda i, enc=enc: enc.encode_texts([CAPTIONS[i % len(CAPTIONS)]], normalize=False), a.calls))
            enc.encode_texts(batch)  # warm-up
            t0 = time.perf_counter()
            enc.encode_texts(batch)
            got[w]["batch_per_s"].append(len(batch) / (time.perf_counter() - t0))
    torch_w, prefix_w, full_w = list(ways)
    ref = ways[torch_w].encode_texts(batch)
    out: dict[str, Any] = {
        "model": model, "pretrained": pretrained, "context_length": ways[torch_w].context_length,
        "query_tokens": ways[torch_w].token_counts(CAPTIONS),
        "ways": {w: {k: summary(v) for k, v in d.items()} for w, d in got.items()},
        "bundle_speedup_vs_full": {k: summary([(f / p if k.endswith("_ms") else p / f) for f, p in
                                               zip(got[full_w][k], got[prefix_w][k], strict=True)]) for k in got[full_w]},
        "bundle_vs_torch": {k: summary([(t / p if k.endswith("_ms") else p / t) for t, p in
                                        zip(got[torch_w][k], got[prefix_w][k], strict=True)]) for k in got[torch_w]},
        "min_cosine_bundle_vs_torch": float((ways[prefix_w].encode_texts(batch) * ref).sum(1).min()),
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    a = parse_args(argv, __doc__, Path(__file__).parent / "results" / "text_bundle.json")
    import cir_milvus  # noqa: F401  (first, as a user's script: its OpenMP wait policy applies before torch)

    res: dict[str, Any] = {"machine": {"platform": platform.platform()},
                           "command": "python benchmarks/bench_text_bundle.py " + " ".join(argv or sys.argv[1:]),
                           "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in a.models.split(","):
            model, _, pretrained = spec.partition(":")
            m = bench_model(model, pretrained or None, a, Path(tmp))
            res["models"].append(m)
            print(f"[{model}] query tokens {m['query_tokens']} of {m['context_length']}; "
                  f"min cosine bundle vs torch {m['min_cosine_bundle_vs_torch']:.7f}")
            for w, d in m["ways"].items():
                print(f"  {w:28s} query {d['query_ms']['median']:7.2f} ms  256 captions "
                      f"{d['batch_per_s']['median']:8.1f}/s")
            for name in ("bundle_speedup_vs_full", "bundle_vs_torch"):
                print(f"  {name}: " + ", ".join(f"{k} {v['median']:.2f}x ({v['min']:.2f}-{v['max']:.2f})"
                                                 for k, v in m[name].items()), flush=True)
    return write_results(res, a.out)


if __name__ == "__main__":
    main()
