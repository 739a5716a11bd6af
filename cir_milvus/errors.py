"""The exception tree of cir_milvus. Every error the library raises on purpose derives from :class:`CIRError`.

::

    CIRError
    ├── ConfigError (ValueError)            bad argument, template, alpha, composer name, dimension
    │   ├── RecipeMismatchError             collection built with another model / recipe
    │   └── FilterError                     a filter template that cannot be rendered, or that Milvus cannot parse
    ├── ModelNotFoundError (LookupError)    backbone, checkpoint or head that cannot be found or fetched
    ├── CheckpointError (ValueError)        a checkpoint file whose keys or shapes do not fit
    ├── ImageDecodeError (ValueError)       an image that cannot be read (corrupt, empty, not an image, too big)
    ├── BackendUnavailableError (ImportError) an optional dependency that is not installed
    ├── DatasetError (FileNotFoundError)    an evaluation data set file that is missing or malformed
    ├── ExportError (RuntimeError)          an ONNX export whose graphs do not match torch (parity below threshold)
    └── StorageError (RuntimeError)         a Milvus call that failed (wraps MilvusException / grpc.RpcError)
        ├── TransientStorageError           may succeed later: unavailable, timed out, rate-limited (retried)
        │   ├── CollectionNotLoadedError    the collection is released / still loading (reloaded, then retried)
        │   └── StorageUnavailableError     still failing when the retry policy's deadline passed
        ├── PermanentStorageError           can never succeed as sent: refused data, unsupported, over a limit
        ├── CollectionNotFoundError (LookupError)
        └── CollectionLockedError           a Milvus Lite file already open in another process

Milvus failures are classified once, where they are wrapped (:mod:`cir_milvus.storage.classify`), by exception
type and error code; the retry policy then decides by class alone. A plain :class:`StorageError` (not one of the
subclasses) is never retried.

Messages say what was expected, what was found, and what to do.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "CIRError",
    "CheckpointError",
    "CollectionLockedError",
    "CollectionNotFoundError",
    "CollectionNotLoadedError",
    "ConfigError",
    "DatasetError",
    "ExportError",
    "FilterError",
    "ImageDecodeError",
    "ModelNotFoundError",
    "PermanentStorageError",
    "RecipeMismatchError",
    "StorageError",
    "StorageUnavailableError",
    "TransientStorageError",
]


class CIRError(Exception):
    """Root of every error raised by cir_milvus."""


class ConfigError(CIRError, ValueError):
    """An argument or configuration value is invalid."""


class RecipeMismatchError(ConfigError):
    """The collection was built with a different recipe (model, weights, preprocessing or dimension)."""


class FilterError(ConfigError):
    """A filter template cannot be rendered (a missing value, a placeholder inside quotes) or Milvus cannot parse
    the rendered filter (the message carries the server's words). Never retried."""


class ModelNotFoundError(CIRError, LookupError):
    """A backbone, checkpoint or projection head could not be found or fetched."""


class CheckpointError(CIRError, ValueError):
    """A checkpoint's keys or shapes do not match the expected layout."""


class ImageDecodeError(CIRError, ValueError):
    """An image could not be decoded (or read, or identified); ``kind`` says why, as a
    :class:`~cir_milvus.types.SkipKind` (``"other"`` when the raiser did not say)."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[type[ImageDecodeError], tuple[str, str]]:
        return type(self), (str(self), self.kind)


class BackendUnavailableError(CIRError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class DatasetError(CIRError, FileNotFoundError):
    """An evaluation data set file is missing or malformed."""


class ExportError(CIRError, RuntimeError):
    """An exported ONNX bundle does not reproduce the torch model (the parity report says where)."""


class StorageError(CIRError, RuntimeError):
    """A Milvus operation failed.

    Attributes:
        code: the server's error code (an int, or a gRPC status name such as ``"UNAVAILABLE"``) when one was given.
    """

    def __init__(self, message: str = "", *, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientStorageError(StorageError):
    """A Milvus call that may succeed if repeated (unavailable, timed out, rate-limited): the retry policy retries it."""


class CollectionNotLoadedError(TransientStorageError):
    """The collection is released or still loading (after a server restart): the store loads it and retries; a
    lookup or search never answers "nothing stored" from such a collection."""


class StorageUnavailableError(TransientStorageError):
    """Milvus stayed unreachable (or the collection unloaded) until the retry policy's deadline: try again later.
    A service answers 503 with ``Retry-After``."""


class PermanentStorageError(StorageError):
    """A Milvus call that can never succeed as sent (refused data, an unsupported request, a limit): never retried."""


class CollectionNotFoundError(StorageError, LookupError):
    """The named collection does not exist."""


class CollectionLockedError(StorageError):
    """A Milvus Lite database file is held by another process."""
