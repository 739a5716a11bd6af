"""Every GPU figure the README needs, in one command (runs on CPU too, for a dry run of the same code).

    python benchmarks/bench_gpu.py                       # CUDA when present; writes benchmarks/results/gpu.json
    python benchmarks/bench_gpu.py --device cpu --quick  # the same code on CPU (a smoke test, not a figure)

Prints, per model (demo + ViT-B-32 + ViT-L-14, random weights unless local checkpoints are named; speed does not
depend on the weights):

1. encoder alone: torch fp32 / fp16 images/s by batch size (pixels already on the device), and the fp16 embedding
   cosine against fp32;
2. pixels to the device: float32 from pageable memory vs uint8 from pinned memory normalised on the device
   (:meth:`TorchEncoder.encode_uint8`), images/s including the copy;
3. decoding: the CPU decode pool (all cores, ``exact`` and ``draft``) vs nvJPEG on the GPU
   (:meth:`TorchEncoder.decode_jpegs`, batched), images/s, and nvJPEG's embedding cosine vs the exact path;
4. end to end: :func:`cir_milvus.ingest.ingest` into Milvus Lite with the CUDA encoder (exact and draft), images/s;
5. onnxruntime: the CUDA execution provider (fp32 / fp16 bundles) images/s when onnxruntime-gpu is installed;
6. composed-query latency p50/p99 (image file + text → top-10) with the CUDA torch encoder.
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
from _photos import make_photos  # noqa: E402


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rate(fn: Any, n: int, torch: Any, device: str, repeat: int = 5) -> float:
    fn()
    _sync(torch, device)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync(torch, device)
        ts.append(time.perf_counter() - t)
    return round(n / statistics.median(ts), 1)


def bench_model(model: str, pretrained: str | None, a: argparse.Namespace, paths: list[str], tmp: Path) -> dict:
    import torch

    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.ingest.decode import DecodePool, decode_uint8, usable_cpus
    from cir_milvus.preprocess import normalize_uint8

    dev = a.device
    out: dict[str, Any] = {"model": model, "pretrained": pretrained}
    precs = ["fp32", "fp16"] if dev.startswith("cuda") else ["fp32"]
    encs = {p: TorchEncoder(model, pretrained, device=dev, precision=p) for p in precs}
    cfg = encs["fp32"].preprocess_config
    s = cfg.size
    # 1. encoder alone
    out["encoder_alone_images_per_s"] = {}
    for p, enc in encs.items():
        row = {}
        for bs in a.batches:
            x = torch.randn(bs, 3, s, s, device=dev, dtype=torch.float16 if p == "fp16" else torch.float32)

            def run(x: Any = x, enc: Any = enc) -> None:
                with torch.no_grad():
                    enc.model.encode_image(x)

            row[str(bs)] = _rate(run, bs, torch, dev)
        out["encoder_alone_images_per_s"][p] = row
    u8 = np.stack([decode_uint8(p, cfg) for p in paths[: max(a.batches)]])  # [B, S, S, 3]
    if "fp16" in encs:
        a32 = encs["fp32"].encode_uint8(u8)
        a16 = encs["fp16"].encode_uint8(u8)
        out["fp16_cosine_vs_fp32"] = {"min": round(float((a32 * a16).sum(1).min()), 5)}
    # 2. pixels to the device
    best = encs[precs[-1]]
    bs = max(a.batches)
    f32 = normalize_uint8(u8, cfg)
    out["to_device_images_per_s"] = {
        "float32_pageable": _rate(lambda: best.encode_pixels(f32), bs, torch, dev),
        "uint8_pinned_normalised_on_device": _rate(lambda: best.encode_uint8(u8), bs, torch, dev),
    }
    # 3. decoding
    dec: dict[str, Any] = {}
    for mode in ("exact", "draft"):
        mcfg = cfg.with_decode(mode)
        n = min(len(paths), 4 * bs)

        def pool_run(mcfg: Any = mcfg, n: int = n) -> None:
            with DecodePool(usable_cpus(), mcfg, batch_size=bs, slots=4) as pool:
                futs = [pool.submit(list(enumerate(paths[i:i + bs]))) for i in range(0, n, bs)]
                for f in futs:
                    if f is not None:
                        f.result().release()

        dec[f"cpu_pool_{mode}_{usable_cpus()}_workers"] = _rate(pool_run, n, torch, dev, repeat=2)
    data = [Path(p).read_bytes() for p in paths[:bs]]
    dec[f"torchvision_decode_jpeg_{dev}"] = _rate(lambda: best.decode_jpegs(data), len(data), torch, dev)
    g = best.encode_uint8(best.decode_jpegs(data))
    e = best.encode_uint8(np.stack([decode_uint8(p, cfg) for p in paths[:bs]]))
    cos = (g * e).sum(1)
    dec["torchvision_cosine_vs_exact"] = {"min": round(float(cos.min()), 5), "median": round(float(np.median(cos)), 5)}
    out["decode_images_per_s"] = dec
    # 4. end to end
    from cir_milvus import CIRCollection
    from cir_milvus.ingest import ingest

    e2e = {}
    for mode in ("exact", "draft"):
        enc = TorchEncoder(model, pretrained, device=dev, decode=mode)
        col = CIRCollection.create(str(tmp / f"{model}-{mode}.db"), "g", encoder=enc)
        rep = ingest(col, paths, batch_size=a.ingest_batch, progress=False)
        e2e[mode] = round(rep.images_per_second, 1)
        if mode == "draft":
            lat = []
            for p in paths[:30]:
                t = time.perf_counter()
                col.search(p, "the same scene at night", k=10)
                lat.append(time.perf_counter() - t)
            out["composed_query_ms"] = {"p50": round(float(np.percentile(lat, 50)) * 1000, 2),
                                        "p99": round(float(np.percentile(lat, 99)) * 1000, 2)}
        col.close()
    out["ingest_images_per_s"] = e2e
    # 5. onnxruntime CUDA provider
    try:
        import onnxruntime as ort
        from cir_milvus_export.onnx_export import export_bundle

        from cir_milvus.encoders.ort import OrtEncoder

        if dev.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            rows = {}
            for prec in ("fp32", "fp16"):
                path = export_bundle(encs["fp32"], tmp / f"{model}-{prec}", precision=prec, fused=False,
                                     overwrite=True)
                oe = OrtEncoder(path, device="cuda")
                rows[prec] = _rate(lambda oe=oe: oe.encode_pixels(f32, batch_size=bs), bs, torch, "cpu")
            out["onnxruntime_cuda_images_per_s"] = rows
        else:
            out["onnxruntime_cuda_images_per_s"] = "skipped: no CUDA provider (pip install 'cir_milvus[onnx-gpu]')"
    except ImportError as err:
        out["onnxruntime_cuda_images_per_s"] = f"skipped: {err}"
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--models", default="cir-demo-tiny:cir-demo,ViT-B-32,ViT-L-14")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--batches", default="64,256")
    p.add_argument("--ingest-batch", type=int, default=256)
    p.add_argument("--quick", action="store_true", help="demo model only, 64 images, batch 16")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    import torch

    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if a.quick:
        a.models, a.images, a.batches, a.ingest_batch = "cir-demo-tiny:cir-demo", 64, "16", 16
    a.batches = [int(x) for x in str(a.batches).split(",")]
    out_path = a.out or Path(__file__).parent / "results" / ("gpu.json" if a.device.startswith("cuda")
                                                             else "gpu_dryrun_cpu.json")
    res: dict[str, Any] = {"machine": {"platform": platform.platform(), "device": a.device,
                                       "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None,
                                       "torch": torch.__version__}, "models": []}
    with tempfile.TemporaryDirectory(prefix="cir-gpu-bench-") as tmp:
        paths, desc = make_photos(Path(tmp) / "photos", a.images)
        res["photos"] = desc
        for spec in a.models.split(","):
            model, _, pretrained = spec.partition(":")
            row = bench_model(model, pretrained or None, a, paths, Path(tmp))
            res["models"].append(row)
            print(json.dumps(row, indent=1), flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out_path}")
    return res


if __name__ == "__main__":
    main()
