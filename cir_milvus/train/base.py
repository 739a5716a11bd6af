"""What a training recipe is, what a run returns, and the registry of recipes by name.

A recipe is a :class:`Recipe` subclass naming its config dataclass (``config_class``) and registered under the
name its config records (``TrainConfig.recipe``)::

    @RECIPES.register("lincir")
    class LinCIRRecipe(HeadRecipe):
        config_class = LinCIRConfig

The built-in recipes (``lincir``, ``pic2word``, ``tat``, ``rtd``) register when :mod:`cir_milvus.train` is imported;
other packages add theirs through the entry-point group ``cir_milvus.train``. :func:`cir_milvus.train.loop.run`
drives any of them; :func:`cir_milvus.train.recipes.train` builds one by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.registry import Registry
from cir_milvus.train.config import TrainConfig
from cir_milvus.train.device import Precision

__all__ = ["RECIPES", "Recipe", "TrainResult"]

C = TypeVar("C", bound=TrainConfig)


class Recipe(Generic[C]):
    """Base of the training recipes: the trainable state and the steps :func:`~cir_milvus.train.loop.run` drives.

    Attributes:
        config_class: the recipe's config dataclass (its ``recipe`` class variable is the registered name).
        can_validate: the recipe can score a validation split (LinCIR, RTD); :attr:`has_validation` says whether
            this run has one.
        cfg: the run's config (an instance of ``config_class``).
        samples_per_step: training samples per step (for samples/s).
        precision: where and how it computes (set in ``__init__``, e.g. by :func:`~cir_milvus.train.device.setup`).
    """

    config_class: ClassVar[type[TrainConfig]] = TrainConfig
    can_validate: ClassVar[bool] = False
    cfg: C
    samples_per_step: int
    precision: Precision

    def __init__(self, cfg: C) -> None:
        self.cfg = cfg

    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups of the trainable parameters."""
        raise NotImplementedError

    def batch(self, step: int) -> Any:
        """The data of one step (a pure function of the seed and ``step``)."""
        raise NotImplementedError

    def loss(self, batch: Any) -> Any:
        """The loss tensor of one batch."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> Any:
        """Switch the trainable modules to training (or evaluation) mode."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The trainable state (what checkpoints hold)."""
        raise NotImplementedError

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        raise NotImplementedError

    def export(self, out: Path, result: TrainResult) -> dict[str, str]:
        """Write the deployable outputs; ``{name: path}``."""
        raise NotImplementedError

    @property
    def has_validation(self) -> bool:
        """Whether this run has a validation split to score (see :meth:`validate`)."""
        return False

    def validate(self) -> float:
        """R@1 on the validation split with the current weights."""
        raise NotImplementedError(f"{type(self).__name__} has no validation")


def _check_name(name: str, cls: type[Recipe[Any]]) -> None:
    if cls.config_class.recipe != name:
        RECIPES.unregister(name)
        raise ConfigError(f"recipe {name!r} ({cls.__qualname__}) has config_class {cls.config_class.__name__} whose "
                          f"recipe is {cls.config_class.recipe!r}; they must agree (checkpoints record the name)")


RECIPES: Registry[type[Recipe[Any]]] = Registry("training recipe", Recipe, group="cir_milvus.train", on_register=_check_name)
"""The training recipes by name (``lincir``, ``pic2word``, ``tat``, ``rtd`` and plugins)."""


@dataclass
class TrainResult:
    """What a run did: steps, losses, timing and the written files."""

    recipe: str
    out: Path
    start_step: int
    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    device: str = ""
    notes: list[str] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    best_step: int | None = None
    best_metric: float | None = None
    kept: str = "last"

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        tail = self.losses[-20:]
        return {"recipe": self.recipe, "out": str(self.out), "start_step": self.start_step, "step": self.step,
                "first_loss": float(np.mean(self.losses[:5])) if self.losses else None,
                "final_loss": float(np.mean(tail)) if tail else None, "seconds": round(self.seconds, 2),
                "samples": self.samples,
                "samples_per_s": round(self.samples_per_s, 1) if self.samples else None, "device": self.device,
                "outputs": self.outputs, "kept": self.kept, "best_step": self.best_step,
                "best_metric": self.best_metric, "validation": self.validation, "notes": self.notes}
