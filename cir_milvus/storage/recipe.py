"""The recipe: how a collection's vectors were made, stored in the collection's properties and checked on open."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cir_milvus.errors import ConfigError, RecipeMismatchError

__all__ = ["PROPERTY_KEY", "Recipe", "check_compatible"]

PROPERTY_KEY = "cir_milvus.recipe"
FORMAT_VERSION = 1
# encoder fields that must agree between the collection and the encoder serving it (backend may differ: an ONNX
# bundle exported from the same weights serves a torch-built collection). A swapped text tower ("text_weights",
# RTD) is not among them: it changes queries, never the stored image vectors.
_MUST_MATCH = ("model", "pretrained", "weights_sha256", "bundle_sha256", "dim", "preprocess")
# compared only when both sides record them: a torch encoder has no bundle_sha256 (content of an ONNX bundle's files,
# computed on load by encoders/ort.py, so an edited bundle manifest cannot claim other weights' identity)
_IF_BOTH = ("weights_sha256", "bundle_sha256")


@dataclass
class Recipe:
    """Everything needed to reproduce a collection's vectors and its default query composition.

    Attributes:
        encoder: the encoder's ``recipe`` dict (backend, model, pretrained, weights_sha256, dim, preprocess).
        composer: default composer ``{"name": ..., "params": {...}}`` (heads recorded by kind/source/sha256).
        metric: Milvus metric (``"IP"`` on L2-normalised vectors).
        index: ``{"type": ..., "params": {...}}``.
        package_version: cir_milvus version that created the collection.
    """

    encoder: dict[str, Any]
    composer: dict[str, Any] = field(default_factory=lambda: {"name": "slerp", "params": {"alpha": 0.8}})
    metric: str = "IP"
    index: dict[str, Any] = field(default_factory=lambda: {"type": "HNSW", "params": {"M": 16, "efConstruction": 200}})
    package_version: str = ""
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {"format": self.format, "encoder": self.encoder, "composer": self.composer, "metric": self.metric,
             "index": self.index, "package_version": self.package_version},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            d = json.loads(text)
            return cls(encoder=d["encoder"], composer=d["composer"], metric=d["metric"], index=d["index"],
                       package_version=d.get("package_version", ""), format=int(d.get("format", 1)))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"the collection's stored recipe is unreadable ({e}): {text[:200]!r}") from e

    def describe(self) -> str:
        e = self.encoder
        sha = (e.get("weights_sha256") or "-")[:12]
        text = f", text tower {e['text_weights']}" if e.get("text_weights") else ""
        return f"{e.get('model')} / {e.get('pretrained')} (sha256 {sha}, dim {e.get('dim')}, {e.get('backend')}{text})"


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable list of encoder fields that differ."""
    out = []
    for key in _MUST_MATCH:
        a, b = stored.get(key), current.get(key)
        if key in _IF_BOTH and (a is None or b is None):
            continue
        if a != b:
            out.append(f"{key}: collection has {a!r}, encoder has {b!r}")
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
