"""cir_milvus_export: the torch → ONNX export step (installed from the top-level ``export/`` folder)."""

from __future__ import annotations
