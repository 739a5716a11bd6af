"""Mixed galleries on a server without multi-vector collections (the 2.3.5 server: a text mirror collection).

    python benchmarks/bench_mixed_server.py                       # starts the PyPI 2.3.5 server in a temp folder
    python benchmarks/bench_mixed_server.py --uri http://host:19530 --items 10000

Random unit vectors (no encoder: the store alone), ``--items`` rows of ``--dim``, one typed int field for group-by.
A plain collection and a mixed one (``item_text=True``) are filled with one ``VectorStore.upsert`` each (rows/s) and
indexed (HNSW); then ``--queries`` single-vector searches, k = 10, per target set: p50 / p99 latency in ms. On Milvus
< 2.4 the mixed gallery's item texts live in ``NAME__cir_text``: a text search is one search of the mirror plus one
id lookup in the main collection for text hits the image list did not already hold; two targets are two searches
fused client-side.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mixed_server.json"
CASES: dict[str, dict[str, Any]] = {
    "image": {"targets": ("image",)},
    "text": {"targets": ("text",)},
    "image+text rrf": {"targets": ("image", "text")},
    "image+text weighted": {"targets": ("image", "text"), "ranker": "weighted"},
    "image+text rrf, group_by": {"targets": ("image", "text"), "group_by": "g"},
}


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)  # [n, dim]
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _run(uri: str, args: argparse.Namespace) -> dict[str, Any]:
    from cir_milvus import VectorStore

    rng = np.random.default_rng(0)
    img, txt = _unit(rng, args.items, args.dim), _unit(rng, args.items, args.dim)
    ids = [f"i{i}" for i in range(args.items)]
    md = [{"g": i % 50} for i in range(args.items)]
    queries = _unit(rng, args.queries, args.dim)
    out: dict[str, Any] = {}
    for name, mixed in (("plain", False), ("mixed", True)):
        store = VectorStore.create(uri, f"bench_{name}_{time.time_ns()}", dim=args.dim, item_text=mixed,
                                   fields={"g": "int64"})
        try:
            t = time.perf_counter()
            store.upsert(ids, img, metadata=md, text_vectors=list(txt) if mixed else None, normalized=True)
            row: dict[str, Any] = {"server": store.capabilities.version,
                                   "text_collection": store.fields.text_collection,
                                   "upsert_rows_per_s": round(args.items / (time.perf_counter() - t))}
            store.wait_for_index()
            for label, kw in CASES.items():
                if not mixed and label != "image":
                    continue
                for q in queries[:10]:  # warm-up
                    store.search_targets(q[None], 10, **kw)
                ms = []
                for q in queries:
                    t = time.perf_counter()
                    store.search_targets(q[None], 10, **kw)
                    ms.append((time.perf_counter() - t) * 1000)
                ms.sort()
                row[label] = {"p50_ms": round(statistics.median(ms), 1),
                              "p99_ms": round(ms[max(0, int(0.99 * len(ms)) - 1)], 1)}
            out[name] = row
        finally:
            store.drop()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--uri", default=None, help="a Milvus server (default: start the PyPI 2.3.5 server)")
    p.add_argument("--items", type=int, default=2048)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.uri is not None:
        res = _run(args.uri, args)
    else:
        from cir_milvus.storage.embedded import EmbeddedMilvus

        server = EmbeddedMilvus(Path(tempfile.mkdtemp(prefix="cir-bench-server-")))
        server.start()
        try:
            res = _run(server.uri, args)
        finally:
            server.stop(graceful=5)
    cmd = "python benchmarks/bench_mixed_server.py" + "".join(
        f" --{k} {v}" for k, v in (("items", args.items), ("dim", args.dim), ("queries", args.queries))
        if v != p.get_default(k))
    report = {"command": cmd, "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
              "items": args.items, "dim": args.dim, "queries": args.queries, "k": 10, **res,
              "seconds": round(time.perf_counter() - t0, 1)}
    for name in ("plain", "mixed"):
        r = res[name]
        print(f"{name}: upsert {r['upsert_rows_per_s']} rows/s; " + ", ".join(
            f"{k} p50 {v['p50_ms']} / p99 {v['p99_ms']} ms" for k, v in r.items() if isinstance(v, dict)))
    return write_results(report, args.out)


if __name__ == "__main__":
    main()
