"""Resolving backbones: open_clip names and tags, local checkpoint files, ``hf-hub:`` ids and the demo model."""

from __future__ import annotations

from cir_milvus.models.demo import (
    DEMO_MODEL,
    DEMO_WEIGHTS,
    demo_bundle_path,
    demo_head_path,
    demo_heads,
    demo_weights_path,
)
from cir_milvus.models.spec import ModelSpec, list_models, register_model_config, resolve_model

__all__ = [
    "DEMO_MODEL",
    "DEMO_WEIGHTS",
    "ModelSpec",
    "demo_bundle_path",
    "demo_head_path",
    "demo_heads",
    "demo_weights_path",
    "list_models",
    "register_model_config",
    "resolve_model",
]
