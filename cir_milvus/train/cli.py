"""The training command line: one subcommand per recipe, plus ``synthetic-report``.

Run it as ``cir-milvus train ...`` (:mod:`cir_milvus.cli.train`) or ``python -m cir_milvus.train ...``; both use
this parser. Every recipe flag is generated from its config dataclass (``--batch-size``, ``--noise-scale``...),
applied over ``--config FILE.json`` over the paper defaults. A run writes into ``--out`` and resumes from its
checkpoint there. A user error is one ``error: ...`` line with exit code 2.

Example::

    cir-milvus train lincir --out runs/lincir --steps 3000 --batch-size 128
    cir-milvus train tat --config tat.json --out runs/tat --steps 300
    cir-milvus train synthetic-report --out runs/synthetic-report
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cir_milvus.errors import CIRError
from cir_milvus.train.config import add_config_arguments, config_from_args
from cir_milvus.train.loop import run
from cir_milvus.train.recipes import RECIPES, get_recipe, list_recipes, recipe_summary, train

__all__ = ["RECIPES", "build_parser", "get_recipe", "main", "run_command", "train"]


def build_parser(prog: str = "cir-milvus train") -> argparse.ArgumentParser:
    """The parser of the training command (imports the recipes, hence torch)."""
    from cir_milvus.train import report

    parser = argparse.ArgumentParser(
        prog=prog, description="Train a recipe: every config field is a --kebab-case flag, applied over "
                               "--config FILE.json over the paper defaults; a run resumes from its checkpoint in --out.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="RECIPE")
    for name in list_recipes():
        cfg_cls, _ = get_recipe(name)
        p = sub.add_parser(name, help=recipe_summary(name))
        p.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, weights, logs)")
        p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="continue from OUT/checkpoint.pt when present (default: on)")
        add_config_arguments(p, cfg_cls)
    report.add_arguments(sub.add_parser("synthetic-report", help=(report.__doc__ or "").splitlines()[0]))
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: a recipe (its summary printed as JSON) or the synthetic report.

    Raises:
        CIRError: a bad configuration or input (the caller prints it as one line).
    """
    if args.command == "synthetic-report":
        from cir_milvus.train import report

        report.main(args)
        return 0
    cfg_cls, recipe_cls = get_recipe(args.command)
    cfg = config_from_args(cfg_cls, args)
    result = run(recipe_cls(cfg), cfg, args.out, resume=args.resume)
    print(json.dumps(result.summary(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cir_milvus.train``: exit 0, or 2 after one ``error: ...`` line."""
    args = build_parser("python -m cir_milvus.train").parse_args(argv)
    try:
        return run_command(args)
    except CIRError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
