"""Shared pieces of the training recipes: device/AMP, configs, checkpoints, progress, the loop, data readers.

Every recipe (:mod:`~cir_milvus.train.lincir`, :mod:`~cir_milvus.train.pic2word`, :mod:`~cir_milvus.train.tat`,
:mod:`~cir_milvus.train.rtd`) is a small class with ``param_groups()``, ``batch(step)``, ``loss(batch)``,
``state_dict()``/``load_state_dict()`` and ``export(out_dir)``; :func:`run` drives it:

- **device / precision** (:func:`select_precision`): CUDA with autocast (bf16 where supported, else fp16 with a
  ``GradScaler``); CPU in fp32. Trainable weights always stay fp32.
- **configs**: one dataclass per recipe holding the paper defaults, merged defaults → ``--config file.json`` →
  explicit CLI flags (:func:`load_config`, :func:`add_config_arguments`); the merged config is written next to
  the outputs (``config.json``) so a run can be repeated with ``--config OUT/config.json``.
- **checkpoints** (:func:`save_checkpoint` / :func:`load_checkpoint`): ``OUT/checkpoint.pt`` holds the trainable
  state, optimizer, grad scaler, step and torch RNG states. Batches are a pure function of ``(seed, step)``
  (:func:`step_rng`), so a resumed run sees exactly the batches it would have seen.
- **progress**: a tqdm bar with the running loss and samples/s; ``OUT/train_log.json`` keeps the loss curve.
- **validation and the best checkpoint**: a recipe with a ``validate()`` method (LinCIR, RTD) is scored on its
  validation split every ``val_every`` steps (and at step 50, as the official scripts do, and at the last step);
  with ``keep="best"`` the exported weights are those of the best validation R@1 (the official ``phi_best`` /
  ``text_encoder_best``), not the last step's. Data without a validation split keeps the last step (logged).
- **data readers** (kept small so ingestion code may reuse them): captions from a ``.txt`` (one per line),
  ``.jsonl`` or ``.csv`` file or the synthetic world (:func:`read_captions`); images (optionally with captions)
  from a folder, a ``.csv``/``.jsonl`` list or the synthetic world (:func:`read_images`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import time
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from cir_milvus.errors import CheckpointError, ConfigError, DatasetError

__all__ = [
    "CaptionSource",
    "ImageSource",
    "Precision",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "add_config_arguments",
    "config_from_args",
    "load_checkpoint",
    "load_config",
    "read_captions",
    "read_images",
    "run",
    "save_checkpoint",
    "select_precision",
    "step_rng",
]

logger = logging.getLogger("cir_milvus.train")

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
LOG_NAME = "train_log.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------------------------
# Configs


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
            import argparse

            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            parser.add_argument(flag, dest=f.name, type=str, default=None, help=helptext)


def config_from_args(cls: type[TrainConfig], args: Any) -> Any:
    """The config from parsed arguments (see :func:`add_config_arguments`)."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return load_config(cls, getattr(args, "config", None), overrides)


# ---------------------------------------------------------------------------------------------------------------
# Device and precision


@dataclass(frozen=True)
class Precision:
    """Where and how a recipe computes.

    Attributes:
        device: ``"cuda"`` or ``"cpu"``.
        amp_dtype: ``"bf16"``/``"fp16"`` under autocast, or ``None`` (fp32).
    """

    device: str
    amp_dtype: str | None

    def autocast(self) -> Any:
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp_dtype == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    def grad_scaler(self) -> Any:
        import torch

        return torch.amp.GradScaler(self.device.split(":")[0], enabled=self.amp_dtype == "fp16")


def device_label(prec: Precision) -> str:
    """Where a run trains, for logs and sidecars: ``"cpu"`` or ``"cuda (GPU name, bf16 autocast)"``."""
    if not prec.device.startswith("cuda"):
        return prec.device
    import torch

    amp = f", {prec.amp_dtype} autocast" if prec.amp_dtype else ""
    return f"{prec.device} ({torch.cuda.get_device_name(torch.device(prec.device))}{amp})"


