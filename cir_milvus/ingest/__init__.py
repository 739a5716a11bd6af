"""Batch ingestion at scale: sources (folders, lists, WebDataset shards), a parallel pipeline and a Ray variant.

Example:
    >>> from cir_milvus.ingest import ingest  # doctest: +SKIP
    >>> report = ingest(col, "data/{00000..00009}.tar", workers=4, skip_report="skipped.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

from cir_milvus.collection.report import IngestReport
from cir_milvus.ingest.options import IngestOptions, RayOptions
from cir_milvus.ingest.pipeline import MAX_ASPECT, ingest, prepare_batch
from cir_milvus.ingest.sources import (
    FolderSource,
    IterableSource,
    ListSource,
    Record,
    ShardSource,
    expand_shards,
    open_source,
)

__all__ = [
    "MAX_ASPECT",
    "FolderSource",
    "IngestOptions",
    "IngestReport",
    "IterableSource",
    "ListSource",
    "Record",
    "RayOptions",
    "ShardSource",
    "expand_shards",
    "ingest",
    "open_source",
    "prepare_batch",
]
