"""The training recipes by name, and :func:`train`, the Python entry point the command line and the report share.

Example::

    from cir_milvus.train.recipes import train
    result = train("lincir", "runs/lincir", steps=100, batch_size=32)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from cir_milvus.errors import ConfigError
from cir_milvus.train.config import TrainConfig, load_config
from cir_milvus.train.loop import TrainResult, run

__all__ = ["RECIPES", "get_recipe", "list_recipes", "train"]

RECIPES: dict[str, tuple[str, str, str]] = {
    "lincir": ("cir_milvus.train.lincir", "LinCIRConfig", "LinCIRRecipe"),
    "pic2word": ("cir_milvus.train.pic2word", "Pic2WordConfig", "Pic2WordRecipe"),
    "tat": ("cir_milvus.train.tat", "TATConfig", "TATRecipe"),
    "rtd": ("cir_milvus.train.rtd", "RTDConfig", "RTDRecipe"),
}
"""Recipe name → (module, config class, recipe class)."""


def list_recipes() -> list[str]:
    """The recipe names, sorted."""
    return sorted(RECIPES)


def get_recipe(name: str) -> tuple[type[TrainConfig], type]:
    """The ``(config class, recipe class)`` of a recipe.

    Raises:
        ConfigError: unknown name (the message lists the recipes).
    """
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; available: {', '.join(list_recipes())}")
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
        The :class:`~cir_milvus.train.loop.TrainResult`.

    Raises:
        ConfigError: unknown recipe, unknown config field or a value of the wrong type.
    """
    cfg_cls, recipe_cls = get_recipe(name)
    if isinstance(config, TrainConfig):
        cfg = load_config(cfg_cls, None, {**config.to_dict(), **overrides})
    else:
        cfg = load_config(cfg_cls, config, overrides)
    return run(recipe_cls(cfg), cfg, out, resume=resume)
