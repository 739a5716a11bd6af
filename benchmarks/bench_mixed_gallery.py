"""Mixed galleries (issue 27): composed queries against item images, item texts, or both (hybrid search).

    python benchmarks/bench_mixed_gallery.py                      # 400 test + 400 validation queries
    python benchmarks/bench_mixed_gallery.py --queries 100 --out /tmp/mixed.json

The shipped demo model (``cir-demo-tiny``) stores the 1,024-image synthetic gallery twice in Milvus Lite: once plain,
once with ``item_text=True`` and each item's caption from :func:`cir_milvus.synthetic_mixed.item_captions` (35 %
full, 35 % partial, 15 % missing, 15 % wrong). Each test query (reference id + modification text) is composed once
per composer (slerp with its alpha tuned on validation; LinCIR with the shipped head) and matched against: the image
field (``targets=("image",)``), the text field (``("text",)``), both with RRF, and both with the weighted ranker
whose image weight is tuned on the validation queries (grid 0.1..0.9); and BM25 (``item_text="full_text"``: the modification
text as a full-text query over the captions) alone and fused with the image field the same two ways. R@1 / R@10 with standard errors over queries;
"ΔR@10 (SE)" is the paired difference against image-only.

Also: ingest rate (images/s, ``col.add`` of the whole gallery, best of two alternating rounds) with and without the
text field, and single-query
latency p50 / p99 (``col.search`` by stored reference id, k = 10): plain collection, mixed collection image-only, and
mixed collection hybrid RRF.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_world import demo_world, parse_args, report_head, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mixed_gallery.json"
K = 10
W_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LATENCY_QUERIES = 60


def _hits(col: Any, vectors: np.ndarray, queries: list[Any], **kw: Any) -> np.ndarray:
    """[N, 2] booleans: a target in the top 1 / top 10 (reference excluded)."""
    if "bm25" in kw["targets"]:
        kw["texts"] = [q.captions[0] for q in queries]
    res = col.store.search_targets(vectors, K, exclude_ids=[q.reference_id for q in queries], **kw)
    out = np.zeros((len(queries), 2), dtype=bool)
    for i, (hits, q) in enumerate(zip(res, queries)):
        ids = [h.id for h in hits]
        t = set(q.target_ids)
        out[i] = (bool(ids[:1]) and ids[0] in t, any(x in t for x in ids[:K]))
    return out


def _summary(h: np.ndarray, base: np.ndarray | None) -> dict[str, float]:
    n = len(h)
    r = {}
    for j, name in enumerate(("R@1", "R@10")):
        p = float(h[:, j].mean())
        r[name] = round(100 * p, 2)
        r[name + "_se"] = round(100 * (p * (1 - p) / n) ** 0.5, 2)
    if base is not None:
        d = h[:, 1].astype(float) - base[:, 1].astype(float)
        r["dR@10_vs_image"] = round(100 * float(d.mean()), 2)
        r["dR@10_se"] = round(100 * float(d.std(ddof=1)) / n**0.5, 2)
        r["beats_image_by_2se"] = bool(d.mean() > 2 * d.std(ddof=1) / n**0.5)
    return r


def _compose(col: Any, queries: list[Any], setup: dict[str, Any]) -> np.ndarray:
    kw = {"composer": setup["composer"], **({"alpha": setup["alpha"]} if setup["alpha"] else {}), **setup["params"]}
    return col.compose(None, [q.captions[0] for q in queries], ref_ids=[q.reference_id for q in queries], **kw)


def _latency(variants: dict[str, tuple[Any, dict[str, Any]]], queries: list[Any], n: int = LATENCY_QUERIES
             ) -> dict[str, dict[str, float]]:
    """p50 / p99 ms of single searches; the variants run back to back per query in a rotated order, so the shared
    machine's load drifts over all of them alike (the first query warms every variant up)."""
    names = list(variants)
    times: dict[str, list[float]] = {v: [] for v in names}
    for i, q in enumerate(queries[: n + 1]):
        for v in names[i % len(names):] + names[:i % len(names)]:
            col, kw = variants[v]
            t0 = time.perf_counter()
            col.search(ref_id=q.reference_id, text=q.captions[0], k=K, **kw)
            if i > 0:
                times[v].append((time.perf_counter() - t0) * 1000)
    out = {}
    for v, t in times.items():
        t.sort()
        out[v] = {"p50_ms": round(statistics.median(t), 2), "p99_ms": round(t[min(len(t) - 1, int(0.99 * len(t)))], 2)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__, RESULTS, "test (and validation) queries",
                      "gallery + Milvus Lite files (default: a temp dir)")

    from cir_milvus.collection import CIRCollection
    from cir_milvus.eval.families import tune_alpha
    from cir_milvus.models.demo import demo_head_path
    from cir_milvus.synthetic_mixed import item_captions

    t0 = time.perf_counter()
    work, test, val, encoder = demo_world(args, "mixed-")
    corpus = test.corpus()
    captions = item_captions(test.world)
    texts = [captions[g.id][0] for g in corpus]
    encoder.encode_images([g.path for g in corpus[:64]])  # warm-up: the first timed ingest pays no start-up
    ingest: dict[str, list[float]] = {"plain": [], "mixed": []}
    cols: dict[str, Any] = {}
    for rnd in range(2):  # two rounds, alternating which goes first: the shared machine's load drifts
        for name in (("plain", "mixed") if rnd == 0 else ("mixed", "plain")):
            item_text = name == "mixed"
            col = CIRCollection.create(str(work / f"{name}{rnd}.db"), name, encoder=encoder,
                                       item_text="full_text" if item_text else False)
            s = time.perf_counter()
            col.add([g.path for g in corpus], ids=[g.id for g in corpus], texts=texts if item_text else None)
            ingest[name].append(round(len(corpus) / (time.perf_counter() - s), 1))
            if rnd == 0:
                col.wait_for_index()
                cols[name] = col
            else:
                col.close()
    col = cols["mixed"]
    head = str(demo_head_path("lincir"))
    setups = {"slerp": {"composer": "slerp", "alpha": tune_alpha(col, val, "slerp", {}), "params": {}},
              "lincir": {"composer": "lincir", "alpha": None, "params": {"head": head}}}
    report: dict[str, Any] = {
        **report_head("bench_mixed_gallery.py", args), "gallery": len(corpus), "queries": args.queries,
        "captions": {k: sum(1 for _, kind in captions.values() if kind == k)
                     for k in ("full", "partial", "missing", "wrong")},
        "ingest_images_per_s": {"without_text_field": max(ingest["plain"]), "with_text_field": max(ingest["mixed"]),
                                "rounds": ingest},
        "composers": {}, "latency_ms": {},
    }
    tq, vq = test.queries(), val.queries()
    for name, s in setups.items():
        tv, vv = _compose(col, tq, s), _compose(col, vq, s)
        best = {}
        for second in ("text", "bm25"):
            best_w, best_key = 0.5, (-1.0, -1.0)
            for w in W_GRID:  # the weighted ranker's image weight, tuned on validation (R@10, then R@1)
                h = _hits(col, vv, vq, targets=("image", second), ranker="weighted", ranker_weights=(w, 1 - w))
                key = (float(h[:, 1].mean()), float(h[:, 0].mean()))
                if key > best_key:
                    best_w, best_key = w, key
            best[second] = best_w
        base = _hits(col, tv, tq, targets=("image",))
        rows = {
            "image": _summary(base, None),
            "text": _summary(_hits(col, tv, tq, targets=("text",)), base),
            "hybrid_rrf": _summary(_hits(col, tv, tq, targets=("image", "text"), ranker="rrf"), base),
            "hybrid_weighted": _summary(_hits(col, tv, tq, targets=("image", "text"), ranker="weighted",
                                              ranker_weights=(best["text"], round(1 - best["text"], 2))), base),
            "bm25": _summary(_hits(col, tv, tq, targets=("bm25",)), base),
            "image+bm25_rrf": _summary(_hits(col, tv, tq, targets=("image", "bm25"), ranker="rrf"), base),
            "image+bm25_weighted": _summary(_hits(col, tv, tq, targets=("image", "bm25"), ranker="weighted",
                                                  ranker_weights=(best["bm25"], round(1 - best["bm25"], 2))), base),
        }
        report["composers"][name] = {"alpha": s["alpha"], "weighted_image_weight": best, "results": rows}
        for arm, r in rows.items():
            extra = (f"  ΔR@10 {r['dR@10_vs_image']:+.1f} ({r['dR@10_se']:.1f})" if "dR@10_se" in r else "")
            print(f"{name:7s} {arm:20s} R@1 {r['R@1']:5.1f} ± {r['R@1_se']:.1f}  R@10 {r['R@10']:5.1f} ± "
                  f"{r['R@10_se']:.1f}{extra}", flush=True)
    kw = {"composer": "slerp", "alpha": setups["slerp"]["alpha"]}
    report["latency_ms"] = _latency({
        "plain collection, image": (cols["plain"], kw),
        "mixed collection, image": (col, kw),
        "mixed collection, hybrid rrf": (col, {**kw, "targets": ("image", "text")}),
        "mixed collection, hybrid weighted": (col, {**kw, "targets": ("image", "text"), "ranker": "weighted",
                                                    "ranker_weights": (0.5, 0.5)}),
    }, tq)
    print("latency: " + ", ".join(f"{k} p50 {v['p50_ms']:.1f} / p99 {v['p99_ms']:.1f} ms"
                                  for k, v in report["latency_ms"].items()))
    print(f"ingest (best of 2): {max(ingest['plain']):.1f} img/s without the text field, {max(ingest['mixed']):.1f} "
          f"with it ({ingest})")
    for c in cols.values():
        c.close()
    return write_report(report, args.out, t0)


if __name__ == "__main__":
    main()
