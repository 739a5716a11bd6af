"""Composers: turning (reference image, text) into one query vector. Registry extensible via entry points.

Importing this package registers the built-in composers (their modules import :mod:`cir_milvus.composers.base`,
which holds the registry; the registry never imports them).
"""

from __future__ import annotations

from cir_milvus.composers import baselines, pseudo  # noqa: F401 - built-ins register themselves on import
from cir_milvus.composers.base import COMPOSERS, Composer, get_composer, list_composers, register_composer
from cir_milvus.composers.pseudo import composer_head
from cir_milvus.composers.slerp import slerp

__all__ = ["COMPOSERS", "Composer", "composer_head", "get_composer", "list_composers", "register_composer", "slerp"]
