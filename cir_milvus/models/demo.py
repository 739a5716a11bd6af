"""The tiny CLIP-architecture demo model that ships with the package (trained on the synthetic world).

The architecture is an open_clip config (``model_configs/cir-demo-tiny.json``); the weights were produced by
``python -m cir_milvus.train.demo_clip`` and live in ``cir_milvus/data/``.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL = "cir-demo-tiny"
"""open_clip model name of the demo architecture (registered with ``open_clip.add_model_config``)."""

DEMO_WEIGHTS = "cir-demo"
"""The ``pretrained`` tag that selects the shipped demo weights."""

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def demo_weights_path() -> Path:
    """Path of the shipped demo weights (safetensors)."""
    return DATA_DIR / "cir-demo-tiny.safetensors"
