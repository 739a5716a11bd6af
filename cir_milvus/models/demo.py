"""The tiny CLIP-architecture demo model that ships with the package (trained on the synthetic world).

The architecture is an open_clip config (``model_configs/cir-demo-tiny.json``); the weights were produced by
``python -m cir_milvus.train.demo_clip`` and live in ``cir_milvus/data/``.
"""

from __future__ import annotations

from pathlib import Path

from cir_milvus.artifacts import PACKAGE_DATA_DIR

DEMO_MODEL = "cir-demo-tiny"
"""open_clip model name of the demo architecture (registered with ``open_clip.add_model_config``)."""

DEMO_WEIGHTS = "cir-demo"
"""The ``pretrained`` tag that selects the shipped demo weights."""

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
DATA_DIR = PACKAGE_DATA_DIR
"""Where the demo weights and heads live (the package's data folder)."""


def demo_weights_path() -> Path:
    """Path of the shipped demo weights (safetensors)."""
    return DATA_DIR / "cir-demo-tiny.safetensors"


def demo_head_path(kind: str) -> Path:
    """Path of the demo model's shipped ``kind`` head (``cir-demo-tiny.{kind}.safetensors``; it may not exist)."""
    return DATA_DIR / f"{DEMO_MODEL}.{kind}.safetensors"


def demo_heads() -> dict[str, Path]:
    """The heads shipped with the demo model, by kind (every kind of :func:`cir_milvus.heads.list_heads` with a
    file in the package)."""
    from cir_milvus.heads.kinds import list_heads

    return {kind: demo_head_path(kind) for kind in list_heads() if demo_head_path(kind).is_file()}