def select_precision(device: str = "auto", precision: str = "auto") -> Precision:
    """CUDA + autocast (bf16 where supported, else fp16) when present; CPU fp32 otherwise.

    Raises:
        ConfigError: CUDA requested but unavailable, or half precision requested on CPU.
    """
    import torch

    if device in ("auto", None):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was requested but torch sees no CUDA GPU; use --device cpu")
    if device == "cpu":
        if precision not in ("auto", "fp32"):
            raise ConfigError(f"precision={precision!r} needs a CUDA GPU; use fp32 (or auto) on CPU")
        return Precision("cpu", None)
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Precision(device, None if precision == "fp32" else precision)


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The data RNG of one step: a pure function of ``(seed, step, stream)`` so a resumed run is exact."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


def setup(cfg: TrainConfig) -> tuple[Precision, Any]:
    """The start every recipe shares: precision/device, torch threads, the seed, then the frozen encoder."""
    import torch

    precision = select_precision(cfg.device, cfg.precision)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    return precision, load_encoder(cfg, precision)


def load_encoder(cfg: TrainConfig, prec: Precision) -> Any:
    """The frozen backbone as a :class:`~cir_milvus.encoders.torch.TorchEncoder` (fp32 weights, eval mode).

    Training and validation images get the reference transform (``decode="exact"``), as in the research code.
    """
    from cir_milvus.encoders.torch import TorchEncoder

    enc = TorchEncoder(cfg.model, cfg.pretrained, device=prec.device, precision="fp32", decode="exact")
    if cfg.grad_checkpointing:
        enc.model.set_grad_checkpointing(True)
    enc.model.requires_grad_(False)
    enc.model.eval()
    return enc


DECAY_FILTERS = ("all", "pic2word", "skip-1d")
"""Values of :attr:`TrainConfig.decay_filter` (see :func:`decay_groups`)."""


def _no_decay(rule: str, name: str, p: Any) -> bool:
    if rule == "all":
        return False
    if rule == "pic2word":  # Pic2Word main.py: exclude = "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
        return any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
    return bool(p.ndim < 2 or "embedding" in name or "logit_scale" in name)


def decay_groups(named: Sequence[tuple[str, Any]], weight_decay: float, rule: str = "all") -> list[dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters.

    Args:
        named: ``(name, parameter)`` pairs (``module.named_parameters()``).
        weight_decay: the decay of the decayed group.
        rule: ``"all"`` decays every parameter (LinCIR, RTD: ``AdamW(model.parameters(), weight_decay=wd)``);
            ``"pic2word"`` skips names containing ``bn``, ``ln``, ``bias`` or ``logit_scale`` (Pic2Word);
            ``"skip-1d"`` skips 1-d tensors (biases, norm gains), embeddings and scales.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]`` (the second
        group is omitted when empty).
    """
    if rule not in DECAY_FILTERS:
        raise ConfigError(f"decay_filter must be one of {list(DECAY_FILTERS)}, got {rule!r}")
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if _no_decay(rule, name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


# ---------------------------------------------------------------------------------------------------------------
# Recipes and the loop


class Recipe(Protocol):
    """What :func:`run` needs from a recipe."""

    samples_per_step: int

    def param_groups(self) -> list[dict[str, Any]]: ...
    def batch(self, step: int) -> Any: ...
    def loss(self, batch: Any) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, sd: dict[str, Any]) -> None: ...
    def export(self, out: Path, result: TrainResult) -> dict[str, str]: ...


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


def effective_warmup(cfg: TrainConfig) -> int:
    """Warm-up steps of a run: ``cfg.warmup``, capped at ``warmup_cap · steps`` when a cap is set."""
    if cfg.warmup_cap > 0:
        return min(cfg.warmup, int(cfg.steps * cfg.warmup_cap))
    return cfg.warmup


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up ``lr · (step + 1) / warmup`` then constant or cosine decay to 0 (Pic2Word's ``cosine_lr``;
    a run shorter than the warm-up only ramps)."""
    warmup = effective_warmup(cfg)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(progress, 1.0)))


