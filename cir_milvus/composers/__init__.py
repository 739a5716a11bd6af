"""Composers: turning (reference image, text) into one query vector. Registry extensible via entry points."""

from __future__ import annotations

from cir_milvus.composers.base import Composer, get_composer, list_composers, register_composer
from cir_milvus.composers.slerp import slerp

__all__ = ["Composer", "get_composer", "list_composers", "register_composer", "slerp"]
