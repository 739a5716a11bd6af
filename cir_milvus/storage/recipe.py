"""The recipe: how a collection's vectors were made, stored in the collection's properties and checked on open."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cir_milvus.artifacts import hint_name, looks_like_path, path_hint, remember
from cir_milvus.errors import ConfigError, RecipeMismatchError
from cir_milvus.recipe_fields import recorded_activation

__all__ = ["PROPERTY_KEY", "Recipe", "check_compatible", "creation_conflicts", "differences", "lite_base_dir",
           "portable_composer", "portable_encoder", "recorded_activation"]

PROPERTY_KEY = "cir_milvus.recipe"
FORMAT_VERSION = 2
"""1: paths stored as typed. 2: paths are portable hints (relative to the Lite folder, else a file name) next to
sha256 content ids (see :mod:`cir_milvus.artifacts`). Both are read."""
# encoder fields that must agree between the collection and the encoder serving it (backend may differ: an ONNX
# bundle exported from the same weights serves a torch-built collection). A swapped text tower ("text_weights",
# RTD) is not among them: it changes queries, never the stored image vectors.
_MUST_MATCH = ("model", "pretrained", "weights_sha256", "dim", "preprocess", "activation")


@dataclass
class Recipe:
    """Everything needed to reproduce a collection's vectors and its default query composition.

    Attributes:
        encoder: the encoder's ``recipe`` dict (backend, model, pretrained, weights_sha256, dim, preprocess).
        composer: default composer ``{"name": ..., "params": {...}}`` (heads recorded by kind/source/sha256).
        metric: Milvus metric (``"IP"`` on L2-normalised vectors).
        index: ``{"type": ..., "params": {...}}``.
        package_version: cir_milvus version that created the collection.
        item_text: mixed galleries only: ``{"field": ..., "flag_field": ..., "encoder": {...}}``, the item-text
            vector field and the text tower that embedded the item texts (``None``: images only).
    """

    encoder: dict[str, Any]
    composer: dict[str, Any] = field(default_factory=lambda: {"name": "slerp", "params": {"alpha": 0.8}})
    metric: str = "IP"
    index: dict[str, Any] = field(default_factory=lambda: {"type": "HNSW", "params": {"M": 16, "efConstruction": 200}})
    package_version: str = ""
    format: int = FORMAT_VERSION
    item_text: dict[str, Any] | None = None

    def portable(self, base_dir: str | os.PathLike[str] | None = None) -> Recipe:
        """This recipe with every local path turned into a hint (relative to ``base_dir`` when inside it, else
        the file name): what a collection stores, so it can be opened from another folder or host."""
        item_text = None if self.item_text is None else {
            **self.item_text, "encoder": portable_encoder(self.item_text.get("encoder") or {}, base_dir)}
        return replace(self, encoder=portable_encoder(self.encoder, base_dir),
                       composer=portable_composer(self.composer, base_dir), format=FORMAT_VERSION, item_text=item_text)

    def to_json(self) -> str:
        d = {"format": self.format, "encoder": self.encoder, "composer": self.composer, "metric": self.metric,
             "index": self.index, "package_version": self.package_version}
        if self.item_text is not None:
            d["item_text"] = self.item_text
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            d = json.loads(text)
            fmt = int(d.get("format", 1))
            if fmt > FORMAT_VERSION:
                raise ConfigError(
                    f"the collection's recipe has format {fmt}, newer than this cir_milvus reads ({FORMAT_VERSION}); "
                    "upgrade cir_milvus (pip install -U cir_milvus)"
                )
            return cls(encoder=d["encoder"], composer=d["composer"], metric=d["metric"], index=d["index"],
                       package_version=d.get("package_version", ""), format=fmt, item_text=d.get("item_text"))
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"the collection's stored recipe is unreadable ({e}): {text[:200]!r}") from e

    def describe(self) -> str:
        e = self.encoder
        sha = (e.get("weights_sha256") or "-")[:12]
        text = f", text tower {e['text_weights']}" if e.get("text_weights") else ""
        return f"{e.get('model')} / {e.get('pretrained')} (sha256 {sha}, dim {e.get('dim')}, {e.get('backend')}{text})"


def lite_base_dir(uri: object) -> Path | None:
    """The folder holding a Milvus Lite ``.db`` (where relative recipe hints start); ``None`` for server URIs and
    injected clients."""
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or "://" in uri or uri.startswith("unix:") or not uri.endswith(".db"):
        return None
    return Path(os.path.abspath(Path(uri).expanduser())).parent


def _hint(path: str, sha256: Any, base_dir: str | os.PathLike[str] | None) -> str:
    """The hint of a live path; the machine's own index remembers where the content is (see artifacts)."""
    if sha256 and Path(path).expanduser().exists():
        remember(path, str(sha256))
    return path_hint(path, base_dir)


