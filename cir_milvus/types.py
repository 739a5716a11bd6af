"""Shared type aliases."""

from __future__ import annotations

import enum
import os
from typing import TYPE_CHECKING, Union

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from PIL import Image

Embeddings = NDArray[np.float32]
"""float32 embeddings of shape ``[N, D]``."""

ImageInput = Union[str, "os.PathLike[str]", bytes, "Image.Image"]
"""An image given as a file path, encoded bytes or a PIL image."""

__all__ = ["Embeddings", "ImageInput", "SkipKind"]


class SkipKind(str, enum.Enum):
    """Why an input was not stored, as a category for summaries and skip reports (the ``kind`` of each JSON Lines
    entry). Set where the reason is found (the decoder, the source, the id and metadata policy), never derived from
    a message's text."""

    MISSING = "missing"
    BROKEN_SYMLINK = "broken_symlink"
    SYMLINK_LOOP = "symlink_loop"
    NOT_A_FILE = "not_a_file"
    UNSUPPORTED_FORMAT = "unsupported_format"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT = "corrupt"
    NO_IMAGE = "no_image"
    CORRUPT_SHARD = "corrupt_shard"
    DOWNLOAD_FAILED = "download_failed"
    INVALID_ID = "invalid_id"
    BAD_METADATA = "bad_metadata"
    REFUSED = "refused"
    OTHER = "other"
