"""cir_milvus_export: the torch → ONNX export step (installed from the top-level ``export/`` folder).

Example:
    >>> from cir_milvus.encoders.torch import TorchEncoder  # doctest: +SKIP
    >>> from cir_milvus_export import check_parity, export_bundle  # doctest: +SKIP
    >>> path = export_bundle(TorchEncoder("cir-demo-tiny", "cir-demo"), "bundle/")  # doctest: +SKIP
    >>> check_parity(path)["min_cosine"] > 0.9999  # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_clip_tokenizer", "check_parity", "export_bundle"]


def __getattr__(name: str) -> Any:
    # PEP 562: keep `import cir_milvus_export` light (the export itself needs torch and onnx).
    if name == "export_bundle":
        from cir_milvus_export.onnx_export import export_bundle

        return export_bundle
    if name == "check_parity":
        from cir_milvus_export.parity import check_parity

        return check_parity
    if name == "build_clip_tokenizer":
        from cir_milvus_export.tokenizer import build_clip_tokenizer

        return build_clip_tokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
