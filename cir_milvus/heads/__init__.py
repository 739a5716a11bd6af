"""Projection heads φ (Pic2Word, SEARLE, LinCIR): raw image embedding → pseudo word token.

Importing this package does not import torch; the nn.Module classes are built on first access.
"""

from __future__ import annotations

from typing import Any

from cir_milvus.heads.phi import (
    HEAD_DEFAULTS,
    Head,
    HeadDefaults,
    list_heads,
    load_head,
    locate_head,
    state_dict_sha256,
)

__all__ = [
    "HEAD_DEFAULTS",
    "Head",
    "HeadDefaults",
    "Pic2WordMapper",
    "SearlePhi",
    "list_heads",
    "load_head",
    "locate_head",
    "state_dict_sha256",
]


def __getattr__(name: str) -> Any:
    # PEP 562: Pic2WordMapper / SearlePhi need torch, so they are resolved lazily.
    if name in ("Pic2WordMapper", "SearlePhi"):
        from cir_milvus.heads import phi

        return getattr(phi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
