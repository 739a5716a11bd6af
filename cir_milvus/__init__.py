"""cir_milvus: zero-shot composed image retrieval (reference image + modification text) on Milvus.

Example:
    >>> from cir_milvus import CIRCollection
    >>> col = CIRCollection.create("./cir.db", "demo", model="cir-demo-tiny", pretrained="cir-demo")  # doctest: +SKIP
    >>> col.add(["a.png", "b.png"])  # doctest: +SKIP
    >>> col.search("a.png", "make it blue", k=5)  # doctest: +SKIP

The Milvus side without an encoder is :class:`VectorStore` (``col.store``): typed fields, ``get``/``query``,
``search_vectors`` with ``group_by``, ``delete`` (true counts), ``update_metadata`` and ``info()``; it also attaches
collections that cir_milvus did not create.
"""

from __future__ import annotations

from cir_milvus import _runtime  # noqa: F401  (first: sets OpenMP's wait policy before anything loads torch)
from cir_milvus.collection import (
    CIRCollection,
    ComposerSpec,
    ConnectOptions,
    Database,
    EncoderSpec,
    FieldSpec,
    IndexSpec,
    IngestReport,
    connect,
)
from cir_milvus.composers import Composer, get_composer, list_composers, register_composer, slerp
from cir_milvus.encoders import Encoder, FakeEncoder, create_encoder, list_encoders, register_encoder
from cir_milvus.errors import (
    BackendUnavailableError,
    CheckpointError,
    CIRError,
    CollectionLockedError,
    CollectionNotFoundError,
    CollectionNotLoadedError,
    ConfigError,
    DatasetError,
    ExportError,
    FilterError,
    ImageDecodeError,
    ModelNotFoundError,
    PermanentStorageError,
    RecipeMismatchError,
    StorageError,
    StorageUnavailableError,
    TransientStorageError,
)
from cir_milvus.storage import Hit, Hits, Recipe, RetryPolicy, Skipped, VectorStore
from cir_milvus.types import SkipKind

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "CIRCollection",
    "CIRError",
    "CheckpointError",
    "CollectionLockedError",
    "CollectionNotFoundError",
    "CollectionNotLoadedError",
    "Composer",
    "ComposerSpec",
    "ConfigError",
    "ConnectOptions",
    "Database",
    "DatasetError",
    "Encoder",
    "EncoderSpec",
    "ExportError",
    "FakeEncoder",
    "FieldSpec",
    "FilterError",
    "Hit",
    "Hits",
    "ImageDecodeError",
    "IndexSpec",
    "IngestReport",
    "ModelNotFoundError",
    "PermanentStorageError",
    "Recipe",
    "RecipeMismatchError",
    "RetryPolicy",
    "SkipKind",
    "Skipped",
    "StorageError",
    "StorageUnavailableError",
    "TransientStorageError",
    "VectorStore",
    "__version__",
    "connect",
    "create_encoder",
    "get_composer",
    "list_composers",
    "list_encoders",
    "register_composer",
    "register_encoder",
    "slerp",
]
