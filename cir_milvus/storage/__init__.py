"""Milvus storage: the encoder-free :class:`VectorStore` (schema, ids, the one write path, reads, deletes, search).

The layer knows Milvus only; :class:`~cir_milvus.collection.CIRCollection` (encoder + composer + store) sits above
it in :mod:`cir_milvus.collection`.
"""

from __future__ import annotations

from cir_milvus.storage.filters import render_filter
from cir_milvus.storage.recipe import Recipe
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.store import FieldMap, Hit, Hits, Skipped, VectorStore, WriteResult

__all__ = ["FieldMap", "Hit", "Hits", "Recipe", "RetryPolicy", "Skipped", "VectorStore", "WriteResult",
           "render_filter"]
