"""Shared type aliases."""

from __future__ import annotations

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

__all__ = ["Embeddings", "ImageInput"]
