"""Core figures: encoder images/s, ingest images/s into Milvus Lite, composed-query latency at ~10k vectors,
and Milvus ANN vs exact numpy search (latency and recall@10 agreement).

    python benchmarks/bench_core.py                     # CPU, demo model, writes benchmarks/results/core.json
    python benchmarks/bench_core.py --device cuda --out benchmarks/results/core_cuda.json

Everything runs on the shipped demo model over the synthetic world (10,240 images = 20 renders of each of the
512 attribute combinations), so it works offline. Queries are timed only after ``indexed_rows == total_rows``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(xs)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=20, help="renders per attribute combination (20 → 10,240)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "core.json")
    args = p.parse_args(argv)

    import torch

    from cir_milvus import CIRCollection
    from cir_milvus.composers import list_composers
    from cir_milvus.demo import _demo_heads
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.synthetic import SyntheticWorld

    torch.manual_seed(0)
    world = SyntheticWorld(seed=11, instances=args.instances)
    items = world.gallery()
    tmp = Path(tempfile.mkdtemp(prefix="cir-bench-"))
    print(f"rendering {len(items)} synthetic images to {tmp} ...")
    paths = []
    for it in items:
        path = tmp / f"{it.id}.png"
        it.render().save(path)
        paths.append(path)
    enc = TorchEncoder("cir-demo-tiny", "cir-demo", device=args.device)
    res: dict[str, Any] = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                       "cpu_threads": torch.get_num_threads(), "device": enc.device,
                                       "precision": enc.precision,
                                       "gpu": torch.cuda.get_device_name(0) if enc.device.startswith("cuda") else None},
                           "model": "cir-demo-tiny/cir-demo", "gallery": len(items)}

    # 1. encoder alone (decode + preprocess + forward), warm-up first
    enc.encode_images(paths[:64], batch_size=args.batch_size)
    n_enc = min(2048, len(paths))
    t = time.perf_counter()
    enc.encode_images(paths[:n_enc], batch_size=args.batch_size)
    res["encode_images_per_s"] = round(n_enc / (time.perf_counter() - t), 1)
    pix = enc.pixels(paths[:512])
    t = time.perf_counter()
    for s in range(0, len(pix), args.batch_size):
        enc.encode_pixels(pix[s : s + args.batch_size])
    res["encode_forward_only_images_per_s"] = round(len(pix) / (time.perf_counter() - t), 1)
    print(f"encoder: {res['encode_images_per_s']} images/s end to end, "
          f"{res['encode_forward_only_images_per_s']} images/s forward only")

    # 2. ingest into Milvus Lite (decode + encode + upsert), then wait for the index
    col = CIRCollection.create(str(tmp / "bench.db"), "bench", encoder=enc)
    t = time.perf_counter()
    added = col.add(paths, ids=[it.id for it in items], batch_size=args.batch_size, progress=True)
    ingest_s = time.perf_counter() - t
    res["ingest_images_per_s"] = round(len(added) / ingest_s, 1)
    t = time.perf_counter()
    info = col.wait_for_index()
    res["index_wait_s"] = round(time.perf_counter() - t, 2)
    res["index"] = {k: info.get(k) for k in ("index_type", "total_rows", "indexed_rows", "state")}
    print(f"ingest: {res['ingest_images_per_s']} images/s into Milvus Lite; index ready after {res['index_wait_s']} s")

    # 3. composed-query latency per composer (one query at a time: encode image + text, compose, Milvus search)
    triplets = world.triplets(args.queries, seed=3)
    id_to_path = {it.id: p for it, p in zip(items, paths)}
    heads = _demo_heads()
    composers: list[tuple[str, dict[str, Any]]] = [("slerp", {"alpha": 0.7})]
    composers += [(k, {"head": v}) for k, v in heads.items() if k in list_composers()]
    latency: dict[str, Any] = {}
    for name, params in composers:
        col.search(id_to_path[triplets[0].reference_id], triplets[0].text, k=10, composer=name, **params)  # warm
        times = []
        for tr in triplets:
            t = time.perf_counter()
            col.search(id_to_path[tr.reference_id], tr.text, k=10, composer=name, **params)
            times.append(time.perf_counter() - t)
        latency[name] = _percentiles(times)
        print(f"composed query ({name}, image file + text → hits): p50 {latency[name]['p50_ms']} ms, "
              f"p99 {latency[name]['p99_ms']} ms")
    res["composed_query_latency"] = latency

    # 4. Milvus ANN vs exact numpy search on the same query vectors and the same stored vectors
    qv = col.compose(None, [t.text for t in triplets], ref_ids=[t.reference_id for t in triplets],
                     composer="slerp", alpha=0.7)
    ids = [it.id for it in items]
    vecs = col.get_vectors(ids)
    g = np.stack([vecs[i] for i in ids])
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    ann_t, ex_t, overlap = [], [], []
    for i in range(len(qv)):
        t = time.perf_counter()
        hits = col.search_vectors(qv[i], k=10)[0]
        ann_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        top = np.argpartition(-(g @ qv[i]), 10)[:10]
        ex_t.append(time.perf_counter() - t)
        overlap.append(len({h.id for h in hits} & {ids[j] for j in top}) / 10.0)
    res["search_only"] = {"milvus_hnsw": _percentiles(ann_t), "exact_numpy": _percentiles(ex_t),
                          "recall_at_10_milvus_vs_exact": round(float(np.mean(overlap)), 4)}
    print(f"search only: Milvus HNSW p50 {res['search_only']['milvus_hnsw']['p50_ms']} ms, exact numpy p50 "
          f"{res['search_only']['exact_numpy']['p50_ms']} ms; recall@10 of Milvus vs exact "
          f"{res['search_only']['recall_at_10_milvus_vs_exact']:.3f}")
    t = time.perf_counter()
    col.search_vectors(qv, k=10)
    res["search_batch_ms_per_query"] = round((time.perf_counter() - t) * 1000 / len(qv), 3)
    col.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
