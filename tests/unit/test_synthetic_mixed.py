"""Item captions of the synthetic world (issue 27): the kinds, their shares, determinism, and what each kind says."""

from __future__ import annotations

from collections import Counter

from cir_milvus.synthetic import SHAPES, SyntheticWorld
from cir_milvus.synthetic_mixed import CAPTION_MIX, item_captions


def test_captions_are_deterministic_and_mixed() -> None:
    world = SyntheticWorld(seed=0, instances=2)
    a, b = item_captions(world, seed=3), item_captions(world, seed=3)
    assert a == b and a != item_captions(world, seed=4)
    assert set(a) == {it.id for it in world.gallery()}
    counts = Counter(kind for _, kind in a.values())
    for kind, share in CAPTION_MIX.items():
        assert abs(counts[kind] / len(a) - share) < 0.05, (kind, counts)


def test_each_kind_says_what_it_claims() -> None:
    world = SyntheticWorld(seed=0, instances=1)
    caps = item_captions(world)
    wrong_disagrees = 0
    for it in world.gallery():
        text, kind = caps[it.id]
        at = it.attributes
        named = set(text.replace(",", " ").split()) if text else set()
        if kind == "missing":
            assert text is None
        elif kind == "full":
            assert {at.shape, at.colour, at.size} <= named
        elif kind == "partial":
            assert not {at.shape, at.colour, at.size, at.background} <= named  # something is left out
            assert named & set(SHAPES) <= {at.shape}  # and nothing false is said
        else:
            wrong_disagrees += not {at.shape, at.colour} <= named
    assert wrong_disagrees >= 0.8 * sum(1 for _, k in caps.values() if k == "wrong")
