"""Issue 26's query features on the synthetic world: each family against its naive alternative, plus added latency.

    python benchmarks/bench_query_families.py                       # 400 test queries per family (~5 min, 2 cores)
    python benchmarks/bench_query_families.py --queries 100 --out /tmp/qf.json

The shipped demo model (``cir-demo-tiny``) stores the 1,024-image synthetic gallery in Milvus Lite; every family
(:mod:`cir_milvus.synthetic_families`) runs through ``CIRCollection.search_batch`` for slerp (alpha tuned on the
validation split) and LinCIR (the shipped head; its ``alphas`` family fuses the ``combined`` composer's alphas).
:func:`cir_milvus.eval.families.family_results` scores them: R@1 / R@10 with standard errors over queries, and the
paired R@10 difference against each naive alternative ("beats" = more than 2 standard errors).

Latency: single ``CIRCollection.search`` calls (reference by stored id, k = 10), p50 over the same queries, plain and
with each feature; "added" is the difference of the p50s (the 2-core machine is shared: expect noise of ~1 ms).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_world import demo_world, parse_args, report_head, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "query_families.json"
LATENCY_QUERIES = 40


def latencies(col: Any, test: Any, kw: dict[str, Any], n: int = LATENCY_QUERIES) -> dict[str, dict[str, float]]:
    """p50 milliseconds of single searches, plain and with each feature; the variants run back to back per query in
    a rotated order, so the shared machine's load drifts over all of them alike."""
    neg, two = test.family("negation")[:n], test.family("references")[:n]
    n = len(neg)
    ids = [it.id for it in test.world.gallery()]
    base = {k: v for k, v in kw.items() if k != "alpha"}
    variants: dict[str, Any] = {
        "plain": lambda i: {"ref_id": neg[i].reference_ids[0], **kw},
        "negative": lambda i: {"ref_id": neg[i].reference_ids[0], "negative": neg[i].negative, **kw},
        "two references": lambda i: {"ref_ids": list(two[i].reference_ids), **kw},
        "like + unlike": lambda i: {"ref_id": neg[i].reference_ids[0], "like": [ids[(7 * i) % len(ids)]],
                                    "unlike": [ids[(7 * i + 3) % len(ids)]], **kw},
        "dedupe=0.98": lambda i: {"ref_id": neg[i].reference_ids[0], "dedupe": 0.98, **kw},
        "output_vectors": lambda i: {"ref_id": neg[i].reference_ids[0], "output_vectors": True, **kw},
    }
    if "alpha" in kw or kw.get("composer") in ("slerp", "combined"):
        variants["alpha=[4 values]"] = lambda i: {"ref_id": neg[i].reference_ids[0], "alpha": [0.6, 0.7, 0.8, 0.9],
                                                  **base}
    names = list(variants)
    times: dict[str, list[float]] = {v: [] for v in names}
    for i in range(-1, n):  # i = -1 warms every variant up
        for v in names[max(i, 0) % len(names):] + names[:max(i, 0) % len(names)]:
            args = variants[v](max(i, 0))
            t0 = time.perf_counter()
            col.search(text=neg[max(i, 0)].text, k=10, **args)
            if i >= 0:
                times[v].append((time.perf_counter() - t0) * 1000)
    plain = statistics.median(times["plain"])
    return {v: {"p50_ms": round(statistics.median(t), 2), "added_ms": round(statistics.median(t) - plain, 2)}
            for v, t in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__, RESULTS, "test (and validation) queries per family",
                      "gallery + Milvus Lite file (default: a temp dir)")

    from cir_milvus.collection import CIRCollection
    from cir_milvus.eval.families import family_results, format_family_line, tune_alpha
    from cir_milvus.eval.runner import ingest_dataset
    from cir_milvus.models.demo import demo_head_path

    t0 = time.perf_counter()
    work, test, val, encoder = demo_world(args, "qfam-")
    col = CIRCollection.create(str(work / "families.db"), "families", encoder=encoder)
    ingest_dataset(test, col, progress=False)
    col.wait_for_index()
    head = str(demo_head_path("lincir"))  # shipped with the demo model
    slerp_alpha = tune_alpha(col, val, "slerp", {})
    setups = {
        "slerp": {"composer": "slerp", "composer_params": {}, "alpha": slerp_alpha, "alpha_composer": None},
        "lincir": {"composer": "lincir", "composer_params": {"head": head}, "alpha": None,
                   "alpha_composer": ("combined", {"base": "lincir", "head": head})},
    }
    report: dict[str, Any] = {
        **report_head("bench_query_families.py", args), "gallery": len(col), "queries_per_family": args.queries,
        "slerp_alpha": slerp_alpha, "composers": {}, "latency_ms": {},
    }
    for name, s in setups.items():
        res = family_results(col, val, test, composer=s["composer"], composer_params=s["composer_params"],
                             alpha=s["alpha"], alpha_composer=s["alpha_composer"])
        report["composers"][name] = {f: r.to_dict() for f, r in res.items()}
        for r in res.values():
            print(format_family_line(r), flush=True)
        kw = {"composer": s["composer"], **s["composer_params"], **({"alpha": s["alpha"]} if s["alpha"] else {})}
        report["latency_ms"][name] = latencies(col, test, kw)
        print(f"latency [{name}]: " + ", ".join(f"{k} {v['p50_ms']:.1f} ms" for k, v in
                                                report["latency_ms"][name].items()), flush=True)
    col.close()
    return write_report(report, args.out, t0)


if __name__ == "__main__":
    main()
