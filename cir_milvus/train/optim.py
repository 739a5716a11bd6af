"""The optimiser's settings: AdamW parameter groups (which parameters decay) and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cir_milvus.errors import ConfigError
from cir_milvus.train.config import DECAY_FILTERS, TrainConfig

__all__ = ["decay_groups", "effective_warmup", "lr_at"]


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
