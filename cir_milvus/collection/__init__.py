"""The collection layer: :class:`CIRCollection` (encoder + composer + :class:`~cir_milvus.storage.VectorStore`),
:func:`connect` / :class:`Database`, the typed option groups, and the record stage that :meth:`CIRCollection.add`,
:func:`cir_milvus.ingest.ingest` and :func:`cir_milvus.ingest.ray_pipeline.ingest_ray` share.

It sits above the encoders, composers and heads and above :mod:`cir_milvus.storage` (Milvus only), and below
:mod:`cir_milvus.ingest` and the applications.
"""

from __future__ import annotations

from cir_milvus.collection.database import Database, connect
from cir_milvus.collection.facade import CIRCollection
from cir_milvus.collection.report import IngestReport, SkippedInput
from cir_milvus.collection.specs import ComposerSpec, ConnectOptions, EncoderSpec, FieldSpec, IndexSpec

__all__ = ["CIRCollection", "ComposerSpec", "ConnectOptions", "Database", "EncoderSpec", "FieldSpec", "IndexSpec", "IngestReport",
           "SkippedInput", "connect"]
