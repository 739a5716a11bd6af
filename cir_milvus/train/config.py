"""Training configs: one dataclass per recipe, merged defaults → ``--config file.json`` → explicit overrides.

Every recipe subclasses :class:`TrainConfig` with its paper's defaults. :func:`load_config` merges a JSON file and
explicit overrides over them (checking types and refusing unknown keys with the list of valid ones);
:func:`add_config_arguments` / :func:`config_from_args` give each field a ``--kebab-case`` flag. The merged config is
written next to a run's outputs (``config.json``) so ``--config OUT/config.json`` repeats the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cir_milvus.errors import ConfigError

__all__ = ["DECAY_FILTERS", "PRE_FIDELITY", "TrainConfig", "add_config_arguments", "config_from_args", "load_config"]

logger = logging.getLogger("cir_milvus.train")

DECAY_FILTERS = ("all", "pic2word", "skip-1d")
"""Values of :attr:`TrainConfig.decay_filter` (see :func:`cir_milvus.train.optim.decay_groups`)."""


@dataclass
class TrainConfig:
    """Fields every recipe shares. Recipes subclass it and override the defaults with their paper's values.

    Attributes:
        model: open_clip model name (default: the demo model).
        pretrained: pretrained tag or checkpoint path (``"cir-demo"`` = the shipped demo weights; ``None`` = random).
        steps: optimisation steps (a resumed run continues up to this total).
        batch_size: samples per step.
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay, applied to the parameters that ``decay_filter`` selects.
        beta1, beta2, eps: AdamW hyper-parameters (torch's defaults 0.9 / 0.999 / 1e-8, as LinCIR and RTD use).
        decay_filter: which parameters get weight decay: ``"all"`` (every parameter, as LinCIR's and RTD's
            ``AdamW(model.parameters())``), ``"pic2word"`` (all but names containing ``bn``/``ln``/``bias``/
            ``logit_scale``, Pic2Word's ``main.py``) or ``"skip-1d"`` (all but 1-d tensors, embeddings and scales).
        warmup: linear warm-up steps (the official length even when the run is shorter: the learning rate then
            never reaches ``lr``, and the run says so in a log line).
        warmup_cap: cap the warm-up at this fraction of ``steps`` (0 = no cap, official; 0.1 = the earlier default).
        schedule: ``"constant"`` or ``"cosine"`` (after the warm-up).
        seed: weights and data seed.
        device: ``"auto"`` (CUDA when present), ``"cuda"``, ``"cpu"``.
        precision: ``"auto"`` (bf16/fp16 autocast on CUDA, fp32 on CPU), ``"fp32"``, ``"fp16"``, ``"bf16"``.
        threads: torch CPU threads (``None``: torch's choice).
        save_every: write a checkpoint every N steps (0: only at the end).
        log_every: refresh the progress bar every N steps.
        repeat_batch: reuse the first batch at every step (a debugging aid: a recipe must be able to fit it).
        progress: show the progress bar.
        grad_checkpointing: recompute the towers' transformer blocks in the backward pass (open_clip's
            ``set_grad_checkpointing``) instead of keeping their activations: about a third more compute for the
            memory of large batches on large models (e.g. TAT's batch 1024 on ViT-L-14 on one GPU).
        val: validation data of recipes that validate (LinCIR, RTD): ``"auto"`` (the synthetic world's val split
            when training on synthetic data, none for file data), ``"synthetic"`` or ``"none"``.
        val_every: validate every N steps (also at step 50 and at the last step); 0 = never.
        val_queries: validation queries (synthetic split).
        keep: ``"best"`` (export the weights of the best validation R@1, official) or ``"last"``.
    """

    recipe: ClassVar[str] = ""
    legacy: ClassVar[dict[str, Any]] = {}
    """Recipe-specific values a pre-fidelity config file implied (see :data:`PRE_FIDELITY`)."""

    model: str = "cir-demo-tiny"
    pretrained: str | None = "cir-demo"
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    decay_filter: str = "all"
    warmup: int = 0
    warmup_cap: float = 0.0
    schedule: str = "constant"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    save_every: int = 0
    log_every: int = 10
    repeat_batch: bool = False
    progress: bool = True
    grad_checkpointing: bool = False
    val: str = "auto"
    val_every: int = 0
    val_queries: int = 500
    keep: str = "best"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise ConfigError(f"steps must be >= 0 and batch_size >= 1, got steps={self.steps}, "
                              f"batch_size={self.batch_size}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ConfigError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {self.precision!r}")
        if self.decay_filter not in DECAY_FILTERS:
            raise ConfigError(f"decay_filter must be one of {list(DECAY_FILTERS)}, got {self.decay_filter!r}")
        if not 0.0 <= self.warmup_cap <= 1.0 or self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0 and warmup_cap in [0, 1] (0 = no cap), got warmup={self.warmup}, "
                              f"warmup_cap={self.warmup_cap}")
        if self.val not in ("auto", "synthetic", "none"):
            raise ConfigError(f"val must be 'auto', 'synthetic' or 'none', got {self.val!r}")
        if self.keep not in ("best", "last"):
            raise ConfigError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if self.val_every < 0 or self.val_queries < 1:
            raise ConfigError(f"val_every must be >= 0 and val_queries >= 1, got {self.val_every}, {self.val_queries}")


PRE_FIDELITY: dict[str, Any] = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "decay_filter": "skip-1d",
                                 "warmup_cap": 0.1, "keep": "last", "val": "none"}
"""What a config file written before the recipes followed the official scripts (it has no ``decay_filter`` key)
meant: torch's AdamW defaults, no decay on 1-d tensors and embeddings, warm-up capped at a tenth of the run, the
last step kept (plus each recipe's :attr:`TrainConfig.legacy`). :func:`load_config` applies them to such a file,
so ``--config OUT/config.json`` and the shipped heads' sidecars still repeat their runs."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Check/convert a JSON or CLI value against a field's type hint."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"config field {name!r} cannot be null")
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes")
            return bool(value)
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config field {name!r} expects {getattr(base, '__name__', base)}, got {value!r}") from e
    return value


def load_config(cls: type[TrainConfig], path: str | os.PathLike[str] | None = None,
                overrides: dict[str, Any] | None = None) -> Any:
    """Build a recipe config: dataclass defaults → JSON file → explicit overrides.

    Args:
        cls: the recipe's config dataclass.
        path: a JSON object file (keys are field names; ``-`` and ``_`` both accepted), or a ``train_log.json`` /
            shipped-head sidecar (its ``"config"`` object is used).
        overrides: values that win over the file (``None`` sets an optional field to ``None``).

    Raises:
        ConfigError: unreadable file, unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    hints = _field_types(cls)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a JSON object, found {type(data).__name__}")
        if isinstance(data.get("config"), dict):  # a train_log.json or a shipped head's sidecar
            data = dict(data["config"])
        data.pop("recipe", None)
        data = {k.replace("-", "_"): v for k, v in data.items()}
        if "decay_filter" not in data and "steps" in data:  # written before the official defaults
            legacy = {k: v for k, v in {**PRE_FIDELITY, **cls.legacy}.items() if k in hints}
            logger.info("%s predates the official-recipe defaults: applying its settings %s", path, legacy)
            values.update(legacy)
        values.update(data)
    values.update(overrides or {})
    unknown = sorted(set(values) - set(hints) - {"recipe"})
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; valid: {sorted(f.name for f in dataclasses.fields(cls))}")
    cfg = cls(**{k: _coerce(k, hints[k], v) for k, v in values.items()})
    cfg.validate()
    return cfg


def add_config_arguments(parser: Any, cls: type[TrainConfig]) -> None:
    """Add ``--config`` and one ``--kebab-case`` flag per field (default ``None``: only given flags override)."""
    parser.add_argument("--config", type=Path, default=None, help="JSON file of config values")
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        default = f.default if f.default is not dataclasses.MISSING else None
        helptext = f"(default: {default!r})"
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            parser.add_argument(flag, dest=f.name, type=str, default=None, help=helptext)


def config_from_args(cls: type[TrainConfig], args: Any) -> Any:
    """The config from parsed arguments (see :func:`add_config_arguments`)."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return load_config(cls, getattr(args, "config", None), overrides)
