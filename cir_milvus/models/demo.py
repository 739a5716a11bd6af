"""The tiny CLIP-architecture demo model that ships with the package (trained on the synthetic world).

The architecture is an open_clip config (``model_configs/cir-demo-tiny.json``); the weights were produced by
``python -m cir_milvus.train.demo_clip`` and live in ``cir_milvus/data/``, with its Pic2Word and LinCIR heads and
an ONNX bundle of the model and both heads (:func:`demo_bundle_path`: serves the demo with onnxruntime, no torch).
The bundle's graphs share one copy of the weights, stored as float16 where that is exact (the demo weights are
float16), so it adds about the model's size. It was written by (the same command rewrites it after a retraining)::

    python -c "from cir_milvus_export.onnx_export import export_demo_bundle; export_demo_bundle()"
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


def demo_bundle_path() -> Path:
    """The shipped ONNX bundle of the demo model and its heads (``model="bundle:" + str(demo_bundle_path())``)."""
    return DATA_DIR / f"{DEMO_MODEL}.bundle"


def demo_heads() -> dict[str, Path]:
    """The heads shipped with the demo model, by kind (every kind of :func:`cir_milvus.heads.list_heads` with a
    file in the package)."""
    from cir_milvus.heads.kinds import list_heads

    return {kind: demo_head_path(kind) for kind in list_heads() if demo_head_path(kind).is_file()}
