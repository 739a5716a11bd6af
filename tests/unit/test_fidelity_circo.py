"""CIRCO metric edge cases against an independent re-implementation of the official ``compute_metrics``
(miccunifi/CIRCO ``src/evaluation.py``): membership with ``isin``, precision at each ground-truth position,
``AP@K = sum(precisions[:K]) / min(len(gt_img_ids), K)`` (repeated ground-truth ids counted in the length),
recall = hits of ``target_img_id`` in the top K. The evaluation server refuses rankings that repeat an id.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cir_milvus.errors import ConfigError
from cir_milvus.eval.datasets import CIRCODataset, CIRQuery
from cir_milvus.eval.metrics import circo_metrics

KS = (5, 10, 25, 50)


def official_circo(predictions: list[list[int]], gts: list[list[int]], targets: list[int]) -> dict[str, float]:
    aps: dict[int, list[float]] = {k: [] for k in KS}
    recalls: dict[int, list[float]] = {k: [] for k in KS}
    for pred, gt, target in zip(predictions, gts, targets):
        p = np.array(pred, dtype=int)
        labels = np.isin(p, gt)
        precisions = np.cumsum(labels, axis=0) * labels / np.arange(1, len(p) + 1)
        for k in KS:
            aps[k].append(float(np.sum(precisions[:k]) / min(len(gt), k)))
            recalls[k].append(float(np.sum((p == target)[:k])))
    out = {f"mAP@{k}": 100 * float(np.mean(aps[k])) for k in KS}
    out.update({f"R@{k}": 100 * float(np.mean(recalls[k])) for k in KS})
    return out


def _query(i: int, gt: list[int]) -> CIRQuery:
    return CIRQuery(str(i), "999999", ("is red",), tuple(str(g) for g in gt), None, None, None)


def test_repeated_ground_truth_ids_count_in_the_denominator() -> None:
    rng = np.random.default_rng(0)
    gts = [[1, 2, 2, 3], [7, 7], [4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16], [20, 21, 20, 21, 22, 23]]
    preds = []
    for gt in gts:
        others = [x for x in rng.permutation(200) + 100]
        ranking = others[:50]
        for pos, g in zip(rng.choice(30, size=len(set(gt)), replace=False), sorted(set(gt))):
            ranking[pos] = g
        preds.append([int(x) for x in ranking])
    want = official_circo(preds, gts, [g[0] for g in gts])
    got = circo_metrics([[str(x) for x in p] for p in preds], [_query(i, g) for i, g in enumerate(gts)])
    assert got == pytest.approx(want)
    dedup = circo_metrics([[str(x) for x in p] for p in preds],
                          [_query(i, list(dict.fromkeys(g))) for i, g in enumerate(gts)])
    assert dedup["mAP@5"] > got["mAP@5"]  # a set-based denominator would score higher


def test_a_ranking_with_a_repeated_id_is_refused() -> None:
    ranking = [str(i) for i in range(50)]
    ranking[7] = "3"
    with pytest.raises(ConfigError, match=r"repeats id '3' \(at rank 8\)"):
        circo_metrics([ranking], [_query(0, [3])])


def test_reader_keeps_repeated_ground_truth_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "annotations").mkdir()
    ann = [{"id": 0, "reference_img_id": 1, "target_img_id": 5, "relative_caption": "is red",
            "shared_concept": "a cat", "gt_img_ids": [5, 6, 6, 5]}]
    (tmp_path / "annotations" / "val.json").write_text(json.dumps(ann))
    ds = CIRCODataset(tmp_path, "val")
    assert ds.queries()[0].target_ids == ("5", "6", "6", "5")
