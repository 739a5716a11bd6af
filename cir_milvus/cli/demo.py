"""``cir-milvus demo``: the offline end-to-end demo on the synthetic world (Milvus Lite)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cir_milvus.cli.options import add_device, add_json, rounded

__all__ = ["add_parser", "cmd_demo"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="offline end-to-end demo on the synthetic world (Milvus Lite)",
                       description="Render the synthetic world, ingest it with the shipped demo model, tune and score "
                                   "every composer, write a contact sheet and a recall-against-alpha plot.")
    p.add_argument("--workdir", default="cir-demo", help="output folder (default ./cir-demo)")
    p.add_argument("--queries", type=int, default=400, help="test queries (default 400)")
    p.add_argument("--model", default=None, metavar="bundle:DIR",
                   help="run on onnxruntime (no torch) from an ONNX bundle of the demo model and its heads, made by "
                        "`cir-milvus export --model cir-demo-tiny --head demo-lincir --head demo-pic2word --out DIR` "
                        "(default: the shipped demo model on torch)")
    add_device(p)
    add_json(p, "every figure (what demo_results.json holds) instead of the report")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Exit 0 when slerp beats both single-modality baselines by the demo's margin, else 1."""
    from cir_milvus.errors import ConfigError

    if args.queries < 1:
        raise ConfigError(f"--queries must be at least 1, got {args.queries}")
    if args.model is not None:
        folder = args.model.removeprefix("bundle:")
        if not args.model.startswith("bundle:") or not Path(folder).is_dir():
            raise ConfigError(f"--model {args.model}: the demo takes bundle:DIR, a folder made by `cir-milvus export "
                              "--model cir-demo-tiny --head demo-lincir --out DIR`")
    from cir_milvus.demo import run_demo

    def silent(*_: Any) -> None:
        return None

    res = run_demo(args.workdir, n_queries=args.queries, device=args.device, model=args.model,
                   progress=args.verbosity >= 0 and not args.json, print_fn=silent if args.json else print)
    if args.json:
        print(json.dumps(rounded(res), indent=2, default=str))
    return 0 if res.get("slerp_margin_pass") else 1
