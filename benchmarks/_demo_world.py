"""Shared set-up of the synthetic-world benchmarks (bench_mixed_gallery.py, bench_query_families.py).

Both take ``--queries``/``--out``/``--workdir``, build the test and validation splits of the synthetic world with the
shipped demo model (``cir-demo-tiny``) on the CPU, and write their report as JSON with the seconds they took.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results


def parse_args(argv: list[str] | None, doc: str, results: Path, queries_help: str,
               workdir_help: str) -> argparse.Namespace:
    """``--queries`` (default 400), ``--out`` (default ``results``), ``--workdir`` (default: a temp dir)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--queries", type=int, default=400, help=queries_help)
    p.add_argument("--out", type=Path, default=results)
    p.add_argument("--workdir", type=Path, default=None, help=workdir_help)
    return p.parse_args(argv)


def demo_world(args: argparse.Namespace, prefix: str) -> tuple[Path, Any, Any, Any]:
    """The work folder, the synthetic world's test and validation splits, and the demo model's torch encoder."""
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.eval.synthetic import SyntheticDataset
    from cir_milvus.models.demo import DEMO_MODEL, DEMO_WEIGHTS

    work = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    test = SyntheticDataset(work / "world", split="test", n_queries=args.queries)
    val = SyntheticDataset(work / "world", split="val", n_queries=args.queries)
    return work, test, val, TorchEncoder(DEMO_MODEL, DEMO_WEIGHTS, device="cpu")


def report_head(script: str, args: argparse.Namespace) -> dict[str, Any]:
    """The report's ``command``, ``machine`` and ``model`` entries."""
    from cir_milvus.models.demo import DEMO_MODEL, DEMO_WEIGHTS

    return {"command": f"python benchmarks/{script}" + (f" --queries {args.queries}" if args.queries != 400 else ""),
            "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "device": "cpu"},
            "model": f"{DEMO_MODEL}/{DEMO_WEIGHTS}"}


def write_report(report: dict[str, Any], out: Path, t0: float) -> dict[str, Any]:
    """Add the seconds since ``t0``, write ``report`` to ``out`` as JSON and say so."""
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return write_results(report, out, f" ({report['seconds']:.0f} s)")
