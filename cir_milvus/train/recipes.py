"""The training recipes by name, and :func:`train`, the Python entry point the command line and the report share.

Example::

    from cir_milvus.train.recipes import train
    result = train("lincir", "runs/lincir", steps=100, batch_size=32)
"""

from __future__ import annotations

import os
import sys
from typing import Any

from cir_milvus.train.base import RECIPES, Recipe, TrainResult
from cir_milvus.train.config import TrainConfig, load_config
from cir_milvus.train.loop import run

__all__ = ["RECIPES", "get_recipe", "list_recipes", "recipe_summary", "train"]


def list_recipes() -> list[str]:
    """The recipe names, sorted (built-ins and plugins)."""
    return RECIPES.list()


def get_recipe(name: str) -> tuple[type[TrainConfig], type[Recipe[Any]]]:
    """The ``(config class, recipe class)`` of a recipe.

    Raises:
        ConfigError: unknown name (the message lists the recipes).
    """
    cls = RECIPES.get(name)
    return cls.config_class, cls


def recipe_summary(name: str) -> str:
    """One line on what a recipe trains: the first line of its module's docstring."""
    cls = RECIPES.get(name)
    doc = getattr(sys.modules.get(cls.__module__), "__doc__", None) or cls.__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else name


def train(name: str, out: str | os.PathLike[str], config: Any = None, *, resume: bool = True,
          **overrides: Any) -> TrainResult:
    """Train a recipe from Python.

    Args:
        name: ``"lincir"``, ``"pic2word"``, ``"tat"``, ``"rtd"`` or a plugin's name (:func:`list_recipes`).
        out: output folder.
        config: a config object, a JSON file path, or ``None`` (paper defaults).
        resume: continue from ``out/checkpoint.pt`` when present.
        **overrides: config fields (``steps=100, batch_size=32``...).

    Returns:
        The :class:`~cir_milvus.train.base.TrainResult`.

    Raises:
        ConfigError: unknown recipe, unknown config field or a value of the wrong type.
    """
    cfg_cls, recipe_cls = get_recipe(name)
    if isinstance(config, TrainConfig):
        cfg = load_config(cfg_cls, None, {**config.to_dict(), **overrides})
    else:
        cfg = load_config(cfg_cls, config, overrides)
    return run(recipe_cls(cfg), cfg, out, resume=resume)
