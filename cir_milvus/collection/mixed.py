"""Mixed galleries on the collection side: item texts embedded with the collection's text tower, and the recipe
entry that records them (the store's side, the second vector field and fused search, is
:mod:`cir_milvus.storage.hybrid`).

The collection's text tower is the text tower of the encoder it runs with, the one that also embeds the queries: a
tuned tower swapped in with ``text_weights`` (an RTD checkpoint) included. ``add()``, the local ingest pipeline and
Ray's encoder actors all embed item texts with it, so stored texts and queries come from one tower. Opening an
existing mixed gallery with another ``text_weights`` changes the tower for the queries and for the texts added from
then on; the texts stored before keep their vectors (re-add those items with ``skip_existing=False`` to re-embed
them). Opening one so logs a warning (:func:`text_tower_change`).

An item text is a caption, a title, a description: one string per image, or ``None`` / ``""`` for an item without
text. Such an item is stored with ``has_text = false`` and is **absent from the text target's list**: it is found
through its image only (with ``ranker="rrf"`` its image rank still counts; with ``"weighted"`` its text term is 0,
so a text-matching item with the same image score outranks it). Texts longer than the encoder's context length are
cut to their first tokens (with a warning), as catalogue descriptions often are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.encoders.base import Encoder
from cir_milvus.errors import ConfigError
from cir_milvus.storage.schema import HAS_TEXT, ITEM_TEXT, TEXT_SPARSE, TEXT_VECTOR

__all__ = ["check_item_texts", "encode_item_texts", "item_text_recipe", "target_kw", "text_tower_change"]


def item_text_recipe(encoder: Encoder, full_text: bool = False) -> dict[str, Any]:
    """The recipe entry of a collection created with ``item_text=True``: its fields and the text tower the item texts
    are embedded with (the collection's encoder at creation, its ``text_weights`` included; see the module
    docstring for a tower swapped in later)."""
    out: dict[str, Any] = {"field": TEXT_VECTOR, "flag_field": HAS_TEXT, "encoder": dict(encoder.recipe)}
    if full_text:
        out["full_text"] = {"field": ITEM_TEXT, "sparse_field": TEXT_SPARSE, "function": "BM25"}
    return out


def text_tower_change(name: str, item_text: Mapping[str, Any] | None, encoder: Mapping[str, Any]) -> str | None:
    """The warning for a mixed gallery opened with another text tower than the one recorded for its item texts
    (``item_text``: the recipe's entry; ``encoder``: the serving encoder's recipe); ``None`` when they agree."""
    if item_text is None:
        return None
    rec = item_text.get("encoder") or {}
    was, now = rec.get("text_weights_sha256"), encoder.get("text_weights_sha256")
    if was == now:
        return None
    def tower(r: Mapping[str, Any], sha: Any) -> str:
        return f"the text tower {r.get('text_weights') or 'sha256 ' + str(sha)[:12]}" if sha else "the model's own text tower"

    before, after = tower(rec, was), tower(encoder, now)
    return (f"mixed gallery {name!r} was created with its item texts embedded with {before}, but is open with "
            f"{after}: queries and the item texts added from now on use it, the texts stored before keep their "
            "vectors (re-add those items with skip_existing=False to re-embed them)")


def check_item_texts(texts: Sequence[Any] | None, n: int, has_field: bool, collection: str) -> list[str | None] | None:
    """``texts`` as one string or ``None`` per image.

    Raises:
        ConfigError: texts on a collection without an item-text field, a count that does not match the images, an
            entry that is not a string or ``None``.
    """
    if texts is None:
        return None
    if not has_field:
        raise ConfigError(f"collection {collection!r} has no item-text field; create it with item_text=True to store "
                          "texts with the images")
    if isinstance(texts, (str, bytes)):
        raise ConfigError("texts must be a list with one text (or None) per image, not a single string")
    out = list(texts)
    if len(out) != n:
        raise ConfigError(f"texts has {len(out)} entries but there are {n} images; give one text (or None) per image, "
                          "in the same order")
    for i, t in enumerate(out):
        if t is not None and not isinstance(t, str):
            raise ConfigError(f"texts[{i}] must be a string or None, got {type(t).__name__}")
    return [t if t is not None and t.strip() else None for t in out]


def encode_item_texts(encoder: Encoder, texts: Sequence[str | None], batch_size: int = 256) -> list[np.ndarray | None]:
    """Raw text-tower embeddings, one per text (``None`` stays ``None``: an item without text)."""
    present = [i for i, t in enumerate(texts) if t is not None]
    out: list[np.ndarray | None] = [None] * len(texts)
    if present:
        emb = np.asarray(encoder.encode_texts([str(texts[i]) for i in present], batch_size=batch_size,
                                              normalize=False, truncate=True), dtype=np.float32)  # [M, D]
        for j, i in enumerate(present):
            out[i] = emb[j]
    return out


def target_kw(targets: Sequence[str] | None, ranker: Any, ranker_weights: Sequence[float] | None) -> dict[str, Any]:
    """The store's search keywords for ``targets`` (none for the default image search: ``search_vectors``)."""
    if targets is None:
        if ranker != "rrf" or ranker_weights is not None:
            raise ConfigError("ranker / ranker_weights fuse several targets; pass targets=('image', 'text') too")
        return {}
    return {"targets": targets, "ranker": ranker, "ranker_weights": ranker_weights}
