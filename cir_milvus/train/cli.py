"""``python -m cir_milvus.train``: one subcommand per recipe, plus ``synthetic-report``.

Every recipe flag is generated from its config dataclass (``--batch-size``, ``--noise-scale``...), applied over
``--config FILE.json`` over the paper defaults. A run writes into ``--out`` and resumes from its checkpoint there.

Example::

    python -m cir_milvus.train lincir --out runs/lincir --steps 3000 --batch-size 128
    python -m cir_milvus.train tat --config tat.json --out runs/tat --steps 300
    python -m cir_milvus.train synthetic-report --out runs/synthetic-report
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from cir_milvus.errors import CIRError
from cir_milvus.train.config import add_config_arguments, config_from_args
from cir_milvus.train.loop import run
from cir_milvus.train.recipes import RECIPES, get_recipe, train

__all__ = ["RECIPES", "get_recipe", "main", "train"]

def build_parser() -> argparse.ArgumentParser:
    from cir_milvus.train import report

    parser = argparse.ArgumentParser(prog="python -m cir_milvus.train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in RECIPES:
        cfg_cls, _ = get_recipe(name)
        module = importlib.import_module(RECIPES[name][0])
        p = sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0])
        p.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, weights, logs)")
        p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="continue from OUT/checkpoint.pt when present (default: on)")
        add_config_arguments(p, cfg_cls)
    report.add_arguments(sub.add_parser("synthetic-report", help=(report.__doc__ or "").splitlines()[0]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "synthetic-report":
            from cir_milvus.train import report

            report.main(args)
            return 0
        cfg_cls, recipe_cls = get_recipe(args.command)
        cfg = config_from_args(cfg_cls, args)
        result = run(recipe_cls(cfg), cfg, args.out, resume=args.resume)
    except CIRError as e:
        raise SystemExit(f"error: {e}") from e
    print(json.dumps(result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    main()