def portable_encoder(encoder: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """An encoder recipe whose paths (checkpoint, text tower, bundle, ``local-dir:`` folder) are hints.

    A checkpoint file is marked ``pretrained_kind="file"`` so the rebuild looks it up instead of treating the
    hint as an open_clip tag. Checksums, tags and ``hf-hub:`` ids are kept as they are.
    """
    out = dict(encoder)
    pre = out.get("pretrained")
    if isinstance(pre, str) and (out.get("pretrained_kind") == "file" or looks_like_path(pre) or Path(pre).is_file()):
        out["pretrained"] = _hint(pre, out.get("weights_sha256"), base_dir)
        out["pretrained_kind"] = "file"
    tw = out.get("text_weights")
    if isinstance(tw, str) and tw:
        out["text_weights"] = _hint(tw, out.get("text_weights_sha256"), base_dir)
    loc = out.get("location")
    if isinstance(loc, str) and loc.startswith("bundle:"):
        out["location"] = "bundle:" + _hint(loc[len("bundle:"):], out.get("bundle_sha256"), base_dir)
    model = out.get("model")
    if isinstance(model, str) and model.startswith("local-dir:"):
        out["model"] = "local-dir:" + _hint(model[len("local-dir:"):], out.get("weights_sha256"), base_dir)
    return out


def _portable_params(value: Any, base_dir: str | os.PathLike[str] | None) -> Any:
    if isinstance(value, Mapping):
        out = {k: _portable_params(v, base_dir) for k, v in value.items()}
        src = out.get("source")
        # a head config ({"kind", "source", "sha256", ...}): a local file or saved folder becomes a hint
        if "kind" in out and isinstance(src, str) and src and not src.startswith("hf-hub:"):
            out["source"] = _hint(src, out.get("sha256"), base_dir)
        return out
    if isinstance(value, list):
        return [_portable_params(v, base_dir) for v in value]
    return value


def portable_composer(composer: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A composer config whose head sources are hints (heads are found again by their recorded sha256)."""
    return dict(_portable_params(dict(composer), base_dir))


def _name(value: Any) -> Any:
    """What identifies a ``pretrained`` value or a ``local-dir:`` model besides its checksum: the file name."""
    if not isinstance(value, str):
        return value
    if value.startswith("local-dir:"):
        return "local-dir:" + _name(value[len("local-dir:"):])
    if looks_like_path(value):
        return hint_name(value)
    return value


def _where(enc: Mapping[str, Any]) -> str:
    pre = enc.get("pretrained")
    return f"{enc.get('model')} / {pre}" if pre else str(enc.get("model"))


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable list of encoder fields that differ.

    Weights are identified by content: when both sides record ``weights_sha256`` the checksums decide, whatever
    the ``pretrained`` tag, file name or path (a copy of the same file elsewhere, ``./x`` vs ``/abs/x``, or the
    demo weights passed as a file all match). Without a checksum on one side, the ``pretrained`` names (tags or
    file names; paths never) are compared.
    """
    out = []
    sha_a, sha_b = stored.get("weights_sha256"), current.get("weights_sha256")
    both_sha = bool(sha_a) and bool(sha_b)
    for key in _MUST_MATCH:
        a, b = stored.get(key), current.get(key)
        if key == "activation":
            a, b = recorded_activation(stored), recorded_activation(current)
        if key == "weights_sha256":
            if both_sha and a != b:
                out.append(f"weights_sha256: the collection was built from weights with sha256 {a} ({_where(stored)}) but "
                           f"the encoder's weights have sha256 {b} ({_where(current)})")
            continue
        if key == "pretrained" and both_sha:
            continue  # the checksums above decide
        if key in ("model", "pretrained"):
            a, b = _name(a), _name(b)
        if a != b:
            out.append(f"{key}: collection has {a!r}, encoder has {b!r}")
    bun_a, bun_b = stored.get("bundle_sha256"), current.get("bundle_sha256")
    if bun_a and bun_b and bun_a != bun_b:  # both served by ONNX bundles: their files' content decides
        out.append(f"bundle_sha256: the collection was built from an ONNX bundle whose files have sha256 {bun_a} but "
                   f"this bundle's files have sha256 {bun_b} (other weights, graphs, tokenizer or preprocessing, "
                   "whatever its manifest claims)")
    return out


def check_compatible(name: str, stored: Recipe, current: dict[str, Any]) -> None:
    """Raise :class:`RecipeMismatchError` naming both recipes when the encoder cannot serve the collection."""
    diffs = differences(stored.encoder, current)
    if diffs:
        cur = Recipe(encoder=current)
        raise RecipeMismatchError(
            f"collection {name!r} was built with {stored.describe()} but the encoder is {cur.describe()}: "
            + "; ".join(diffs)
            + ". Open it without model= to use its own recipe, or create a new collection (re-ingest) for the "
            "new model."
        )


def creation_conflicts(stored: Recipe, wanted: Recipe) -> list[str]:
    """Why a collection built with ``stored`` is not the one ``wanted`` describes (``[]``: it is).

    What two creators of one collection must agree on: the encoder, as :func:`differences` compares it. The image
    decode mode is left out: a collection owns it, and whoever serves the collection adopts it.
    """

    def without_decode(enc: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(enc)
        if isinstance(out.get("preprocess"), Mapping):
            out["preprocess"] = {k: v for k, v in out["preprocess"].items() if k != "decode"}
        return out

    return differences(without_decode(stored.encoder), without_decode(wanted.encoder))
