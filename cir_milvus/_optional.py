"""Lazy optional imports: one helper, one error, one extra per heavy dependency."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from cir_milvus.errors import BackendUnavailableError

_EXTRAS = {
    "torch": "torch",
    "open_clip": "torch",
    "torchvision": "torch",
    "onnxruntime": "onnx",
    "onnx": "export",
    "tokenizers": "onnx",
    "pymilvus": "",
    "ray": "ray",
    "peft": "train",
    "matplotlib": "plot",
}


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str | None = None, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailableError` naming the extra that installs it.

    Args:
        module: importable module name, e.g. ``"onnxruntime"``.
        extra: the cir_milvus install extra that provides it (looked up when omitted).
        purpose: what needs it, for the message.

    Raises:
        BackendUnavailableError: the module is not installed (or failed to import).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = _EXTRAS.get(module.split(".")[0], "") if extra is None else extra
        hint = f"pip install 'cir_milvus[{extra}]'" if extra else f"pip install {module}"
        need = f" for {purpose}" if purpose else ""
        raise BackendUnavailableError(f"{module} is required{need} but could not be imported ({e}); {hint}") from e


TORCH_AVAILABLE = available("torch")
OPEN_CLIP_AVAILABLE = available("open_clip")
ONNXRUNTIME_AVAILABLE = available("onnxruntime")
