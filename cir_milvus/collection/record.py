"""The add path's record stage: ids, "read once", decode (skipping bad files with reasons) and the report.

Writes go through :meth:`cir_milvus.storage.store.VectorStore.upsert` (the one write path).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from cir_milvus.errors import ImageDecodeError
from cir_milvus.images import path_text, read_image_file, regular_file_problem, strip_name
from cir_milvus.storage.store import Skipped
from cir_milvus.types import ImageInput

__all__ = ["AddResult", "Skipped", "read_input", "regular_file_reason", "source_name"]

log = logging.getLogger(__name__)

class AddResult(list[Any]):
    """One entry per input of :meth:`CIRCollection.add`, in input order: its id, or ``None`` when it was skipped.

    An image given three times has the same id three times: it is stored once (``stored``) and counted twice in
    ``duplicates``. ``len(inputs) == stored + len(already_stored) + duplicates + len(skipped)``.

    Attributes:
        stored: rows written by this call.
        already_stored: ids that were present before and were not re-encoded.
        duplicates: inputs whose id repeats an earlier input of the call (not stored again).
        skipped: inputs that were not stored, with reasons (unreadable, bad id, bad metadata, refused).
        encoded: number of images encoded in this call.
        retries: storage calls retried after transient failures.
        seconds: wall time.
    """

    def __init__(self, ids: Sequence[Any] = ()) -> None:
        super().__init__(ids)
        self.stored = 0
        self.skipped: list[Skipped] = []
        self.already_stored: list[Any] = []
        self.duplicates = 0
        self.encoded = 0
        self.retries = 0
        self.seconds = 0.0

    @property
    def ids(self) -> list[Any]:
        """The distinct ids of the inputs that are in the collection after the call, in input order."""
        return [i for i in dict.fromkeys(self) if i is not None]

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"stored {self.stored} ({self.encoded} encoded), already stored {len(self.already_stored)}, "
            f"duplicates in the input {self.duplicates}, skipped {len(self.skipped)}, "
            f"{self.images_per_second:.1f} images/s"
        )


def source_name(image: ImageInput) -> str:
    """The stored ``source`` of an input: its path (valid UTF-8), or "" for bytes and PIL images."""
    return path_text(image) if isinstance(image, (str, os.PathLike)) else ""  # lossless, see images.path_text


def regular_file_reason(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a readable regular file (``None`` when it is); never opens it (see
    :func:`cir_milvus.images.regular_file_problem`: the same reasons as the decoder's)."""
    return regular_file_problem(path)


def read_input(image: ImageInput) -> tuple[ImageInput, str | None]:
    """A path replaced by its bytes (read once, for both the content id and the decode), or why it cannot be read.

    Only regular files are read: a FIFO, a socket or a directory named ``x.jpg`` is refused instead of blocking.
    """
    if not isinstance(image, (str, os.PathLike)):
        return image, None
    try:
        return read_image_file(image), None  # opened non-blocking, fstat-checked: a FIFO never blocks
    except ImageDecodeError as e:
        return image, strip_name(str(e), path_text(image))