def save_checkpoint(out: Path, recipe: Recipe, optimizer: Any, scaler: Any, step: int, cfg: TrainConfig,
                    best: dict[str, Any] | None = None) -> Path:
    """Write ``OUT/checkpoint.pt`` atomically (trainable state, optimizer, scaler, step, RNG states, config, and the
    best-validation state so far when there is one)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "recipe": cfg.recipe,
        "step": int(step),
        "trainable": {k: v.detach().cpu() for k, v in recipe.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
    }
    if best is not None and best.get("state") is not None:
        payload["best"] = {"state": best["state"], "step": int(best["step"]), "metric": float(best["metric"]),
                           "history": json.dumps(best.get("history", []))}
    tmp = out / (CHECKPOINT_NAME + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out / CHECKPOINT_NAME)
    return out / CHECKPOINT_NAME


def load_checkpoint(out: Path) -> dict[str, Any] | None:
    """Read ``OUT/checkpoint.pt`` (``weights_only=True``) or return ``None`` when there is none.

    Raises:
        CheckpointError: the file exists but cannot be read.
    """
    import torch

    path = Path(out) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - unpickling errors of several types
        raise CheckpointError(f"{path} is not a readable training checkpoint ({type(e).__name__}: {e}); delete it "
                              "or pass --no-resume") from e


def run(recipe: Recipe, cfg: TrainConfig, out: str | os.PathLike[str], *, resume: bool = True,
        export: bool = True) -> TrainResult:
    """Train ``recipe`` for ``cfg.steps`` steps (continuing a checkpoint in ``out`` when ``resume``), then export.

    Args:
        recipe: a built recipe object.
        cfg: its config (written to ``out/config.json``).
        out: output folder (checkpoint, config, log, exported weights).
        resume: continue from ``out/checkpoint.pt`` when present (the recipe name must match).
        export: write the recipe's deployable outputs at the end.

    Returns:
        A :class:`TrainResult` (also written to ``out/train_log.json``).

    Raises:
        CheckpointError: the checkpoint belongs to another recipe.
    """
    import torch
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prec = getattr(recipe, "precision", select_precision(cfg.device, cfg.precision))
    optimizer = torch.optim.AdamW(recipe.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    scaler = prec.grad_scaler()
    start = 0
    best: dict[str, Any] = {"state": None, "step": None, "metric": -math.inf, "history": []}
    ckpt = load_checkpoint(out) if resume else None
    if ckpt is not None:
        if ckpt.get("recipe") != cfg.recipe:
            raise CheckpointError(f"{out / CHECKPOINT_NAME} is a {ckpt.get('recipe')!r} checkpoint, not "
                                  f"{cfg.recipe!r}; use another --out or --no-resume")
        recipe.load_state_dict(ckpt["trainable"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        start = int(ckpt["step"])
        if isinstance(ckpt.get("best"), dict):
            b = ckpt["best"]
            best = {"state": b["state"], "step": int(b["step"]), "metric": float(b["metric"]),
                    "history": json.loads(b.get("history", "[]"))}
    (out / CONFIG_NAME).write_text(json.dumps({"recipe": cfg.recipe, **cfg.to_dict()}, indent=2) + "\n")
    result = TrainResult(cfg.recipe, out, start, start, device=device_label(prec))
    log_path = out / LOG_NAME
    prior_seconds, prior_samples = 0.0, 0
    if start and log_path.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            prev = json.loads(log_path.read_text())
            result.losses = list(prev["losses"])[:start]
            prior_seconds, prior_samples = float(prev["seconds"]), int(prev["samples"])
    result.seconds, result.samples = prior_seconds, prior_samples
    result.validation = list(best["history"])
    for note in _run_notes(recipe, cfg):
        logger.warning("%s: %s", cfg.recipe, note)
        result.notes.append(note)
    validates = bool(getattr(recipe, "has_validation", False)) and cfg.val_every > 0
    recipe.train(True)
    fixed = recipe.batch(0) if cfg.repeat_batch else None
    bar = tqdm(range(start, cfg.steps), desc=f"train {cfg.recipe}", unit="step", disable=not cfg.progress,
               initial=start, total=cfg.steps)
    t_train = prior_seconds
    for step in bar:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        batch = fixed if fixed is not None else recipe.batch(step)
        with prec.autocast():
            loss = recipe.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{cfg.recipe}: loss became {value} at step {step}; lower --lr")
        result.losses.append(value)
        result.step = step + 1
        result.samples += recipe.samples_per_step
        t_train += time.perf_counter() - t0
        result.seconds = t_train
        if step % cfg.log_every == 0 or step + 1 == cfg.steps:
            bar.set_postfix(loss=f"{np.mean(result.losses[-cfg.log_every:]):.4f}",
                            samples_s=f"{result.samples_per_s:.0f}")
        done = step + 1
        if validates and (done % cfg.val_every == 0 or done == 50 or done == cfg.steps):
            _validate(recipe, done, best)
            result.validation = list(best["history"])
        if cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
            save_checkpoint(out, recipe, optimizer, scaler, done, cfg, best)
    bar.close()
    recipe.train(False)
    save_checkpoint(out, recipe, optimizer, scaler, result.step, cfg, best)
    if cfg.keep == "best" and best["state"] is not None:
        recipe.load_state_dict(best["state"])  # export the best validation weights (official *_best.pt)
        result.kept, result.best_step, result.best_metric = "best", best["step"], best["metric"]
        msg = (f"kept the weights of step {best['step']} (best validation R@1 {best['metric']:.2f}), "
               f"not the last step {result.step}")
        logger.info("%s: %s", cfg.recipe, msg)
        result.notes.append(msg)
    if export:
        result.outputs = recipe.export(out, result)
    log_path.write_text(json.dumps({**result.summary(), "config": cfg.to_dict(), "losses": result.losses},
                                   indent=1) + "\n")
    return result


def _run_notes(recipe: Recipe, cfg: TrainConfig) -> list[str]:
    """What a run should say before it starts: a warm-up longer than the run, a best checkpoint that cannot be kept."""
    notes = []
    warmup = effective_warmup(cfg)
    if warmup > cfg.steps > 0:
        notes.append(f"the warm-up ({warmup} steps) is longer than the run ({cfg.steps} steps): the learning rate "
                     f"rises linearly to {cfg.lr * cfg.steps / warmup:.3g} ({100 * cfg.steps / warmup:.2g}% of lr="
                     f"{cfg.lr:g}) and never decays; pass --warmup N (or --warmup-cap 0.1) for a shorter warm-up")
    if cfg.keep == "best" and hasattr(recipe, "validate"):
        if not getattr(recipe, "has_validation", False):
            notes.append("no validation split (file data, or --val none): the last step's weights are kept")
        elif cfg.val_every == 0:
            notes.append("val_every=0: no validation, the last step's weights are kept")
    return notes


def _validate(recipe: Any, step: int, best: dict[str, Any]) -> None:
    """Score the recipe on its validation split; remember its state when the R@1 beats the best so far (strictly,
    as the official scripts do)."""
    recipe.train(False)
    metric = float(recipe.validate())
    recipe.train(True)
    best["history"].append({"step": step, "R@1": metric})
    if metric > best["metric"]:
        best["metric"], best["step"] = metric, step
        best["state"] = {k: v.detach().cpu().clone() for k, v in recipe.state_dict().items()}


class HeadRecipe:
    """Shared tail of the recipes that train a projection head (LinCIR, Pic2Word): the trainable state is the head
    module ``self.net``, exported as a :class:`~cir_milvus.heads.Head` folder and optionally shipped as one file."""

    head_kind: str = ""
    net: Any
    cfg: Any
    encoder: Any

    def state_dict(self) -> dict[str, Any]:
        return dict(self.net.state_dict())

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.net.load_state_dict(sd, strict=True)

    def head(self) -> Any:
        from cir_milvus.heads import Head

        return Head(self.head_kind, self.net.eval(), source=None)

    def export(self, out: Path, result: TrainResult) -> dict[str, str]:
        head = self.head()
        outputs = {"head": str(head.save(out / "head"))}
        if self.cfg.ship:
            outputs.update(ship_head(head, self.cfg.ship, self.cfg, result, self.encoder.recipe))
        return outputs


def ship_head(head: Any, path: str | os.PathLike[str], cfg: TrainConfig, result: TrainResult,
              backbone: dict[str, Any] | None = None) -> dict[str, str]:
    """Write a head as ONE ``.safetensors`` file (plain state dict) plus a JSON sidecar of its training.

    :func:`~cir_milvus.heads.load_head` reads the file as a plain state dict (architecture from the shapes), so
    ``load_head(kind, path)`` works; the demo infers ``kind`` from the ``NAME.{kind}.safetensors`` file name.

    Args:
        head: the trained :class:`~cir_milvus.heads.Head`.
        path: the ``.safetensors`` file to write (the sidecar is the same name with ``.json``).
        cfg: the training config (recorded, so ``--config SIDECAR`` repeats the run).
        result: the run (steps, seconds, samples/s, loss).
        backbone: the encoder recipe the head was trained against (its weights sha256 is recorded: a head only
            fits the exact backbone weights).

    Returns:
        ``{"shipped": path, "sidecar": path}``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"ship path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().float().contiguous() for k, v in head.module.state_dict().items()}
    save_file(sd, str(path), metadata={"format": "pt", "kind": head.kind, "arch": json.dumps(head.arch),
                                       "template": head.template, "placeholder": head.placeholder})
    os.chmod(path, 0o644)  # package data: safetensors creates its files owner-only
    sidecar = path.with_suffix(".json")
    info = {
        "kind": head.kind, "arch": head.arch, "template": head.template, "placeholder": head.placeholder,
        "weights_sha256": head.weights_sha256,
        "backbone": {k: (backbone or {}).get(k) for k in ("model", "pretrained", "weights_sha256")},
        "recipe": cfg.recipe, "config": cfg.to_dict(),
        "steps": result.step, "seconds": round(result.seconds, 1),
        "samples_per_s": round(result.samples_per_s, 1) if result.samples else None, "device": result.device,
        "final_loss": result.summary()["final_loss"],
        "command": f"python -m cir_milvus.train {cfg.recipe} --config {sidecar} --out OUT",
    }
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    return {"shipped": str(path), "sidecar": str(sidecar)}


