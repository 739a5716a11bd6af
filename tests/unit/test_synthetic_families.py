"""The synthetic world's query families: targets follow each family's rule, streams are separate and deterministic."""

from __future__ import annotations

import pytest

from cir_milvus.eval.synthetic import SyntheticDataset
from cir_milvus.synthetic import ATTRIBUTES, SyntheticWorld
from cir_milvus.synthetic_families import FAMILIES, family_queries, simulate_feedback


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


def _attrs(world: SyntheticWorld) -> dict[str, dict[str, str]]:
    return {it.id: dict(vars(it.attributes)) for it in world.gallery()}


def test_negation_hits_lack_the_negated_value_and_take_the_edit(world: SyntheticWorld) -> None:
    attrs = _attrs(world)
    for q in family_queries(world, "negation", 60, seed=2):
        ref = attrs[q.reference_ids[0]]
        (edited,) = q.changed
        negated = [a for a in ATTRIBUTES if a != edited and ref[a] in (q.negative or "").split()]
        assert len(negated) >= 1 and q.naive_text == f"{q.text} but not {q.negative}"
        want = set()
        for item_id, a in attrs.items():
            same_rest = sum(a[x] == ref[x] for x in ATTRIBUTES if x != edited) == 2  # all but the negated one
            if a[edited] == getattr(q.target, edited) != ref[edited] and same_rest and any(
                    a[n] != ref[n] for n in negated):
                want.add(item_id)
        assert set(q.target_ids) == want and want
        distractor = {**ref, edited: getattr(q.target, edited)}
        assert not any(attrs[i] == distractor for i in q.target_ids)  # the edit alone is not a hit


def test_two_references_each_give_the_target_one_attribute(world: SyntheticWorld) -> None:
    attrs = _attrs(world)
    for q in family_queries(world, "references", 60, seed=2):
        first, second = (attrs[r] for r in q.reference_ids)
        target = vars(q.target)
        assert {attrs[i] == target for i in q.target_ids} == {True} and len(q.target_ids) == world.instances
        from_first = [a for a in ATTRIBUTES if target[a] == first[a] != second[a]]
        from_second = [a for a in ATTRIBUTES if target[a] == second[a] != first[a]]
        assert len(from_first) == 1 and len(from_second) == 1
        (edited,) = q.changed
        assert target[edited] != first[edited] == second[edited]
        assert not set(q.reference_ids) & set(q.target_ids)


def test_families_are_deterministic_separate_and_leave_the_standard_queries_alone(world: SyntheticWorld) -> None:
    before = world.triplets(50, seed=2)
    runs = {f: family_queries(world, f, 400, seed=2) for f in FAMILIES}
    assert world.triplets(50, seed=2) == before
    assert all(len(v) == 400 for v in runs.values())
    assert family_queries(world, "negation", 20, seed=2) == runs["negation"][:20]
    assert family_queries(world, "negation", 20, seed=1) != runs["negation"][:20]
    standard = {(t.reference_id, t.text) for t in before}
    for f in ("feedback", "alphas"):
        assert not standard & {(q.reference_ids[0], q.text) for q in runs[f][:50]}
    assert [q.text for q in runs["feedback"][:20]] != [q.text for q in runs["alphas"][:20]]
    with pytest.raises(ValueError, match="negation"):
        family_queries(world, "nope", 1)


def test_simulated_feedback_marks_the_first_wrong_hit_and_a_hit_with_the_change(world: SyntheticWorld) -> None:
    q = family_queries(world, "feedback", 1, seed=2)[0]
    attrs = {it.id: it.attributes for it in world.gallery()}
    with_change = [i for i, a in attrs.items() if i not in q.target_ids
                   and all(getattr(a, c) == getattr(q.target, c) for c in q.changed)]
    without = [i for i, a in attrs.items() if any(getattr(a, c) != getattr(q.target, c) for c in q.changed)]
    ranked = [without[0], q.target_ids[0], with_change[0], without[1]]
    assert simulate_feedback(q, ranked, attrs) == ([q.target_ids[0]], [without[0]])
    ranked = [with_change[0], without[0], with_change[1]]
    assert simulate_feedback(q, ranked, attrs) == ([with_change[1]], [with_change[0]])
    assert simulate_feedback(q, list(q.target_ids), attrs) == ([q.target_ids[0]], [])


def test_the_dataset_serves_each_family_per_split(tmp_path) -> None:  # type: ignore[no-untyped-def]
    val = SyntheticDataset(tmp_path, "val", n_queries=7)
    test = SyntheticDataset(tmp_path, "test", n_queries=7)
    assert len(val.family("alphas")) == 7 and val.family("alphas") != test.family("alphas")
    assert len(test.family("negation", 3)) == 3
    with pytest.raises(ValueError, match="references"):
        val.family("bogus")
