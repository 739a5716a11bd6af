"""The ONNX bundle format: file names, the manifest, and the checksums that identify a bundle by its content.

One owner for the format: ``export/`` writes bundles with it, :class:`~cir_milvus.encoders.ort.OrtEncoder` reads
them, and the recipe rebuild finds moved bundles by :func:`bundle_sha256`. This module needs neither torch nor
onnxruntime.

Layout (see ``export/README.md``)::

    manifest.json      source model, dims, placeholder ids, composer defaults, sha256 of every file
    image.onnx         pixels float32 [B, 3, S, S]            -> image_embeds float32 [B, D] (raw)
    text.onnx          input_ids int64 [B, L]                 -> text_embeds float32 [B, D] (raw)
    text_pseudo.onnx   input_ids, pseudo_token [B, W], placeholder_id int64 [1] -> text_embeds [B, D] (raw)
    head_{name}.onnx   image_embeds [B, D]                    -> pseudo_token [B, W]
    fused_slerp.onnx   pixels, input_ids, alpha float32 [1]   -> query [B, D] (L2-normalised)
    fused_{name}.onnx  pixels, input_ids (prompt with the placeholder) -> query [B, D] (L2-normalised)
    weights.bin        the graphs' weights, shared between graphs (ONNX external data)
    tokenizer.json, preprocess.json, reference.npz, parity.json

Example:
    >>> manifest = load_manifest("bundle/")  # doctest: +SKIP
    >>> verify_bundle("bundle/", manifest)  # doctest: +SKIP
    {'image.onnx': '3f1c…', ...}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cir_milvus.errors import ConfigError, ModelNotFoundError
from cir_milvus.hashing import file_sha256
from cir_milvus.preprocess import PreprocessConfig, default_decode

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST",
    "PARITY",
    "PREPROCESS",
    "REFERENCE",
    "TOKENIZER",
    "WEIGHTS",
    "bundle_preprocess",
    "bundle_sha256",
    "claimed_weights_sha256",
    "load_manifest",
    "session_options",
    "verify_bundle",
    "write_manifest",
]

BUNDLE_FORMAT = "cir_milvus-onnx-bundle"
"""The ``format`` field of a bundle's ``manifest.json``."""
MANIFEST = "manifest.json"
WEIGHTS = "weights.bin"
"""The graphs' shared external data."""
TOKENIZER = "tokenizer.json"
PREPROCESS = "preprocess.json"
REFERENCE = "reference.npz"
"""Seeded parity inputs and the torch outputs."""
PARITY = "parity.json"
"""The parity report written by the export."""

_CONTENT_SUFFIXES = (".onnx", ".bin", ".data")
"""Files whose bytes compute the embeddings: graphs and their external weights (plus the tokenizer and
preprocessing files the manifest names)."""


def load_manifest(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``manifest.json`` of a bundle.

    Raises:
        ModelNotFoundError: the folder or its manifest does not exist.
        ConfigError: the manifest is not a cir_milvus bundle manifest.
    """
    folder = Path(bundle_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelNotFoundError(
            f"no ONNX bundle at {folder} ({MANIFEST} missing); create one with "
            "`cir-milvus export --model ... --out DIR` (or cir_milvus_export.export_bundle)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{path} is not a cir_milvus bundle manifest (format != {BUNDLE_FORMAT!r})")
    return manifest


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Record the sha256 of every file in ``out`` (but the manifest) as ``manifest["files"]`` and write it."""
    manifest["files"] = {p.name: file_sha256(p, cached=False) for p in sorted(out.iterdir())
                         if p.is_file() and p.name != MANIFEST}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                encoding="utf-8")


def _content_files(folder: Path, manifest: Mapping[str, Any]) -> list[str]:
    names = {p.name for p in folder.iterdir() if p.is_file() and p.suffix in _CONTENT_SUFFIXES}
    names.update(str(manifest.get(key, default)) for key, default in (("tokenizer", TOKENIZER),
                                                                       ("preprocess", PREPROCESS)))
    return sorted(names)


