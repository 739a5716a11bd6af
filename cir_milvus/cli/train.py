"""``cir-milvus train``: the training recipes (needs the ``train`` extra); the parser is
:func:`cir_milvus.train.cli.build_parser`, imported only when ``train`` runs, so the other commands start without
torch.

Example::

    cir-milvus train lincir --out runs/lincir --steps 3000 --batch-size 128
    cir-milvus train synthetic-report --out runs/synthetic-report
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "cmd_train"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", add_help=False, help="train a projection head or tune a model (needs [train])")
    p.add_argument("train_argv", nargs=argparse.REMAINDER, help="RECIPE --out DIR [flags]; see cir-milvus train -h")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Parse the rest of the command line with the training parser and run it."""
    from cir_milvus._optional import require

    require("torch", purpose="training")
    from cir_milvus.train.cli import build_parser, run_command

    return run_command(build_parser().parse_args(args.train_argv))
