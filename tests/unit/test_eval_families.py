"""Scoring of the query families: recall, standard errors and the paired "beats by 2 SE" verdict, by hand."""

from __future__ import annotations

import math
import statistics

import pytest

from cir_milvus.eval.families import format_family_line, score_arms
from cir_milvus.synthetic import Attributes
from cir_milvus.synthetic_families import FamilyQuery

T = Attributes("circle", "red", "small", "black")


def _q(i: int) -> FamilyQuery:
    return FamilyQuery("negation", (f"r{i}",), "make it red", (f"t{i}",), ("colour",), T, "large", "x")


def test_recall_standard_errors_and_verdict_match_a_hand_computation() -> None:
    qs = [_q(i) for i in range(8)]
    # the feature finds the target at rank 1 for queries 0-5, at rank 12 (outside R@10) for 6-7
    feature = [[f"t{i}", "a", "b"] if i < 6 else [f"z{j}" for j in range(11)] + [f"t{i}"] for i in range(8)]
    # the naive arm finds it at rank 3 for queries 0-1 only
    naive = [["a", "b", f"t{i}"] if i < 2 else ["a"] for i in range(8)]
    res = score_arms({"feat": feature, "naive": naive}, qs, "negation", "slerp", "feat")
    assert res.arms["feat"]["R@1"] == 75.0 and res.arms["feat"]["R@10"] == 75.0
    assert res.arms["naive"]["R@1"] == 0.0 and res.arms["naive"]["R@10"] == 25.0
    se = statistics.stdev([1.0] * 6 + [0.0] * 2) / math.sqrt(8) * 100
    assert res.arms["feat"]["R@10_se"] == pytest.approx(se, abs=0.01)
    diffs = [1.0 if i < 6 else 0.0 for i in range(8)]
    diffs = [d - (1.0 if i < 2 else 0.0) for i, d in enumerate(diffs)]  # per-query feature minus naive
    d_se = statistics.stdev(diffs) / math.sqrt(8) * 100
    assert res.versus["naive"]["dR@10"] == 50.0
    assert res.versus["naive"]["dR@10_se"] == pytest.approx(d_se, abs=0.01)
    assert res.versus["naive"]["beats"] is (50.0 > 2 * d_se)
    line = format_family_line(res)
    assert "feat R@10 75.0" in line and "naive 25.0" in line


def test_a_tie_does_not_beat() -> None:
    qs = [_q(i) for i in range(4)]
    same = [[f"t{i}"] if i % 2 else ["x"] for i in range(4)]
    res = score_arms({"feat": same, "naive": same}, qs, "negation", "slerp", "feat")
    assert res.versus["naive"]["dR@10"] == 0.0 and res.versus["naive"]["beats"] is False
    assert "does NOT beat" in format_family_line(res)
