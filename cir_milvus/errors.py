"""The exception tree of cir_milvus. Every error the library raises on purpose derives from :class:`CIRError`.

::

    CIRError
    ├── ConfigError (ValueError)            bad argument, template, alpha, composer name, dimension
    │   └── RecipeMismatchError             collection built with another model / recipe
    ├── ModelNotFoundError (LookupError)    backbone, checkpoint or head that cannot be found or fetched
    ├── CheckpointError (ValueError)        a checkpoint file whose keys or shapes do not fit
    ├── ImageDecodeError (ValueError)       an image that cannot be read (corrupt, empty, not an image, too big)
    ├── BackendUnavailableError (ImportError) an optional dependency that is not installed
    ├── DatasetError (FileNotFoundError)    an evaluation data set file that is missing or malformed
    ├── ExportError (RuntimeError)          an ONNX export whose graphs do not match torch (parity below threshold)
    └── StorageError (RuntimeError)         a Milvus call that failed (wraps MilvusException / grpc.RpcError)
        ├── CollectionNotFoundError (LookupError)
        └── CollectionLockedError           a Milvus Lite file already open in another process

Messages say what was expected, what was found, and what to do.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "CIRError",
    "CheckpointError",
    "CollectionLockedError",
    "CollectionNotFoundError",
    "ConfigError",
    "DatasetError",
    "ExportError",
    "ImageDecodeError",
    "ModelNotFoundError",
    "RecipeMismatchError",
    "StorageError",
]


class CIRError(Exception):
    """Root of every error raised by cir_milvus."""


class ConfigError(CIRError, ValueError):
    """An argument or configuration value is invalid."""


class RecipeMismatchError(ConfigError):
    """The collection was built with a different recipe (model, weights, preprocessing or dimension)."""


class ModelNotFoundError(CIRError, LookupError):
    """A backbone, checkpoint or projection head could not be found or fetched."""


class CheckpointError(CIRError, ValueError):
    """A checkpoint's keys or shapes do not match the expected layout."""


class ImageDecodeError(CIRError, ValueError):
    """An image could not be decoded."""


class BackendUnavailableError(CIRError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class DatasetError(CIRError, FileNotFoundError):
    """An evaluation data set file is missing or malformed."""


class ExportError(CIRError, RuntimeError):
    """An exported ONNX bundle does not reproduce the torch model (the parity report says where)."""


class StorageError(CIRError, RuntimeError):
    """A Milvus operation failed."""


class CollectionNotFoundError(StorageError, LookupError):
    """The named collection does not exist."""


class CollectionLockedError(StorageError):
    """A Milvus Lite database file is held by another process."""
