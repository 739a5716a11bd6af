"""Encoders: one interface (:class:`Encoder`), several backends (torch, onnxruntime, fake)."""

from __future__ import annotations

from cir_milvus.encoders.base import Encoder, create_encoder, l2_normalize, list_encoders, register_encoder
from cir_milvus.encoders.fake import FakeEncoder
from cir_milvus.encoders.rebuild import encoder_from_recipe

__all__ = [
    "Encoder",
    "FakeEncoder",
    "create_encoder",
    "encoder_from_recipe",
    "l2_normalize",
    "list_encoders",
    "register_encoder",
]
