"""Projection heads φ (Pic2Word, SEARLE, LinCIR): raw image embedding → pseudo word token.

Importing this package does not import torch; the nn.Module classes are built on first access. Head kinds and their
defaults are one table, :data:`HEADS` (``list_heads()``, ``head_defaults(kind)``).
"""

from __future__ import annotations

from typing import Any

from cir_milvus.heads.kinds import HEAD_DEFAULTS, HEADS, HeadDefaults, head_defaults, list_heads
from cir_milvus.heads.phi import Head, head_file_sha256, load_head, locate_head, state_dict_sha256

__all__ = [
    "HEADS",
    "HEAD_DEFAULTS",
    "Head",
    "HeadDefaults",
    "Pic2WordMapper",
    "SearlePhi",
    "head_defaults",
    "head_file_sha256",
    "list_heads",
    "load_head",
    "locate_head",
    "state_dict_sha256",
]


def __getattr__(name: str) -> Any:
    # PEP 562: Pic2WordMapper / SearlePhi need torch, so they are resolved lazily.
    if name in ("Pic2WordMapper", "SearlePhi"):
        from cir_milvus.heads.modules import module_class

        return module_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
