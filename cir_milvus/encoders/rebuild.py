"""The one recipe → encoder rebuild, used by ``CIRCollection.open`` and by the Ray ingestion actors.

A stored encoder recipe names its weights by content (``weights_sha256``) plus a tag, ``hf-hub:`` id or a path
*hint* (see :mod:`cir_milvus.artifacts`). Rebuilding finds each file the recipe depends on (checkpoint, tuned
text tower, ONNX bundle, ``local-dir:`` folder) through the collection's folder and the search path, checks its
checksum, and builds the encoder with the recorded backend and preprocessing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cir_milvus.artifacts import SearchPath, locate, looks_like_path
from cir_milvus.encoders.base import Encoder, create_encoder
from cir_milvus.encoders.ort import MANIFEST, bundle_sha256
from cir_milvus.errors import ConfigError
from cir_milvus.models.spec import recorded_activation
from cir_milvus.preprocess import recorded_decode

__all__ = ["encoder_from_recipe", "local_dir_sha256"]


def _bundle_weights_sha256(folder: Path) -> str | None:
    """The checksum of the weights a bundle was exported from (its manifest's ``source.weights_sha256``)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        sha = manifest["source"].get("weights_sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return str(sha) if sha else None


def local_dir_sha256(folder: str | os.PathLike[str]) -> str | None:
    """sha256 of the weights file of a ``local-dir:`` model folder (``None`` when it has none)."""
    from cir_milvus.models.spec import file_sha256, local_dir_weights

    w = local_dir_weights(folder)
    return file_sha256(w) if w is not None else None


def _locate_bundle(r: Mapping[str, Any], base_dir: str | os.PathLike[str] | None, search_path: SearchPath) -> Path:
    loc = str(r.get("location") or r.get("model") or "")
    hint = loc[len("bundle:"):] if loc.startswith("bundle:") else loc
    if not hint:
        raise ConfigError("the recipe's ONNX encoder has no bundle location; open with model='bundle:PATH'")
    fix = "open with model='bundle:NEW_PATH' (CLI: --model bundle:NEW_PATH)"
    if r.get("bundle_sha256"):
        return locate(hint, what="ONNX bundle", sha256=str(r["bundle_sha256"]), checksum=bundle_sha256,
                      want_dir=True, base_dir=base_dir, search_path=search_path, fix=fix)
    # recipes written before bundles had a content id: the exported weights' checksum identifies the bundle
    sha = r.get("weights_sha256")
    return locate(hint, what="ONNX bundle", sha256=str(sha) if sha else None, checksum=_bundle_weights_sha256,
                  want_dir=True, base_dir=base_dir, search_path=search_path, fix=fix)


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
        ConfigError: a FakeEncoder recipe (pass the encoder yourself), or ``text_weights`` for an ONNX bundle.
        ModelNotFoundError: a file the recipe names is not found with the recorded checksum (the message lists
            where it looked and both checksums when a same-named file differs).

    Example:
        >>> enc = encoder_from_recipe(col.recipe.encoder, base_dir="/data/lite", device="cpu")  # doctest: +SKIP
    """
    r = dict(enc_recipe)
    backend = str(r.get("backend") or "torch")
    mode = (r.get("preprocess") or {}).get("mode", "clip")
    loading = (r.get("preprocess") or {}).get("loading")  # benchmark collections decode as the official code does
    load_kw: dict[str, Any] = {"image_loading": loading} if loading else {}
    # queries decode like the gallery did (passed explicitly: an encoder's own default may differ)
    load_kw["decode"] = recorded_decode(r.get("preprocess"))
    if backend == "fake":
        raise ConfigError("this collection was built with a FakeEncoder; pass encoder=FakeEncoder(dim=..., seed=...)")
    if backend == "onnx":
        if text_weights is not None:
            raise ConfigError(
                "text_weights= swaps a text tower in a torch encoder, but this collection is served by an ONNX "
                "bundle; export a bundle from TorchEncoder(model, pretrained, text_weights=PATH) and open with "
                "model='bundle:PATH' (or encoder=) instead"
            )
        folder = _locate_bundle(r, base_dir, search_path)
        return create_encoder(f"bundle:{folder}", backend="onnx", device=device, preprocess=mode, **load_kw)
    if backend != "torch":  # a plugin backend: its recipe is its own business
        return create_encoder(str(r["model"]), r.get("pretrained"), backend=backend, device=device,
                              precision=precision, preprocess=mode)

    sha = r.get("weights_sha256")
    model = str(r["model"])
    if model.startswith("local-dir:"):
        folder = locate(model[len("local-dir:"):], what="local-dir model folder", sha256=sha, want_dir=True,
                        checksum=local_dir_sha256, base_dir=base_dir, search_path=search_path,
                        fix="open with model='local-dir:/path/to/folder'")
        model = f"local-dir:{folder}"
    pretrained = r.get("pretrained")
    if pretrained is not None and (r.get("pretrained_kind") == "file" or looks_like_path(str(pretrained))):
        pretrained = str(locate(str(pretrained), what="checkpoint", sha256=sha, base_dir=base_dir,
                                search_path=search_path,
                                fix=f"open with model={model!r}, pretrained='/path/to/{Path(str(pretrained)).name}'"))
    tw = text_weights
    if tw is None and r.get("text_weights"):
        recorded = str(r["text_weights"])
        tw = str(locate(recorded, what="text tower", sha256=r.get("text_weights_sha256"), base_dir=base_dir,
                        search_path=search_path,
                        fix=f"open with text_weights='/path/to/{Path(recorded).name}'"))
    extra: dict[str, Any] = {"text_weights": tw} if tw else {}
    # rebuild the recorded activation (recipes from before it was recorded had open_clip's config default)
    extra["quick_gelu"] = recorded_activation(r) == "quick_gelu"
    return create_encoder(model, pretrained, backend="torch", device=device, precision=precision, preprocess=mode,
                          **extra, **load_kw)
