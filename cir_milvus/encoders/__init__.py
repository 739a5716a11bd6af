"""Encoders: one interface (:class:`Encoder`), several backends (torch, onnxruntime, fake), optional capabilities.

Importing this package registers the built-in backends (their modules import :mod:`cir_milvus.encoders.base`,
which holds the registry; the registry never imports them). None of them imports torch or onnxruntime on import.
"""

from __future__ import annotations

from cir_milvus.encoders import ort, torch  # noqa: F401 - built-in backends register themselves on import
from cir_milvus.encoders.base import (
    ENCODERS,
    Encoder,
    EncoderBackend,
    RebuildOptions,
    create_encoder,
    l2_normalize,
    list_encoders,
    register_encoder,
)
from cir_milvus.encoders.capabilities import (
    HasBundleHeads,
    HasExecutionProviders,
    HasPrecision,
    HasPreprocessConfig,
    SupportsDecodeModes,
    SupportsDeviceOutput,
    SupportsPixelInput,
    SupportsPixels,
    SupportsPseudoTokens,
    SupportsThreads,
    SupportsUint8,
)
from cir_milvus.encoders.fake import FakeEncoder
from cir_milvus.encoders.rebuild import encoder_from_recipe

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderBackend",
    "FakeEncoder",
    "HasBundleHeads",
    "HasExecutionProviders",
    "HasPrecision",
    "HasPreprocessConfig",
    "RebuildOptions",
    "SupportsDecodeModes",
    "SupportsDeviceOutput",
    "SupportsPixelInput",
    "SupportsPixels",
    "SupportsPseudoTokens",
    "SupportsThreads",
    "SupportsUint8",
    "create_encoder",
    "encoder_from_recipe",
    "l2_normalize",
    "list_encoders",
    "register_encoder",
]
