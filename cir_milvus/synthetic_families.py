"""Query families of the synthetic world with known targets: negation, two references, feedback, fused alphas.

Each family draws from its own random stream (``numpy`` seeded with ``(family code, seed)``), so the standard
triplets of :class:`~cir_milvus.synthetic.SyntheticWorld` (and every figure measured on them) are untouched.

- ``negation``: one edit ("make it blue") plus a negative naming a value the reference has for another attribute
  ("large"). Hits keep the reference's other attributes, take the edit, and LACK the negated value; the image that
  merely applies the edit (still "large") is the distractor the negative must push down.
- ``references``: two references that share two attributes; the target takes attribute ``x`` from the first,
  attribute ``y`` from the second, and the text changes one of the shared attributes. Only a combination of both
  references can find it; note the swap (``x`` from the second, ``y`` from the first) is exactly as close to a
  symmetric mean, so R@1 is bounded near 1/4 by construction while R@10 is not.
- ``feedback``: standard composed queries (their own seed); :func:`simulate_feedback` plays one round in which
  the user marks the first wrong hit ``unlike`` and a hit carrying the target's changed attribute(s) ``like``.
- ``alphas``: standard composed queries (their own seed), for fusing several slerp ratios.

Example:
    >>> from cir_milvus.synthetic import SyntheticWorld
    >>> qs = family_queries(SyntheticWorld(seed=0), "negation", 3, seed=1)
    >>> all(q.negative and q.target_ids for q in qs)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from cir_milvus.synthetic import ATTRIBUTES, BACKGROUNDS, COLOURS, SHAPES, SIZES, Attributes, SyntheticWorld, edit_text

__all__ = ["FAMILIES", "FamilyQuery", "family_queries", "simulate_feedback"]

FAMILIES: tuple[str, ...] = ("negation", "references", "feedback", "alphas")
_CODES = {"negation": 31_001, "references": 31_002, "feedback": 31_003, "alphas": 31_004}
_VALUES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES,
                                       "background": tuple(BACKGROUNDS)}
_NEGATIVE_PHRASES = {"colour": "{v}", "shape": "a {v}", "size": "{v}", "background": "a {v} background"}


@dataclass(frozen=True)
class FamilyQuery:
    """One query of a family.

    Attributes:
        family: ``"negation"``, ``"references"``, ``"feedback"`` or ``"alphas"``.
        reference_ids: the reference image(s) (two for ``references``).
        text: the modification text.
        target_ids: every gallery image that counts as a hit (references are never hits).
        changed: the attributes the text changes (the ones feedback's ``like`` shares with the target).
        target: the target combination (for ``negation``: with the negated attribute left at the reference's value
            as a placeholder: hits are all values but that one).
        negative: ``negation`` only: the negative text, e.g. ``"large"``.
        naive_text: ``negation`` only: the negative pasted into the text, e.g. ``"make it blue but not large"``.
    """

    family: str
    reference_ids: tuple[str, ...]
    text: str
    target_ids: tuple[str, ...]
    changed: tuple[str, ...]
    target: Attributes
    negative: str | None = None
    naive_text: str | None = None


def _other(rng: np.random.Generator, attribute: str, current: str) -> str:
    options = [v for v in _VALUES[attribute] if v != current]
    return options[rng.integers(len(options))]


def _ids(world: SyntheticWorld, keep: Mapping[str, str], exclude: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Gallery ids whose attributes equal ``keep`` and differ from ``exclude``, in gallery order."""
    exclude = exclude or {}
    return tuple(it.id for it in world.gallery()
                 if all(getattr(it.attributes, a) == v for a, v in keep.items())
                 and all(getattr(it.attributes, a) != v for a, v in exclude.items()))


def _negation(world: SyntheticWorld, rng: np.random.Generator) -> FamilyQuery:
    gallery = world.gallery()
    ref = gallery[rng.integers(len(gallery))]
    edited, negated = (str(a) for a in rng.choice(ATTRIBUTES, size=2, replace=False))
    value = _other(rng, edited, getattr(ref.attributes, edited))
    text = edit_text({edited: value}, rng)
    bad = getattr(ref.attributes, negated)
    negative = _NEGATIVE_PHRASES[negated].format(v=bad)
    keep = {a: getattr(ref.attributes, a) for a in ATTRIBUTES if a not in (edited, negated)} | {edited: value}
    return FamilyQuery("negation", (ref.id,), text, _ids(world, keep, {negated: bad}), (edited,),
                       replace(ref.attributes, **{edited: value}), negative, f"{text} but not {negative}")


def _references(world: SyntheticWorld, rng: np.random.Generator) -> FamilyQuery:
    gallery = world.gallery()
    first = gallery[rng.integers(len(gallery))].attributes
    x, y, z = (str(a) for a in rng.choice(ATTRIBUTES, size=3, replace=False))
    second = replace(first, **{x: _other(rng, x, getattr(first, x))})  # differs in x ...
    first = replace(first, **{y: _other(rng, y, getattr(first, y))})  # ... and the first differs in y
    target = replace(first, **{y: getattr(second, y), z: _other(rng, z, getattr(first, z))})
    refs = tuple(_ids(world, vars(a))[int(rng.integers(world.instances))] for a in (first, second))
    text = edit_text({z: getattr(target, z)}, rng)
    return FamilyQuery("references", refs, text, _ids(world, vars(target)), (z,), target)


def _standard(world: SyntheticWorld, family: str, n: int, seed: int) -> list[FamilyQuery]:
    out = []
    for t in world.triplets(n, seed=_CODES[family] * 1_000 + seed):
        out.append(FamilyQuery(family, (t.reference_id,), t.text, t.target_ids, t.changed, t.target))
    return out


def family_queries(world: SyntheticWorld, family: str, n: int, seed: int = 1) -> list[FamilyQuery]:
    """``n`` queries of one family (deterministic for ``(world, family, n, seed)``).

    Args:
        world: the gallery.
        family: one of :data:`FAMILIES`.
        n: number of queries.
        seed: split seed (use different seeds for validation and test).

    Raises:
        ValueError: an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown query family {family!r}; choose one of {list(FAMILIES)}")
    if family in ("feedback", "alphas"):
        return _standard(world, family, n, seed)
    rng = np.random.default_rng([_CODES[family], seed])
    make = _negation if family == "negation" else _references
    return [make(world, rng) for _ in range(n)]


def simulate_feedback(query: FamilyQuery, ranked_ids: Sequence[str],
                      attributes: Mapping[str, Attributes]) -> tuple[list[str], list[str]]:
    """One simulated round of relevance feedback on a first result list.

    ``unlike``: the first wrong hit. ``like``: the best-ranked other hit that carries the target's value of every
    changed attribute (it may be a right one: a user likes what has the asked-for change). Either may be empty when
    the list has no such hit. Score the second round on the *residual* ranking (the judged ids removed, as
    relevance-feedback evaluations do since Salton & Buckley 1990), for the feedback and the no-feedback run alike.

    Args:
        query: the query (its ``target_ids``, ``target`` and ``changed``).
        ranked_ids: the first round's hits, best first.
        attributes: attributes of every gallery id.

    Returns:
        ``(like, unlike)`` id lists of at most one id each.
    """
    hits = set(query.target_ids)
    unlike = [i for i in ranked_ids if i not in hits][:1]
    like = [i for i in ranked_ids if i not in unlike
            and all(getattr(attributes[i], a) == getattr(query.target, a) for a in query.changed)][:1]
    return like, unlike
