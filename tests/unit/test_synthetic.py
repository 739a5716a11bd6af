"""The synthetic world: determinism, gallery ids, triplet ground truth, and disjoint caption/edit vocabularies."""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import pytest

from cir_milvus.synthetic import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    SIZES,
    SyntheticWorld,
    caption,
    random_attributes,
    sample_pairs,
)

# the framing words of modification texts: none may ever appear in a training caption
EDIT_FRAMING_WORDS = {
    "make", "turn", "change", "instead", "same", "swap", "recolour", "resize", "now",
    "into", "put", "backdrop", "but", "it", "the", "as", "and",
}  # fmt: skip


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_gallery_size_and_unique_ids(world: SyntheticWorld) -> None:
    gallery = world.gallery()
    expected = len(SHAPES) * len(COLOURS) * len(SIZES) * len(BACKGROUNDS) * 2
    assert expected == 1024
    assert len(gallery) == 1024
    assert len({item.id for item in gallery}) == 1024
    # every combination appears exactly twice
    counts: dict[object, int] = {}
    for item in gallery:
        counts[item.attributes] = counts.get(item.attributes, 0) + 1
    assert len(counts) == 512 and set(counts.values()) == {2}


def test_two_instances_render_the_same_pixels() -> None:
    a, b = SyntheticWorld(seed=3), SyntheticWorld(seed=3)
    assert [i.id for i in a.gallery()] == [i.id for i in b.gallery()]
    for item_id in [a.gallery()[k].id for k in (0, 1, 511, 1023)]:
        pa, pb = np.asarray(a.image(item_id)), np.asarray(b.image(item_id))
        assert pa.shape == (64, 64, 3) and pa.dtype == np.uint8
        np.testing.assert_array_equal(pa, pb)


def test_instances_and_seeds_differ() -> None:
    w0, w1 = SyntheticWorld(seed=0), SyntheticWorld(seed=1)
    g0 = w0.gallery()
    assert g0[0].attributes == g0[1].attributes  # two renders of one combination...
    assert not np.array_equal(np.asarray(w0.image(g0[0].id)), np.asarray(w0.image(g0[1].id)))  # ...that differ
    assert not np.array_equal(np.asarray(w0.image(g0[0].id)), np.asarray(w1.image(w1.gallery()[0].id)))
    assert {i.id for i in g0}.isdisjoint({i.id for i in w1.gallery()})


def test_image_of_a_foreign_id_is_refused(world: SyntheticWorld) -> None:
    other = SyntheticWorld(seed=1).gallery()[5].id
    with pytest.raises(KeyError, match=other):
        world.image(other)
    with pytest.raises(KeyError):
        world.image("syn-0-99999")


def test_rendered_background_and_object_colours(world: SyntheticWorld) -> None:
    item = next(i for i in world.gallery() if i.attributes.size == "large" and i.attributes.background == "white")
    arr = np.asarray(world.image(item.id), dtype=np.float64)
    corner = arr[:3, :3].reshape(-1, 3).mean(axis=0)
    # corners are background (a large object stays off the 3-pixel corner), within noise of the nominal colour
    assert np.abs(corner - BACKGROUNDS["white"]).max() < 25
    fg = np.asarray(COLOURS[item.attributes.colour], dtype=np.float64)
    closest = np.min(np.linalg.norm(arr.reshape(-1, 3) - fg, axis=1))
    assert closest < 40  # some pixel shows the object colour


def test_triplets_change_exactly_the_changed_attributes(world: SyntheticWorld) -> None:
    by_id = {item.id: item for item in world.gallery()}
    triplets = world.triplets(300, seed=1)
    assert len(triplets) == 300
    two = 0
    for t in triplets:
        ref = by_id[t.reference_id].attributes
        differing = tuple(a for a in ATTRIBUTES if getattr(ref, a) != getattr(t.target, a))
        assert differing == t.changed
        assert 1 <= len(t.changed) <= 2
        two += len(t.changed) == 2
    assert 0 < two < 300  # both kinds occur


def test_triplet_targets_are_the_two_gallery_images_of_the_target(world: SyntheticWorld) -> None:
    gallery = world.gallery()
    for t in world.triplets(200, seed=2):
        expected = tuple(item.id for item in gallery if item.attributes == t.target)
        assert len(expected) == 2
        assert t.target_ids == expected
        assert t.reference_id not in t.target_ids


def test_triplets_are_seeded(world: SyntheticWorld) -> None:
    assert world.triplets(20, seed=5) == SyntheticWorld(seed=0).triplets(20, seed=5)
    assert world.triplets(20, seed=5) != world.triplets(20, seed=6)


def test_edit_texts_mention_the_new_values(world: SyntheticWorld) -> None:
    for t in world.triplets(200, seed=3):
        for a in t.changed:
            assert getattr(t.target, a) in t.text


def test_framing_words_of_edit_texts_never_occur_in_captions(world: SyntheticWorld) -> None:
    rng = np.random.default_rng(0)
    caption_words: set[str] = set()
    for _ in range(2000):
        caption_words |= _words(caption(random_attributes(rng), rng))
    assert {"a", "photo", "of", "on", "background"} <= caption_words  # the sampler really ran
    assert caption_words.isdisjoint(EDIT_FRAMING_WORDS), caption_words & EDIT_FRAMING_WORDS

    # and the edit texts do use these framing words (so the check above is about the real vocabulary)
    edit_words: set[str] = set()
    for t in world.triplets(500, seed=4):
        edit_words |= _words(t.text)
    framing_in_edits = edit_words - caption_words
    assert {"make", "turn", "change", "swap", "recolour", "resize", "same"} <= framing_in_edits


def test_captions_only_name_true_attributes() -> None:
    rng = np.random.default_rng(1)
    vocab = {a: set(v) for a, v in zip(ATTRIBUTES, (SHAPES, COLOURS, SIZES, BACKGROUNDS), strict=True)}
    for _ in range(500):
        attrs = random_attributes(rng)
        words = _words(caption(attrs, rng))
        for a in ATTRIBUTES:
            named = words & vocab[a]
            assert named <= {getattr(attrs, a)}


def test_sample_pairs_shapes() -> None:
    images, captions = sample_pairs(5, np.random.default_rng(0), image_size=32)
    assert len(images) == len(captions) == 5
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in images)


def test_all_combinations_are_covered() -> None:
    combos = {dataclasses.astuple(i.attributes) for i in SyntheticWorld(seed=0).gallery()}
    assert combos == set(itertools.product(SHAPES, COLOURS, SIZES, BACKGROUNDS))
