"""Writers and validators for the test-server submission files of CIRR and CIRCO.

Formats (from the CIRR ``Test-split_server.md`` and the CIRCO README / ``src/evaluation.py``):

* **CIRR** (http://cirr.cecs.anu.edu.au/): two JSON objects, one per metric. Each maps ``str(pairid)`` to the
  ranked ids and carries two extra entries, ``"version": "rc2"`` and ``"metric"``:
  ``"recall"`` with the top-50 of the whole gallery, and ``"recall_subset"`` with the top-3 of
  ``img_set.members``. The reference image is removed from both (as in SEARLE ``generate_test_submission.py``).
* **CIRCO** (https://circo.micc.unifi.it/): one JSON object mapping ``str(query id)`` to the top-50 COCO image
  ids; it must hold every test query, whose ids run from 0 to N-1. The reference is *not* removed. Ids are
  written as JSON ints, as in the README example (the server casts them with ``int``, so strings of digits
  pass too).

Example:
    >>> import tempfile, os
    >>> from cir_milvus.eval.datasets import CIRQuery
    >>> q = CIRQuery("0", "7", ("is red",), (), None, None)
    >>> path = write_circo_submission(os.path.join(tempfile.mkdtemp(), "circo.json"), [["1", "2"]], [q], top_k=2)
    >>> validate_circo_submission(path, [q], top_k=2)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cir_milvus.errors import ConfigError, DatasetError
from cir_milvus.eval.datasets import CIRQuery
from cir_milvus.eval.metrics import cirr_subset_rankings

__all__ = [
    "validate_circo_submission",
    "validate_cirr_submission",
    "write_circo_submission",
    "write_cirr_submission",
]

CIRR_VERSION = "rc2"
CIRR_TOP_K = 50
CIRR_SUBSET_K = 3
CIRCO_TOP_K = 50

CirrMetric = Literal["recall", "recall_subset"]


def _write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        json.dump(payload, f, sort_keys=True)
    return path


def _load(source: str | Path | Mapping[str, Any], what: str) -> tuple[Mapping[str, Any], str]:
    """The submission object and a label for messages (its path, or ``"<dict>"``)."""
    if isinstance(source, Mapping):
        return source, f"{what} <dict>"
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"{what}: file {path} does not exist")
    try:
        with path.open(encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{what}: {path} is not valid JSON ({e})") from e
    if not isinstance(payload, dict):
        raise DatasetError(f"{what}: {path} must hold a JSON object, got {type(payload).__name__}")
    return payload, f"{what} {path}"


def _is_int_string(key: str) -> bool:
    try:
        return str(int(key)) == key
    except ValueError:
        return False


def _check_keys(found: set[str], expected: set[str], label: str, unit: str) -> None:
    missing = sorted(expected - found, key=lambda s: (len(s), s))
    extra = sorted(found - expected, key=lambda s: (len(s), s))
    if missing:
        raise DatasetError(f"{label}: {len(missing)} {unit} missing (first: {missing[0]}); the server needs every "
                           f"query of the split")
    if extra:
        raise DatasetError(f"{label}: {len(extra)} unknown {unit} (first: {extra[0]})")


def _check_list(key: str, ids: Any, n: int, label: str) -> list[str]:
    if not isinstance(ids, list):
        raise DatasetError(f"{label}: entry {key!r} must be a list of ids, got {type(ids).__name__}")
    if len(ids) != n:
        raise DatasetError(f"{label}: entry {key!r} holds {len(ids)} ids, expected exactly {n}")
    as_str = [str(x) for x in ids]
    if len(set(as_str)) != len(as_str):
        raise DatasetError(f"{label}: entry {key!r} repeats an id")
    return as_str


# --------------------------------------------------------------------------------------------------------------------
# CIRR


def _cirr_pairid(query: CIRQuery) -> str:
    if not _is_int_string(query.query_id):
        raise ConfigError(f"CIRR pairid must be an integer string, got {query.query_id!r}")
    return query.query_id


def write_cirr_submission(path_prefix: str | Path, rankings: Sequence[Sequence[str]], queries: Sequence[CIRQuery], *,
                          subset_rankings: Sequence[Sequence[str]] | None = None, top_k: int = CIRR_TOP_K,
                          subset_k: int = CIRR_SUBSET_K) -> tuple[Path, Path]:
    """Write the two CIRR server files: ``{path_prefix}_recall.json`` and ``{path_prefix}_recall_subset.json``.

    Args:
        path_prefix: output path without suffix; parent folders are created.
        rankings: ranked gallery ids per query (whole ``test1`` gallery), best first.
        queries: the CIRR queries (``subset_ids`` set), aligned with ``rankings``.
        subset_rankings: optional rankings of each ``img_set``; by default read off ``rankings``.
        top_k: ids per query in the recall file (50 for the server).
        subset_k: ids per query in the subset file (3 for the server).

    Returns:
        ``(recall_path, recall_subset_path)``.

    Raises:
        ConfigError: mismatched lengths, rankings with fewer than ``top_k`` ids besides the reference, or too few
            subset members to fill ``subset_k``.
    """
    if len(rankings) != len(queries):
        raise ConfigError(f"got {len(rankings)} rankings for {len(queries)} queries")
    recall: dict[str, Any] = {"version": CIRR_VERSION, "metric": "recall"}
    for i, (ranking, q) in enumerate(zip(rankings, queries, strict=True)):
        kept = [x for x in ranking if x != q.reference_id]
        if len(kept) < top_k:
            raise ConfigError(f"ranking {i} (pair {q.query_id}) has {len(kept)} ids besides the reference; "
                              f"top_k={top_k} are needed")
        recall[_cirr_pairid(q)] = [str(x) for x in kept[:top_k]]
    source = rankings if subset_rankings is None else subset_rankings
    subset: dict[str, Any] = {"version": CIRR_VERSION, "metric": "recall_subset"}
    for i, (sub, q) in enumerate(zip(cirr_subset_rankings(source, queries, subset_k), queries, strict=True)):
        if len(sub) < subset_k:
            raise ConfigError(f"ranking {i} (pair {q.query_id}) yields {len(sub)} subset members; "
                              f"subset_k={subset_k} are needed")
        subset[_cirr_pairid(q)] = [str(x) for x in sub[:subset_k]]
    prefix = str(path_prefix)
    return (_write_json(Path(f"{prefix}_recall.json"), recall),
            _write_json(Path(f"{prefix}_recall_subset.json"), subset))


def validate_cirr_submission(source: str | Path | Mapping[str, Any], queries: Sequence[CIRQuery] | None = None, *,
                             metric: CirrMetric | None = None, top_k: int | None = None) -> None:
    """Check one CIRR submission file (either metric) before uploading it.

    Checks ``version == "rc2"``, the ``metric`` entry, integer pair ids, and exactly ``top_k`` distinct ids per
    pair. With ``queries``: the pair ids match the queries exactly, no list holds the reference, and subset lists
    hold only ``img_set`` members.

    Args:
        source: a path to the JSON file, or the loaded object.
        queries: optional CIRR queries of the split, for the cross-checks above.
        metric: the expected metric; by default taken from the file.
        top_k: ids per pair; by default 50 for ``recall`` and 3 for ``recall_subset``.

    Raises:
        DatasetError: the file is missing, not JSON, or breaks one of the checks; the message names the entry.
    """
    payload, label = _load(source, "CIRR submission")
    if payload.get("version") != CIRR_VERSION:
        raise DatasetError(f"{label}: 'version' must be {CIRR_VERSION!r}, got {payload.get('version')!r}")
    found_metric = payload.get("metric")
    if found_metric not in ("recall", "recall_subset"):
        raise DatasetError(f"{label}: 'metric' must be 'recall' or 'recall_subset', got {found_metric!r}")
    if metric is not None and found_metric != metric:
        raise DatasetError(f"{label}: expected metric {metric!r}, the file says {found_metric!r}")
    n = top_k if top_k is not None else (CIRR_TOP_K if found_metric == "recall" else CIRR_SUBSET_K)
    entries = {k: v for k, v in payload.items() if k not in ("version", "metric")}
    by_id = {q.query_id: q for q in queries} if queries is not None else {}
    for key, ids in entries.items():
        if not _is_int_string(key):
            raise DatasetError(f"{label}: key {key!r} is not a CIRR pairid (an integer string)")
        as_str = _check_list(key, ids, n, label)
        q = by_id.get(key)
        if q is None:
            continue
        if q.reference_id in as_str:
            raise DatasetError(f"{label}: entry {key!r} contains the reference image {q.reference_id!r}, which the "
                               f"CIRR protocol removes")
        if found_metric == "recall_subset" and q.subset_ids is not None:
            outside = [x for x in as_str if x not in set(q.subset_ids)]
            if outside:
                raise DatasetError(f"{label}: entry {key!r} lists {outside[0]!r}, which is not in its img_set")
    if queries is not None:
        _check_keys(set(entries), set(by_id), label, "pair ids")


# --------------------------------------------------------------------------------------------------------------------
# CIRCO


def _circo_id(image_id: str) -> int | str:
    return int(image_id) if _is_int_string(image_id) else image_id


def write_circo_submission(path: str | Path, rankings: Sequence[Sequence[str]], queries: Sequence[CIRQuery], *,
                           top_k: int = CIRCO_TOP_K) -> Path:
    """Write the CIRCO server file ``{query_id: [top-50 image ids]}`` (reference kept, ids as JSON ints).

    Args:
        path: output JSON path; parent folders are created.
        rankings: ranked COCO image ids per query, best first.
        queries: the CIRCO queries, aligned with ``rankings``.
        top_k: ids per query (50 for the server).

    Returns:
        The written path.

    Raises:
        ConfigError: mismatched lengths or a ranking shorter than ``top_k``.
    """
    if len(rankings) != len(queries):
        raise ConfigError(f"got {len(rankings)} rankings for {len(queries)} queries")
    payload: dict[str, list[int | str]] = {}
    for i, (ranking, q) in enumerate(zip(rankings, queries, strict=True)):
        if len(ranking) < top_k:
            raise ConfigError(f"ranking {i} (query {q.query_id}) has {len(ranking)} ids; top_k={top_k} are needed")
        payload[q.query_id] = [_circo_id(str(x)) for x in ranking[:top_k]]
    return _write_json(Path(path), payload)


def validate_circo_submission(source: str | Path | Mapping[str, Any], queries: Sequence[CIRQuery] | None = None, *,
                              top_k: int = CIRCO_TOP_K) -> None:
    """Check a CIRCO submission file before uploading it.

    Checks integer query ids running from 0 to N-1 (the server asserts this), and exactly ``top_k`` distinct
    integer image ids per query. With ``queries``: the keys equal the query ids.

    Args:
        source: a path to the JSON file, or the loaded object.
        queries: optional CIRCO queries of the split.
        top_k: ids per query.

    Raises:
        DatasetError: the file is missing, not JSON, or breaks one of the checks; the message names the entry.
    """
    payload, label = _load(source, "CIRCO submission")
    keys = [str(k) for k in payload]
    for key in keys:
        if not _is_int_string(key):
            raise DatasetError(f"{label}: key {key!r} is not a CIRCO query id (an integer string)")
        ids = _check_list(key, payload[key], top_k, label)
        bad = next((x for x in ids if not _is_int_string(x)), None)
        if bad is not None:
            raise DatasetError(f"{label}: entry {key!r} holds {bad!r}, which is not a COCO image id")
    if queries is not None:
        _check_keys(set(keys), {q.query_id for q in queries}, label, "query ids")
    if sorted(int(k) for k in keys) != list(range(len(keys))):
        raise DatasetError(f"{label}: query ids must be exactly 0..{len(keys) - 1}, as the CIRCO server requires")
