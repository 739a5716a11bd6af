"""Item captions for the synthetic world, as real catalogues have them: some full, some partial, some missing, some
wrong (issue 27's mixed galleries). A new generator: the world's images, triplets and training captions
(:mod:`cir_milvus.synthetic`) are untouched.

Example:
    >>> from cir_milvus.synthetic import SyntheticWorld
    >>> caps = item_captions(SyntheticWorld(seed=0, instances=1))
    >>> sorted(set(kind for _, kind in caps.values()))
    ['full', 'missing', 'partial', 'wrong']
"""

from __future__ import annotations

import numpy as np

from cir_milvus.synthetic import SyntheticWorld, caption_with_mentions, random_attributes

__all__ = ["CAPTION_MIX", "item_captions"]

CAPTION_MIX = {"full": 0.35, "partial": 0.35, "missing": 0.15, "wrong": 0.15}
"""Share of each kind of item caption: all four attributes named, one to three named, none, another item's."""


def item_captions(world: SyntheticWorld, seed: int = 0, mix: dict[str, float] | None = None
                  ) -> dict[str, tuple[str | None, str]]:
    """``{item id: (caption or None, kind)}`` for every gallery item; the same seed gives the same captions.

    Kinds: ``full`` (every attribute named), ``partial`` (one to three named, the rest left out), ``missing``
    (``None``: an item without text), ``wrong`` (a caption of random other attributes: a mislabelled product).
    """
    shares = dict(mix or CAPTION_MIX)
    kinds = list(shares)
    p = np.asarray([shares[k] for k in kinds], dtype=np.float64)
    rng = np.random.default_rng(20_000 + seed)
    out: dict[str, tuple[str | None, str]] = {}
    for it in world.gallery():
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        if kind == "missing":
            out[it.id] = (None, kind)
        elif kind == "wrong":
            out[it.id] = (caption_with_mentions(random_attributes(rng), rng, p_full=1.0)[0], kind)
        else:
            out[it.id] = (caption_with_mentions(it.attributes, rng, p_full=1.0 if kind == "full" else 0.0)[0], kind)
    return out
