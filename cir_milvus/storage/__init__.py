"""Milvus storage: connection, schema, recipe, ingestion and search behind :class:`CIRCollection`."""

from __future__ import annotations

from cir_milvus.storage.collection import CIRCollection, Hit
from cir_milvus.storage.filters import render_filter
from cir_milvus.storage.ingest import AddResult, Skipped
from cir_milvus.storage.recipe import Recipe

__all__ = ["AddResult", "CIRCollection", "Hit", "Recipe", "Skipped", "render_filter"]
