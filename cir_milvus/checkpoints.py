"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)`` for ``.pt``/``.pth``/``.bin``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cir_milvus._optional import require
from cir_milvus.errors import CheckpointError

__all__ = ["read_checkpoint", "strip_prefix"]


def read_checkpoint(path: str | Path, purpose: str = "reading checkpoints") -> Any:
    """The object stored in a checkpoint file (a state dict, or a dict wrapping one), tensors on the CPU.

    Raises:
        CheckpointError: unreadable file, or a pickle that holds more than plain tensors and containers.
    """
    torch = require("torch", purpose=purpose)
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(
            f"{path} could not be read with torch.load(weights_only=True) ({type(e).__name__}: {e}). Only plain "
            "tensor checkpoints are loaded; if you trust the file, re-save its state dict "
            "(torch.save(sd, 'weights.pt') or safetensors.torch.save_file) and pass that"
        ) from e


def strip_prefix(sd: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a key prefix (``module.`` from DistributedDataParallel) where present."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
