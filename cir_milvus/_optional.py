"""Lazy optional imports: one table of extras, one helper, one error.

:data:`EXTRAS` is the one place that says which ``pip install 'cir_milvus[EXTRA]'`` provides an optional module;
:func:`require` and the command line's one-line errors (:func:`missing_extra`) both read it.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from cir_milvus.errors import BackendUnavailableError

__all__ = ["EXTRAS", "ONNXRUNTIME_AVAILABLE", "OPEN_CLIP_AVAILABLE", "TORCH_AVAILABLE", "available", "install_hint",
           "missing_extra", "require"]

EXTRAS: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torch",
    "open_clip": "torch",
    "huggingface_hub": "torch",
    "onnxruntime": "onnx",
    "tokenizers": "onnx",
    "onnx": "export",
    "onnxscript": "export",
    "fastapi": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "multipart": "serve",
    "matplotlib": "plot",
    "ray": "ray",
    "peft": "train",
    "spacy": "train-spacy",
    "en_core_web_sm": "train-spacy",
    "pyarrow": "ingest",
    "pandas": "ingest",
    "milvus": "server",
    "pymilvus": "",
    "milvus_lite": "",
}
"""Top-level module → the cir_milvus extra that installs it (``""``: a core dependency; reinstall cir_milvus)."""


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install_hint(module: str) -> str:
    """``pip install 'cir_milvus[EXTRA]'`` for a module of :data:`EXTRAS` (else ``pip install MODULE``)."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"pip install {top}"
    return f"pip install 'cir_milvus[{extra}]'" if extra else "pip install --force-reinstall cir_milvus"


def missing_extra(error: ImportError) -> str | None:
    """One line naming the extra for an import that failed because an optional module of :data:`EXTRAS` is
    missing; ``None`` for any other import error (a bug, not a missing install)."""
    if isinstance(error, BackendUnavailableError):
        return str(error)
    name = (error.name or "").split(".")[0]
    if not isinstance(error, ModuleNotFoundError) or name not in EXTRAS:
        return None
    return f"{name} is not installed; {install_hint(name)}"


def require(module: str, extra: str | None = None, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailableError` naming the extra that installs it.

    The extra named is the one of the module that is actually missing: ``require("open_clip")`` failing because
    ``torchvision`` is absent names torchvision's extra.

    Args:
        module: importable module name, e.g. ``"onnxruntime"``.
        extra: for modules outside :data:`EXTRAS` only: the extra that provides it.
        purpose: what needs it, for the message.

    Raises:
        BackendUnavailableError: the module is not installed (or failed to import).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = (e.name or module).split(".")[0] if isinstance(e, ModuleNotFoundError) else module.split(".")[0]
        if missing not in EXTRAS:
            missing = module.split(".")[0]
        if missing in EXTRAS or extra is None:
            hint = install_hint(missing)
        else:
            hint = f"pip install 'cir_milvus[{extra}]'" if extra else f"pip install {module}"
        need = f" for {purpose}" if purpose else ""
        raise BackendUnavailableError(f"{missing} is required{need} but could not be imported ({e}); {hint}") from e


TORCH_AVAILABLE = available("torch")
OPEN_CLIP_AVAILABLE = available("open_clip")
ONNXRUNTIME_AVAILABLE = available("onnxruntime")
