"""The one recipe → encoder rebuild, used by ``CIRCollection.open`` and by the Ray ingestion actors.

A stored encoder recipe names its backend and its weights by content (``weights_sha256``, ``bundle_sha256``) plus
a tag, ``hf-hub:`` id or a path *hint* (see :mod:`cir_milvus.artifacts`). The backend registered under the
recipe's ``backend`` rebuilds itself (:meth:`EncoderBackend.from_recipe
<cir_milvus.encoders.base.EncoderBackend.from_recipe>`): it finds each file the recipe depends on through the
collection's folder and the search path, checks its checksum, and builds the encoder with the recorded
preprocessing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cir_milvus.artifacts import SearchPath
from cir_milvus.encoders.base import ENCODERS, Encoder, RebuildOptions

__all__ = ["encoder_from_recipe"]


def encoder_from_recipe(
    enc_recipe: Mapping[str, Any],
    *,
    device: str | None = None,
    precision: str | None = None,
    text_weights: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    search_path: SearchPath = None,
) -> Encoder:
    """Rebuild the encoder a collection's recipe describes.

    Args:
        enc_recipe: the recipe's ``encoder`` dict (``Recipe.encoder``).
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` for the torch backend (bundles fix it at export).
        text_weights: a tuned text tower to swap in (torch backend); default: the one the recipe records, if any.
        base_dir: the collection's folder (where a Milvus Lite ``.db`` lives): relative hints start there.
        search_path: extra folders to look in, before ``$CIR_MILVUS_PATH`` (see :mod:`cir_milvus.artifacts`).

    Returns:
        The encoder; callers still compare its ``recipe`` with the stored one
        (:func:`cir_milvus.storage.recipe.check_compatible`).

    Raises:
        ConfigError: an unknown backend, a FakeEncoder recipe (pass the encoder yourself), or ``text_weights``
            for an ONNX bundle.
        ModelNotFoundError: a file the recipe names is not found with the recorded checksum (the message lists
            where it looked and both checksums when a same-named file differs).

    Example:
        >>> enc = encoder_from_recipe(col.recipe.encoder, base_dir="/data/lite", device="cpu")  # doctest: +SKIP
    """
    backend = ENCODERS.get(str(enc_recipe.get("backend") or "torch"))
    options = RebuildOptions(device=device, precision=precision, text_weights=text_weights, base_dir=base_dir,
                             search_path=search_path)
    return backend.from_recipe(dict(enc_recipe), options)
