"""The shared tail of the recipes that train a projection head (LinCIR, Pic2Word): export it as a
:class:`~cir_milvus.heads.Head` folder, and ship it as one ``.safetensors`` file plus a JSON sidecar of its training."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cir_milvus.errors import ConfigError
from cir_milvus.train.base import Recipe, TrainResult
from cir_milvus.train.config import TrainConfig

__all__ = ["HeadRecipe", "ship_head"]


class HeadRecipe(Recipe[Any]):
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
