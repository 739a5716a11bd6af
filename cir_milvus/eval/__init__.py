"""Evaluation on the public zero-shot CIR benchmarks: data set loaders, official metrics, submission files, and the
runner that scores a collection.

Everything here is numpy/Pillow only: no torch and no Milvus client of its own. Rankings (ranked gallery ids per
query) come from any search backend; :mod:`cir_milvus.eval.metrics` scores them with the published protocols and
:mod:`cir_milvus.eval.submission` writes the files the CIRR and CIRCO test servers accept. :func:`evaluate` runs a
data set through a collection (Milvus and exact search side by side) and refuses a collection whose images are not
loaded and decoded as the official code does unless ``official=False`` (:func:`official_deviations` says how it
differs). :func:`make_miniature` writes tiny copies of the three data sets for offline tests.
"""

from __future__ import annotations

from cir_milvus.eval.datasets import (
    FASHIONIQ_CATEGORIES,
    CIRCODataset,
    CIRDataset,
    CIRQuery,
    CIRRDataset,
    FashionIQDataset,
    GalleryImage,
    fashioniq_datasets,
)
from cir_milvus.eval.metrics import (
    circo_metrics,
    cirr_metrics,
    cirr_subset_ranking,
    cirr_subset_rankings,
    fashioniq_metrics,
    recall_at_k,
)
from cir_milvus.eval.miniature import make_miniature
from cir_milvus.eval.runner import (
    EvalResult,
    evaluate,
    evaluate_fashioniq,
    ingest_dataset,
    official_deviations,
    sweep_alpha,
)
from cir_milvus.eval.submission import (
    validate_circo_submission,
    validate_cirr_submission,
    write_circo_submission,
    write_cirr_submission,
)

__all__ = [
    "CIRCODataset",
    "CIRDataset",
    "CIRQuery",
    "CIRRDataset",
    "EvalResult",
    "FASHIONIQ_CATEGORIES",
    "FashionIQDataset",
    "GalleryImage",
    "circo_metrics",
    "cirr_metrics",
    "cirr_subset_ranking",
    "cirr_subset_rankings",
    "evaluate",
    "evaluate_fashioniq",
    "fashioniq_datasets",
    "fashioniq_metrics",
    "ingest_dataset",
    "make_miniature",
    "official_deviations",
    "recall_at_k",
    "sweep_alpha",
    "validate_circo_submission",
    "validate_cirr_submission",
    "write_circo_submission",
    "write_cirr_submission",
]
