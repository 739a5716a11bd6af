"""The training loop every recipe shares: optimiser, resume, progress, validation, the best checkpoint, export.

Every recipe (:mod:`~cir_milvus.train.lincir`, :mod:`~cir_milvus.train.pic2word`, :mod:`~cir_milvus.train.tat`,
:mod:`~cir_milvus.train.rtd`) is a small class with ``param_groups()``, ``batch(step)``, ``loss(batch)``,
``state_dict()``/``load_state_dict()`` and ``export(out_dir)`` (a :class:`~cir_milvus.train.base.Recipe`); :func:`run`
drives it:

- **checkpoints** (:func:`save_checkpoint` / :func:`load_checkpoint`): ``OUT/checkpoint.pt`` holds the trainable
  state, optimizer, grad scaler, step and torch RNG states. Batches are a pure function of ``(seed, step)``
  (:func:`~cir_milvus.train.data.step_rng`), so a resumed run sees exactly the batches it would have seen.
- **progress**: a tqdm bar with the running loss and samples/s; ``OUT/train_log.json`` keeps the loss curve.
- **validation and the best checkpoint**: a recipe with a ``validate()`` method (LinCIR, RTD) is scored on its
  validation split every ``val_every`` steps (and at step 50, as the official scripts do, and at the last step);
  with ``keep="best"`` the exported weights are those of the best validation R@1 (the official ``phi_best`` /
  ``text_encoder_best``), not the last step's. Data without a validation split keeps the last step (logged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus.errors import CheckpointError
from cir_milvus.train.base import Recipe, TrainResult
from cir_milvus.train.config import TrainConfig
from cir_milvus.train.device import Precision, device_label
from cir_milvus.train.optim import effective_warmup, lr_at

__all__ = ["BestSoFar", "load_checkpoint", "run", "save_checkpoint"]

logger = logging.getLogger("cir_milvus.train")

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
LOG_NAME = "train_log.json"


@dataclass
class BestSoFar:
    """The validation history of a run and the trainable state of its best validation R@1 so far."""

    state: dict[str, Any] | None = None
    step: int | None = None
    metric: float = -math.inf
    history: list[dict[str, float]] = field(default_factory=list)

    def to_checkpoint(self) -> dict[str, Any] | None:
        if self.state is None or self.step is None:
            return None
        return {"state": self.state, "step": int(self.step), "metric": float(self.metric),
                "history": json.dumps(self.history)}

    @classmethod
    def from_checkpoint(cls, b: Any) -> BestSoFar:
        if not isinstance(b, dict):
            return cls()
        return cls(b["state"], int(b["step"]), float(b["metric"]), json.loads(b.get("history", "[]")))


def save_checkpoint(out: Path, recipe: Recipe[Any], optimizer: Any, scaler: Any, step: int, cfg: TrainConfig,
                    best: BestSoFar | None = None) -> Path:
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
    kept = best.to_checkpoint() if best is not None else None
    if kept is not None:
        payload["best"] = kept
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
                              "or pass resume=False (--no-resume on the command line)") from e


def run(recipe: Recipe[Any], cfg: TrainConfig, out: str | os.PathLike[str], *, resume: bool = True,
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prec = recipe.precision
    loop = _Loop(recipe, cfg, prec, out)
    start = loop.resume() if resume else 0
    (out / CONFIG_NAME).write_text(json.dumps({"recipe": cfg.recipe, **cfg.to_dict()}, indent=2) + "\n")
    result = loop.result = TrainResult(cfg.recipe, out, start, start, device=device_label(prec))
    _carry_log(result, out / LOG_NAME)
    result.validation = list(loop.best.history)
    for note in _run_notes(recipe, cfg):
        logger.warning("%s: %s", cfg.recipe, note)
        result.notes.append(note)
    loop.steps(start)
    save_checkpoint(out, recipe, loop.optimizer, loop.scaler, result.step, cfg, loop.best)
    loop.keep_best()
    if export:
        result.outputs = recipe.export(out, result)
    (out / LOG_NAME).write_text(json.dumps({**result.summary(), "config": cfg.to_dict(), "losses": result.losses},
                                           indent=1) + "\n")
    return result


def _carry_log(result: TrainResult, log_path: Path) -> None:
    """A resumed run continues the loss curve, seconds and samples of the log it resumes."""
    if not result.start_step or not log_path.is_file():
        return
    with contextlib.suppress(ValueError, KeyError, TypeError):
        prev = json.loads(log_path.read_text())
        losses = list(prev["losses"])[:result.start_step]
        result.seconds, result.samples = float(prev["seconds"]), int(prev["samples"])
        result.losses = losses


class _Loop:
    """One run's optimiser, grad scaler and best-so-far state, and the steps between two checkpoints."""

    result: TrainResult

    def __init__(self, recipe: Recipe[Any], cfg: TrainConfig, prec: Precision, out: Path) -> None:
        import torch

        self.recipe, self.cfg, self.prec, self.out = recipe, cfg, prec, out
        self.optimizer = torch.optim.AdamW(recipe.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        self.scaler = prec.grad_scaler()
        self.best = BestSoFar()

    def resume(self) -> int:
        """Load ``OUT/checkpoint.pt`` when there is one; the step to continue from."""
        import torch

        ckpt = load_checkpoint(self.out)
        if ckpt is None:
            return 0
        if ckpt.get("recipe") != self.cfg.recipe:
            raise CheckpointError(f"{self.out / CHECKPOINT_NAME} is a {ckpt.get('recipe')!r} checkpoint, not "
                                  f"{self.cfg.recipe!r}; use another output folder or resume=False "
                                  "(--out DIR or --no-resume on the command line)")
        self.recipe.load_state_dict(ckpt["trainable"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        self.best = BestSoFar.from_checkpoint(ckpt.get("best"))
        return int(ckpt["step"])

    def step(self, step: int, batch: Any) -> float:
        """One optimiser step; the loss value."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, step)
        with self.prec.autocast():
            loss = self.recipe.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{self.cfg.recipe}: loss became {value} at step {step}; lower lr "
                                     "(--lr on the command line)")
        return value

    def steps(self, start: int) -> None:
        """Steps ``start .. cfg.steps``, with progress, validation and periodic checkpoints."""
        from tqdm.auto import tqdm

        cfg, recipe, result = self.cfg, self.recipe, self.result
        validates = recipe.has_validation and cfg.val_every > 0
        recipe.train(True)
        fixed = recipe.batch(0) if cfg.repeat_batch else None
        bar = tqdm(range(start, cfg.steps), desc=f"train {cfg.recipe}", unit="step", disable=not cfg.progress,
                   initial=start, total=cfg.steps)
        for step in bar:
            t0 = time.perf_counter()
            result.losses.append(self.step(step, fixed if fixed is not None else recipe.batch(step)))
            result.step = done = step + 1
            result.samples += recipe.samples_per_step
            result.seconds += time.perf_counter() - t0
            if step % cfg.log_every == 0 or done == cfg.steps:
                bar.set_postfix(loss=f"{np.mean(result.losses[-cfg.log_every:]):.4f}",
                                samples_s=f"{result.samples_per_s:.0f}")
            if validates and (done % cfg.val_every == 0 or done == 50 or done == cfg.steps):
                self.validate(done)
                result.validation = list(self.best.history)
            if cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
                save_checkpoint(self.out, recipe, self.optimizer, self.scaler, done, cfg, self.best)
        bar.close()
        recipe.train(False)

    def validate(self, step: int) -> None:
        """Score the recipe on its validation split; remember its state when the R@1 beats the best so far
        (strictly, as the official scripts do)."""
        recipe, best = self.recipe, self.best
        recipe.train(False)
        metric = float(recipe.validate())
        recipe.train(True)
        best.history.append({"step": step, "R@1": metric})
        if metric > best.metric:
            best.metric, best.step = metric, step
            best.state = {k: v.detach().cpu().clone() for k, v in recipe.state_dict().items()}

    def keep_best(self) -> None:
        """With ``keep="best"``, load the best validation weights for the export (official ``*_best.pt``)."""
        best, result = self.best, self.result
        if self.cfg.keep != "best" or best.state is None or best.step is None:
            return
        self.recipe.load_state_dict(best.state)
        result.kept, result.best_step, result.best_metric = "best", best.step, best.metric
        msg = (f"kept the weights of step {best.step} (best validation R@1 {best.metric:.2f}), "
               f"not the last step {result.step}")
        logger.info("%s: %s", self.cfg.recipe, msg)
        result.notes.append(msg)


def _run_notes(recipe: Recipe[Any], cfg: TrainConfig) -> list[str]:
    """What a run should say before it starts: a warm-up longer than the run, a best checkpoint that cannot be kept."""
    notes = []
    warmup = effective_warmup(cfg)
    if warmup > cfg.steps > 0:
        notes.append(f"the warm-up ({warmup} steps) is longer than the run ({cfg.steps} steps): the learning rate "
                     f"rises linearly to {cfg.lr * cfg.steps / warmup:.3g} ({100 * cfg.steps / warmup:.2g}% of lr="
                     f"{cfg.lr:g}) and never decays; set warmup=N or warmup_cap=0.1 (--warmup N, --warmup-cap 0.1) "
                     "for a shorter warm-up")
    if cfg.keep == "best" and recipe.can_validate:
        if not recipe.has_validation:
            notes.append("no validation split (file data, or --val none): the last step's weights are kept")
        elif cfg.val_every == 0:
            notes.append("val_every=0: no validation, the last step's weights are kept")
    return notes