# ---------------------------------------------------------------------------------------------------------------
# Data readers


SYNTHETIC_SOURCES = {"synthetic": 0.4, "synthetic-full": 1.0}
"""Synthetic data sources and the share of their captions that name all four attributes (the rest name 1-3)."""


def _is_synthetic(source: str | os.PathLike[str]) -> bool:
    return str(source) in SYNTHETIC_SOURCES


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` or ``.csv`` file as dicts."""
    if not path.is_file():
        raise DatasetError(f"data file {path} does not exist")
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DatasetError(f"{path}:{i + 1} is not JSON: {e}") from e
            rows.append(row if isinstance(row, dict) else {"text": row})
        return rows
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    raise DatasetError(f"{path}: expected a .jsonl or .csv file")


def _pick(row: dict[str, Any], keys: Sequence[str], path: Path) -> Any:
    for k in keys:
        if row.get(k) not in (None, ""):
            return row[k]
    raise DatasetError(f"{path}: a row has none of the columns {list(keys)} (row keys: {sorted(row)})")


CAPTION_KEYS = ("caption", "text", "prompt")
PATH_KEYS = ("path", "image", "filepath", "file", "url")


def epoch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of batch ``step`` when walking shuffled epochs of ``n`` items (a new permutation per epoch)."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([int(seed), int(epoch), 7]).permutation(n)
    idx = perm[k * batch_size:(k + 1) * batch_size]
    if len(idx) < batch_size:  # fewer items than one batch: wrap around
        idx = np.resize(perm, batch_size)
    return idx


@dataclass
class CaptionSource:
    """Captions from a file, or freshly generated by the synthetic world (``texts is None``).

    Example:
        >>> src = read_captions("synthetic")
        >>> len(src.batch(4, seed=0, step=0))
        4
    """

    texts: list[str] | None
    name: str = "synthetic"
    p_full: float = 0.4

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else 0

    @property
    def finite(self) -> bool:
        return self.texts is not None

    def batch(self, n: int, seed: int, step: int) -> list[str]:
        """The captions of one step (deterministic in ``seed`` and ``step``)."""
        if self.texts is None:
            from cir_milvus.synthetic import caption, random_attributes

            rng = step_rng(seed, step, 1)
            return [caption(random_attributes(rng), rng, p_full=self.p_full) for _ in range(n)]
        return [self.texts[i] for i in epoch_indices(len(self.texts), n, seed, step)]


def read_captions(source: str | os.PathLike[str]) -> CaptionSource:
    """Captions from ``"synthetic"`` / ``"synthetic-full"``, a ``.txt`` (one per line), ``.jsonl`` or ``.csv`` (column caption/text/prompt).

    Raises:
        DatasetError: missing file, unknown format, no captions.
    """
    if _is_synthetic(source):
        return CaptionSource(None, name=str(source), p_full=SYNTHETIC_SOURCES[str(source)])
    path = Path(source)
    if path.suffix == ".txt":
        if not path.is_file():
            raise DatasetError(f"caption file {path} does not exist")
        texts = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    else:
        texts = [str(_pick(r, CAPTION_KEYS, path)) for r in _read_rows(path)]
    if not texts:
        raise DatasetError(f"{path} holds no captions")
    return CaptionSource(texts, str(path))


@dataclass
class ImageSource:
    """Images (with captions when known) from files, or fresh renders of the synthetic world (``paths is None``)."""

    paths: list[Path] | None
    captions: list[str | None] | None = None
    name: str = "synthetic"
    p_full: float = 0.4

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else 0

    @property
    def finite(self) -> bool:
        return self.paths is not None

    @property
    def has_captions(self) -> bool:
        return self.paths is None or (self.captions is not None and all(c is not None for c in self.captions))

    def batch(self, n: int, seed: int, step: int) -> tuple[list[Any], list[str] | None]:
        """``(images, captions)`` of one step; images are PIL images (synthetic) or paths."""
        images, caps, _ = self.labelled_batch(n, seed, step)
        return images, caps

    def labelled_batch(self, n: int, seed: int, step: int) -> tuple[list[Any], list[str] | None, np.ndarray | None]:
        """``(images, captions, positives)`` of one step. ``positives[i, j] = 1`` when caption ``j`` describes image
        ``i``: the synthetic world knows it (a partial caption such as "a blue object" describes every blue image);
        for files it is ``None`` (only the own caption is known to match)."""
        if self.paths is None:
            from cir_milvus.synthetic import sample_labelled_pairs

            images, texts, compat = sample_labelled_pairs(n, step_rng(seed, step, 2), p_full=self.p_full)
            return list(images), texts, compat
        idx = epoch_indices(len(self.paths), n, seed, step)
        caps = [str(self.captions[i]) for i in idx] if self.has_captions and self.captions else None
        return [self.paths[i] for i in idx], caps, None


def _iter_folder(folder: Path) -> Iterator[Path]:
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            yield p


def read_images(source: str | os.PathLike[str]) -> ImageSource:
    """Images from ``"synthetic"`` (``"synthetic-full"``: every caption names all four attributes), a folder
    (recursive), or a ``.csv``/``.jsonl`` list (column path/image/filepath,
    optional caption/text); relative paths are resolved against the list's folder.

    Raises:
        DatasetError: missing folder/file, no images.
    """
    if _is_synthetic(source):
        return ImageSource(None, name=str(source), p_full=SYNTHETIC_SOURCES[str(source)])
    path = Path(source)
    if path.is_dir():
        paths = list(_iter_folder(path))
        caps: list[str | None] | None = None
    else:
        rows = _read_rows(path)
        paths = [(path.parent / str(_pick(r, PATH_KEYS, path))) for r in rows]
        caps = [next((str(r[k]) for k in CAPTION_KEYS if r.get(k) not in (None, "")), None) for r in rows]
    if not paths:
        raise DatasetError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return ImageSource(paths, caps, str(path))
