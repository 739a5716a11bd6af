"""Official CIRR / FashionIQ / CIRCO metrics and submission files, checked against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cir_milvus.errors import ConfigError, DatasetError
from cir_milvus.eval import (
    CIRQuery,
    CIRRDataset,
    circo_metrics,
    cirr_metrics,
    cirr_subset_ranking,
    fashioniq_metrics,
    make_miniature,
    recall_at_k,
    validate_circo_submission,
    validate_cirr_submission,
    write_circo_submission,
    write_cirr_submission,
)

FILL = [f"f{i}" for i in range(100)]  # filler gallery ids that are never relevant


def ranking(head: list[str], n: int = 60) -> list[str]:
    """``head`` followed by fillers, ``n`` ids in all."""
    return head + FILL[: n - len(head)]


def cirr_q(qid: str, ref: str, target: str | None, members: tuple[str, ...]) -> CIRQuery:
    return CIRQuery(qid, ref, ("make it red",), (target,) if target else (), members, None)


# ------------------------------------------------------------------------------------------------------- generic


def test_recall_at_k_any_positive_and_exclusion() -> None:
    rankings = [["ref", "a", "b", "c"], ["x", "y", "p2", "p1"]]
    positives = [{"a"}, {"p1", "p2"}]
    # Without exclusion: query 0 hits at rank 2, query 1 at rank 3 (first of its positives).
    assert recall_at_k(rankings, positives, ks=(1, 2, 3)) == {"R@1": 0.0, "R@2": 50.0, "R@3": 100.0}
    # Excluding "ref" moves query 0's hit to rank 1.
    assert recall_at_k(rankings, positives, ks=(1, 3), exclude=["ref", None]) == {"R@1": 50.0, "R@3": 100.0}


def test_recall_at_k_errors() -> None:
    with pytest.raises(ConfigError, match="rankings"):
        recall_at_k([["a"]], [{"a"}, {"b"}], ks=(1,))
    with pytest.raises(ConfigError, match="largest K is 5"):
        recall_at_k([["a", "b"]], [{"a"}], ks=(1, 5))
    with pytest.raises(ConfigError, match="ks"):
        recall_at_k([["a"]], [{"a"}], ks=(0,))
    # A ranking that covers a tiny gallery is accepted with gallery_size.
    assert recall_at_k([["a", "b"]], [{"b"}], ks=(1, 5), gallery_size=2) == {"R@1": 0.0, "R@5": 100.0}


# ---------------------------------------------------------------------------------------------------------- CIRR

MEMBERS_A = ("ra", "ta", "a1", "a2", "a3", "a4")
MEMBERS_B = ("b1", "rb", "tb", "b2", "b3", "b4")
MEMBERS_C = ("c1", "c2", "rc", "c3", "c4", "tc")


def cirr_case() -> tuple[list[list[str]], list[CIRQuery]]:
    queries = [cirr_q("1", "ra", "ta", MEMBERS_A), cirr_q("2", "rb", "tb", MEMBERS_B),
               cirr_q("3", "rc", "tc", MEMBERS_C)]
    rankings = [
        # A: the reference is the top hit; once removed the target is rank 1 (global and subset).
        ranking(["ra", "ta", "a1", "a2", "a3", "a4"]),
        # B: reference inside the subset at rank 2. Removed: global [b1, tb, ...] -> target rank 2;
        #    subset [b1, tb, ...] -> rank 2 (it would be rank 3 if the reference stayed).
        ranking(["b1", "rb", "tb", "b2", "b3", "b4"]),
        # C: the four other members lead; the target comes after 51 non-reference ids -> every recall misses.
        ["c1", "c2", "c3", "c4", "rc"] + FILL[:47] + ["tc"],
    ]
    return rankings, queries


def test_cirr_metrics_by_hand() -> None:
    rankings, queries = cirr_case()
    got = cirr_metrics(rankings, queries)
    third, two_thirds = 100 / 3, 200 / 3
    expected = {
        "R@1": third,  # A only
        "R@5": two_thirds,  # A, B
        "R@10": two_thirds,
        "R@50": two_thirds,  # C's target is the 52nd non-reference id
        "Rsubset@1": third,  # A
        "Rsubset@2": two_thirds,  # A, B (B needs the reference removed)
        "Rsubset@3": two_thirds,  # C's target is 5th of 5
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_cirr_subset_ranking_drops_reference_and_keeps_order() -> None:
    _, queries = cirr_case()
    assert cirr_subset_ranking(["x", "b3", "rb", "tb", "y", "b1"], queries[1]) == ["b3", "tb", "b1"]


def test_cirr_reference_needs_one_extra_id() -> None:
    rankings, queries = cirr_case()
    # 50 ids with the reference among them leave only 49 usable ones.
    with pytest.raises(ConfigError, match="49 usable ids"):
        cirr_metrics([r[:50] for r in rankings[:1]], queries[:1])


def test_cirr_subset_needs_enough_members_or_subset_rankings() -> None:
    q = cirr_q("9", "ra", "ta", MEMBERS_A)
    flat = ["ra"] + FILL[:55]  # no subset member at all
    with pytest.raises(ConfigError, match="subset"):
        cirr_metrics([flat], [q])
    got = cirr_metrics([flat], [q], subset_rankings=[["a1", "ra", "ta", "a2"]])
    assert got["R@50"] == 0.0
    assert (got["Rsubset@1"], got["Rsubset@2"]) == (0.0, 100.0)


def test_cirr_errors() -> None:
    rankings, queries = cirr_case()
    with pytest.raises(ConfigError, match="3 rankings for 2"):
        cirr_metrics(rankings, queries[:2])
    unlabeled = [cirr_q("1", "ra", None, MEMBERS_A)]
    with pytest.raises(ConfigError, match="submission"):
        cirr_metrics(rankings[:1], unlabeled)


def test_cirr_metrics_on_miniature(tmp_path: Path) -> None:
    ds = CIRRDataset(make_miniature("cirr", tmp_path), "val")
    ids = [g.id for g in ds.corpus()]
    queries = ds.queries()
    # An oracle ranking: target first, then the rest of the gallery.
    perfect = [[q.target_ids[0]] + [i for i in ids if i != q.target_ids[0]] for q in queries]
    got = cirr_metrics(perfect, queries, gallery_size=len(ids))
    assert all(v == 100.0 for v in got.values())


# ---------------------------------------------------------------------------------------------------- FashionIQ


def fiq_q(cat: str, i: int, ref: str, target: str) -> CIRQuery:
    return CIRQuery(f"{cat}-{i}", ref, ("is red", "is shorter"), (target,), None, cat)


def test_fashioniq_metrics_by_hand() -> None:
    queries = [fiq_q("dress", 0, "r0", "t0"), fiq_q("dress", 1, "r1", "t1"),
               fiq_q("shirt", 0, "r2", "t2"), fiq_q("shirt", 1, "r3", "t3"), fiq_q("shirt", 2, "r4", "t4")]
    rankings = [
        ranking(["x", "y", "t0"]),  # dress: rank 3 -> R@10, R@50
        ranking(FILL[:20] + ["t1"]),  # dress: rank 21 -> R@50 only
        ranking(["r2"] + [f"g{i}" for i in range(9)] + ["t2"]),  # shirt: reference kept -> rank 11: R@50 only
        ranking([]),  # shirt: miss
        ranking([]),  # shirt: miss
    ]
    got = fashioniq_metrics(rankings, queries)
    expected = {
        "dress/R@10": 50.0, "dress/R@50": 100.0,
        "shirt/R@10": 0.0, "shirt/R@50": 100 / 3,
        "avg/R@10": 25.0, "avg/R@50": (100.0 + 100 / 3) / 2,  # mean over categories, not over queries (60.0)
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_fashioniq_metrics_errors() -> None:
    q = CIRQuery("x", "r", ("a", "b"), ("t",), None, None)
    with pytest.raises(ConfigError, match="category"):
        fashioniq_metrics([ranking([])], [q])
    with pytest.raises(ConfigError, match="largest K is 50"):
        fashioniq_metrics([["t"] * 10], [fiq_q("dress", 0, "r", "t")])
    assert fashioniq_metrics([["a", "t"]], [fiq_q("dress", 0, "r", "t")], gallery_size={"dress": 2})[
        "dress/R@10"] == 100.0


# -------------------------------------------------------------------------------------------------------- CIRCO


def circo_q(qid: str, ref: str, gts: tuple[str, ...]) -> CIRQuery:
    return CIRQuery(qid, ref, ("is red",), gts, None, None, "a cat")


def test_circo_metrics_by_hand() -> None:
    many = tuple(f"g{i}" for i in range(1, 8))  # 7 ground truths > K=5
    few = ("h1", "h2")  # 2 ground truths < K=5
    queries = [circo_q("0", "ref0", many), circo_q("1", "ref1", few)]
    r0 = ranking(["g1", "ref0", "g2", "g3", "x", "x2", "x3", "x4", "x5", "g4"], 50)
    r1 = ranking(["ref1", "y", "h2", "y2", "y3", "y4", "h1"], 50)  # reference top hit, kept
    got = circo_metrics([r0, r1], queries)

    # Query 0: relevant at ranks 1, 3, 4, 10.  P@1=1, P@3=2/3, P@4=3/4, P@10=4/10.
    ap0_5 = (1 + 2 / 3 + 3 / 4) / 5  # min(5, 7) = 5
    ap0_10 = (1 + 2 / 3 + 3 / 4 + 4 / 10) / 7  # min(10, 7) = 7
    # Query 1: relevant at ranks 3 and 7 (the reference at rank 1 is not removed).  P@3=1/3, P@7=2/7.
    ap1_5 = (1 / 3) / 2  # min(5, 2) = 2
    ap1_10 = (1 / 3 + 2 / 7) / 2
    expected = {
        "mAP@5": 100 * (ap0_5 + ap1_5) / 2,
        "mAP@10": 100 * (ap0_10 + ap1_10) / 2,
        "mAP@25": 100 * (ap0_10 + ap1_10) / 2,
        "mAP@50": 100 * (ap0_10 + ap1_10) / 2,
        # Recall uses the first ground truth only: g1 at rank 1, h1 at rank 7.
        "R@5": 50.0, "R@10": 100.0, "R@25": 100.0, "R@50": 100.0,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert got["mAP@5"] == pytest.approx(32.5)


def test_circo_metrics_errors() -> None:
    q = circo_q("0", "r", ("a",))
    with pytest.raises(ConfigError, match="largest K is 50"):
        circo_metrics([ranking(["a"], 49)], [q])
    with pytest.raises(ConfigError, match="submission"):
        circo_metrics([ranking([])], [circo_q("0", "r", ())])
    assert circo_metrics([["x", "a"]], [q], gallery_size=2)["mAP@5"] == pytest.approx(50.0)


# -------------------------------------------------------------------------------------------------- submissions


def test_cirr_submission_roundtrip(tmp_path: Path) -> None:
    rankings, queries = cirr_case()
    recall_path, subset_path = write_cirr_submission(tmp_path / "sub" / "cirr", rankings, queries)
    assert recall_path.name == "cirr_recall.json" and subset_path.name == "cirr_recall_subset.json"
    recall = json.loads(recall_path.read_text())
    subset = json.loads(subset_path.read_text())
    assert (recall["version"], recall["metric"]) == ("rc2", "recall")
    assert (subset["version"], subset["metric"]) == ("rc2", "recall_subset")
    assert recall["1"] == ["ta", "a1", "a2", "a3", "a4"] + FILL[:45]  # reference removed, 50 ids
    assert subset["2"] == ["b1", "tb", "b2"]  # reference removed from the img_set
    assert subset["3"] == ["c1", "c2", "c3"]
    validate_cirr_submission(recall_path, queries)
    validate_cirr_submission(subset_path, queries, metric="recall_subset")


def test_cirr_submission_validation_errors(tmp_path: Path) -> None:
    rankings, queries = cirr_case()
    recall_path, subset_path = write_cirr_submission(tmp_path / "cirr", rankings, queries)
    recall = json.loads(recall_path.read_text())

    short = dict(recall, **{"1": recall["1"][:49]})
    with pytest.raises(DatasetError, match="'1' holds 49 ids, expected exactly 50"):
        validate_cirr_submission(short)
    with pytest.raises(DatasetError, match="version"):
        validate_cirr_submission(dict(recall, version="rc1"))
    with pytest.raises(DatasetError, match="reference"):
        validate_cirr_submission(dict(recall, **{"1": ["ra"] + recall["1"][:49]}), queries)
    missing = {k: v for k, v in recall.items() if k != "3"}
    with pytest.raises(DatasetError, match="missing"):
        validate_cirr_submission(missing, queries)
    with pytest.raises(DatasetError, match="expected metric"):
        validate_cirr_submission(subset_path, metric="recall")
    with pytest.raises(DatasetError, match="does not exist"):
        validate_cirr_submission(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="top_k=50"):
        write_cirr_submission(tmp_path / "x", [r[:40] for r in rankings], queries)


def test_circo_submission_roundtrip_and_errors(tmp_path: Path) -> None:
    queries = [circo_q("0", "5", ()), circo_q("1", "6", ())]
    rankings = [[str(1000 + i) for i in range(60)], [str(2000 + i) for i in range(60)]]
    path = write_circo_submission(tmp_path / "circo.json", rankings, queries)
    payload = json.loads(path.read_text())
    assert sorted(payload) == ["0", "1"]
    assert payload["0"] == list(range(1000, 1050))  # top-50, ints as in the official example
    validate_circo_submission(path, queries)

    with pytest.raises(DatasetError, match="holds 49 ids, expected exactly 50"):
        validate_circo_submission(dict(payload, **{"1": payload["1"][:49]}))
    with pytest.raises(DatasetError, match="repeats"):
        validate_circo_submission(dict(payload, **{"1": [7] * 50}))
    with pytest.raises(DatasetError, match=r"0\.\.1"):
        validate_circo_submission({"0": payload["0"], "2": payload["1"]})
    with pytest.raises(DatasetError, match="missing"):
        validate_circo_submission({"0": payload["0"]}, queries)
    with pytest.raises(ConfigError, match="top_k=50"):
        write_circo_submission(tmp_path / "c.json", [r[:10] for r in rankings], queries)