def bundle_sha256(bundle_dir: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None, *,
                  file_hashes: Mapping[str, str] | None = None) -> str | None:
    """The content id of a bundle, computed from its files (never taken from the manifest); ``None`` when the
    folder holds no bundle manifest. Collections record it to refuse other weights and to find a moved bundle.

    sha256 over ``name\\0sha256(file)\\n`` for every ONNX graph, every external-data file (``*.bin``, ``*.data``)
    and the tokenizer and preprocessing files, sorted by name. Any change of weights, graphs, tokenizer or
    preprocessing changes it; the manifest, reports (``parity.json``, ``reference.npz``) and other files do not.
    The encoder recipe records it as ``bundle_sha256``: a collection built from a bundle refuses a bundle whose
    manifest was edited to match other weights (the manifest's own checksums agree with such files by construction).

    Args:
        bundle_dir: the bundle folder.
        manifest: its manifest (read when omitted).
        file_hashes: sha256 by file name already computed from the files (by :func:`verify_bundle`).

    Raises:
        ConfigError: a content file named by the manifest is missing.
    """
    folder = Path(bundle_dir)
    if manifest is None:
        if not (folder / MANIFEST).is_file():
            return None
        manifest = load_manifest(folder)
    h = hashlib.sha256()
    for name in _content_files(folder, manifest):
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"bundle {folder} is incomplete: {name} is missing")
        digest = (file_hashes or {}).get(name) or file_sha256(path, cached=False)
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def verify_bundle(bundle_dir: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Check every file listed in the manifest against the sha256 of its bytes (read now, never cached), and that
    every graph and weights file in the folder is listed (an unlisted ``.onnx`` / ``.bin`` cannot slip in beside an
    edited manifest).

    This catches files altered after export. A manifest rewritten to match other weights passes this check by
    construction: that case is caught by the collection's recipe, which records :func:`bundle_sha256`.

    Returns:
        sha256 by file name, computed from the files.

    Raises:
        ConfigError: a file is missing, unlisted, or was altered after export (the message names it).
    """
    folder = Path(bundle_dir)
    manifest = manifest if manifest is not None else load_manifest(folder)
    listed = manifest.get("files", {})
    if not isinstance(listed, dict) or not listed:
        raise ConfigError(f"{folder / MANIFEST} lists no files with checksums; re-export the bundle")
    unlisted = sorted(n for n in _content_files(folder, manifest) if n not in listed)
    if unlisted:
        raise ConfigError(
            f"bundle {folder} holds {', '.join(unlisted)} which {MANIFEST} does not list with a checksum; remove "
            "them or re-export the bundle (or pass verify=False if you changed it on purpose)"
        )
    hashes: dict[str, str] = {}
    for name, want in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"bundle {folder} is incomplete: {name} is listed in {MANIFEST} but missing")
        got = file_sha256(path, cached=False)
        if got != want:
            raise ConfigError(
                f"bundle file {path} was altered after export: sha256 {got[:16]}… != {want[:16]}… in {MANIFEST}; "
                "re-export the bundle (or pass verify=False if you changed it on purpose)"
            )
        hashes[name] = got
    return hashes


def claimed_weights_sha256(bundle_dir: str | os.PathLike[str]) -> str | None:
    """The checksum of the weights a bundle says it was exported from (its manifest's ``source.weights_sha256``):
    a claim, not a proof (the manifest can be edited); ``None`` when unreadable. Used only to find bundles named
    by recipes written before bundles had a content id."""
    try:
        manifest = json.loads((Path(bundle_dir) / MANIFEST).read_text(encoding="utf-8"))
        sha = manifest["source"].get("weights_sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return str(sha) if sha else None


def bundle_preprocess(cfg: PreprocessConfig) -> dict[str, Any]:
    """The ``preprocess.json`` of a bundle exported from an encoder preprocessing with ``cfg``.

    The bundle rule for the decode mode: a ``"decode"`` key is written only when ``cfg.decode`` differs from the
    library default for ``cfg`` (:func:`~cir_milvus.preprocess.default_decode`), and the onnxruntime encoder reads a
    missing key as that default. So a bundle exported from a default encoder holds the same ``preprocess.json``
    (and keeps the same :func:`bundle_sha256`) as one exported before the default changed, and serves with the
    same mode as the torch encoder it came from; an encoder built with another mode on purpose records it.
    Collections record their own mode either way (a bundle's only sets the default of new collections).
    """
    d = cfg.to_dict()
    d.pop("decode", None)
    if cfg.decode != default_decode(cfg):
        d["decode"] = cfg.decode
    return d


def session_options(ort: Any, manifest: Mapping[str, Any], threads: int | None = None, spin: bool = True) -> Any:
    """``SessionOptions`` honouring the manifest's runtime hints (fp16 bundles use the "extended" level).

    ``spin=False`` stops idle intra-op threads from busy-waiting, which only costs when the cores are shared (decode
    workers beside the encoder during ingestion).
    """
    opts = ort.SessionOptions()
    level = manifest.get("runtime", {}).get("graph_optimization_level")
    if level is not None:
        opts.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
