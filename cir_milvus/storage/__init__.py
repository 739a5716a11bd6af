"""Milvus storage: the encoder-free :class:`VectorStore` (schema, ids, the one write path, reads, deletes, search)
under the :class:`CIRCollection` facade (encoder + composer + store)."""

from __future__ import annotations

from cir_milvus.storage.collection import CIRCollection
from cir_milvus.storage.filters import render_filter
from cir_milvus.storage.ingest import AddResult
from cir_milvus.storage.recipe import Recipe
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.store import FieldMap, Hit, Hits, Skipped, VectorStore, WriteResult

__all__ = ["AddResult", "CIRCollection", "FieldMap", "Hit", "Hits", "Recipe", "RetryPolicy", "Skipped",
           "VectorStore", "WriteResult", "render_filter"]
