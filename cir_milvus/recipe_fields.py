"""How an encoder recipe's fields are read, for recipes of every age: a leaf shared by the models, which write
recipes, and the store, which compares the recipe a collection was built with against the encoder serving it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["recorded_activation"]


def recorded_activation(encoder: Mapping[str, Any]) -> str:
    """The recorded MLP activation; recipes written before it was recorded had open_clip's config default."""
    if encoder.get("activation"):
        return str(encoder["activation"])
    return "quick_gelu" if "quickgelu" in str(encoder.get("model", "")).lower() else "gelu"
