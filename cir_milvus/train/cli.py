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
import os
from pathlib import Path
from typing import Any

from cir_milvus.errors import CIRError, ConfigError
from cir_milvus.train.common import TrainConfig, TrainResult, add_config_arguments, config_from_args, load_config, run

__all__ = ["RECIPES", "get_recipe", "main", "train"]

RECIPES: dict[str, tuple[str, str, str]] = {
    "lincir": ("cir_milvus.train.lincir", "LinCIRConfig", "LinCIRRecipe"),
    "pic2word": ("cir_milvus.train.pic2word", "Pic2WordConfig", "Pic2WordRecipe"),
    "tat": ("cir_milvus.train.tat", "TATConfig", "TATRecipe"),
    "rtd": ("cir_milvus.train.rtd", "RTDConfig", "RTDRecipe"),
}
"""Recipe name → (module, config class, recipe class)."""


def get_recipe(name: str) -> tuple[type, type]:
    """The ``(config class, recipe class)`` of a recipe.

    Raises:
        ConfigError: unknown name (the message lists the recipes).
    """
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    module, cfg_name, recipe_name = RECIPES[name]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, recipe_name)


def train(name: str, out: str | os.PathLike[str], config: Any = None, *, resume: bool = True,
          **overrides: Any) -> TrainResult:
    """Train a recipe from Python.

    Args:
        name: ``"lincir"``, ``"pic2word"``, ``"tat"`` or ``"rtd"``.
        out: output folder.
        config: a config object, a JSON file path, or ``None`` (paper defaults).
        resume: continue from ``out/checkpoint.pt`` when present.
        **overrides: config fields (``steps=100, batch_size=32``...).

    Returns:
        The :class:`~cir_milvus.train.common.TrainResult`.
    """
    cfg_cls, recipe_cls = get_recipe(name)
    if isinstance(config, TrainConfig):
        cfg = load_config(cfg_cls, None, {**config.to_dict(), **overrides})
    else:
        cfg = load_config(cfg_cls, config, overrides)
    return run(recipe_cls(cfg), cfg, out, resume=resume)


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
