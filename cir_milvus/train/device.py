"""Where a recipe computes: device and mixed precision, torch threads and seed, the frozen backbone.

CUDA with autocast (bf16 where supported, else fp16 with a ``GradScaler``); CPU in fp32 (:func:`select_precision`).
Trainable weights always stay fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from cir_milvus.errors import ConfigError
from cir_milvus.train.config import TrainConfig

__all__ = ["Precision", "device_label", "load_encoder", "select_precision", "setup"]


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
        raise ConfigError(f"device={device!r} was requested but torch sees no CUDA GPU; use device='cpu' "
                          "(--device cpu on the command line)")
    if device == "cpu":
        if precision not in ("auto", "fp32"):
            raise ConfigError(f"precision={precision!r} needs a CUDA GPU; use precision='fp32' (or "
                              "'auto'; --precision on the command line) on CPU")
        return Precision("cpu", None)
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Precision(device, None if precision == "fp32" else precision)


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
