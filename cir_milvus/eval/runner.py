"""The evaluation runner: gallery → Milvus (cached, resumable), queries → composer → Milvus ANN and exact search,
scored with the official protocol of each data set, side by side.

Fidelity defaults (README "Fidelity"): the gallery and reference images must be loaded and decoded as the official
data sets do: :func:`evaluate` refuses a collection whose encoder was not built with ``image_loading="official"`` and
``decode="exact"`` (``cir-milvus eval`` builds it so) unless called with ``official=False``, which scores it anyway and
records the deviations in the result (:func:`official_deviations`). Pseudo-token composers inject as their official
evaluation does (:func:`official_composer_params`: LinCIR overwrites every ``$``), and LinCIR's images use
``hf_clip`` preprocessing (its head's default).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cir_milvus.encoders.capabilities import BundleHeadLike, HasPreprocessConfig
from cir_milvus.errors import ConfigError
from cir_milvus.eval.datasets import CIRCODataset, CIRDataset, CIRQuery, CIRRDataset, FashionIQDataset
from cir_milvus.eval.metrics import circo_metrics, cirr_metrics, fashioniq_metrics, recall_at_k
from cir_milvus.heads import Head
from cir_milvus.preprocess import PreprocessConfig, recorded_decode

if TYPE_CHECKING:
    from cir_milvus.collection import CIRCollection

__all__ = [
    "EvalResult",
    "evaluate",
    "evaluate_fashioniq",
    "format_table",
    "ingest_dataset",
    "official_composer_params",
    "official_deviations",
    "score",
    "sweep_alpha",
]

SYNTHETIC_KS = (1, 5, 10, 50)


@dataclass
class EvalResult:
    """Scores of one composer on one data set, through Milvus and by exact search on the same vectors.

    Attributes:
        milvus: metrics from the Milvus ANN rankings.
        exact: metrics from exact (brute-force inner product) rankings of the same stored vectors.
        config: everything needed to reproduce the numbers (model, checksum, composer, alpha, template,
            preprocessing, index parameters, package version), and whether the images took the official path
            (``"official"``: True, False with ``official=False``, None when the encoder cannot be checked;
            ``"deviations"``: how they differ).
        rankings: the Milvus rankings (query id → ranked ids, reference included), for submission files.
        exact_rankings: the exact-search rankings, same layout.
        subset_rankings: CIRR only: the Milvus ranking of each query's ``img_set`` (filtered search), for the
            ``recall_subset`` submission file.

    On an unlabeled split (CIRR ``test1``, CIRCO ``test``) ``milvus`` and ``exact`` are empty: the rankings go to
    the evaluation server instead.
    """

    dataset: str
    split: str
    milvus: dict[str, float]
    exact: dict[str, float]
    config: dict[str, Any]
    n_queries: int
    gallery_size: int
    seconds: dict[str, float] = field(default_factory=dict)
    rankings: dict[str, list[str]] = field(default_factory=dict, repr=False)
    exact_rankings: dict[str, list[str]] = field(default_factory=dict, repr=False)
    subset_rankings: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def scored(self) -> bool:
        """Whether metrics were computed (false on unlabeled test splits)."""
        return bool(self.milvus)

    @property
    def official(self) -> bool | None:
        """Whether the images were loaded and decoded as the official code does (``None``: not checkable)."""
        value = self.config.get("official")
        return None if value is None else bool(value)

    def table(self) -> str:
        lines = [f"{self.dataset}/{self.split}  composer={self.config['composer']['name']} "
                 f"{_params_str(self.config['composer'].get('params', {}))}  queries={self.n_queries} "
                 f"gallery={self.gallery_size}",
                 f"{'metric':<14}{'Milvus':>9}{'exact':>9}{'diff':>8}"]
        if not self.scored:
            lines[1] = "unlabeled split: not scored locally (submit the rankings to the evaluation server)"
        for key, v in self.milvus.items():
            e = self.exact.get(key, float("nan"))
            lines.append(f"{key:<14}{v:>9.2f}{e:>9.2f}{v - e:>+8.2f}")
        if self.official is False:
            lines.append("not the official path: " + "; ".join(self.config.get("deviations", [])))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "milvus": self.milvus, "exact": self.exact,
                "n_queries": self.n_queries, "gallery_size": self.gallery_size, "seconds": self.seconds,
                "config": self.config}


def _params_str(params: Mapping[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        if isinstance(v, dict):
            v = v.get("kind") or v.get("source") or "…"
        parts.append(f"{k}={v}")
    return " ".join(parts)


def official_composer_params(comp: Any) -> dict[str, Any]:
    """Composer parameters the method's official evaluation uses where the library default differs.

    LinCIR's evaluation overwrites every ``$`` of the prompt with the pseudo token (``slots="all"``); SEARLE and
    Pic2Word overwrite the template's (the library default). Other composers need nothing.
    """
    from cir_milvus.composers.pseudo import OFFICIAL_SLOT_RULE, composer_head

    head = composer_head(comp)  # the combined composer's is its inner pseudo-token composer's
    kind = head.kind if isinstance(head, (Head, BundleHeadLike)) else None
    rule = OFFICIAL_SLOT_RULE.get(str(kind))
    return {"slots": rule} if rule is not None and rule != "template" else {}


OFFICIAL_LOADING = "official"
"""How the research code loads benchmark images (``PIL.Image.open``, no EXIF rotation, no compositing)."""
OFFICIAL_DECODE = "exact"
"""How the research code decodes and resizes them (the reference transform, no reduced-size JPEG decode)."""


def official_deviations(col: CIRCollection) -> list[str] | None:
    """How a collection loads or decodes images other than the official evaluation code does.

    Read from the gallery's recorded preprocessing (the collection's recipe) and from the encoder that serves its
    reference images (``encoder.preprocess_config``). ``[]`` means the official path; ``None`` means the encoder
    declares no image preprocessing to check (a ``FakeEncoder`` or a plugin backend).

    Example:
        >>> official_deviations(col)  # doctest: +SKIP
        ["the gallery was decoded with decode='reduce', not 'exact' (the reference transform)"]
    """
    out: list[str] = []
    stored = col.recipe.encoder.get("preprocess")
    if not isinstance(col.encoder, HasPreprocessConfig):
        return None
    live = col.encoder.preprocess_config
    sides = [("the encoder", live.loading, live.decode)]
    if isinstance(stored, Mapping) and ("size" in stored or "mode" in stored):
        sides.insert(0, ("the gallery", str(stored.get("loading") or PreprocessConfig.loading), recorded_decode(stored)))
    for who, loading, decode in sides:
        if loading != OFFICIAL_LOADING:
            out.append(f"{who} loads images with image_loading={loading!r} (EXIF rotation, transparency on white), "
                       f"not {OFFICIAL_LOADING!r} (Image.open, as the research code)")
        if decode != OFFICIAL_DECODE:
            out.append(f"{who} decodes images with decode={decode!r}, not {OFFICIAL_DECODE!r} (the reference "
                       "transform)")
    return out


def _official_config(col: CIRCollection, official: bool) -> dict[str, Any]:
    """Refuse a collection off the official path unless ``official`` is False; what the result records about it."""
    deviations = official_deviations(col)
    if deviations is None:
        return {"official": None, "deviations": ["the encoder declares no image preprocessing; not checked"]}
    if deviations and official:
        raise ConfigError(
            f"evaluate() scores benchmarks with images loaded and decoded as the official code does, but collection "
            f"{col.name!r}: {'; '.join(deviations)}. Build the collection with an encoder made the official way, "
            f"e.g. create_encoder(model, pretrained, image_loading={OFFICIAL_LOADING!r}, decode={OFFICIAL_DECODE!r}),"
            " or pass official=False to score this one anyway (the result records it in config['official'])")
    return {"official": not deviations, "deviations": deviations}


def ingest_dataset(dataset: CIRDataset, col: CIRCollection, *, batch_size: int = 64, progress: bool = True,
                   metadata: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """Store the data set's gallery (ids = the data set's image ids). Already stored ids are not re-encoded."""
    corpus = dataset.corpus()
    extra = {"category": dataset.category} if isinstance(dataset, FashionIQDataset) else {}
    mds = [{**extra, **dict((metadata or {}).get(g.id, {}))} for g in corpus]
    return col.add([g.path for g in corpus], ids=[g.id for g in corpus], metadata=mds, batch_size=batch_size,
                   progress=progress)


def _query_text(q: CIRQuery) -> str | tuple[str, ...]:
    return q.captions[0] if len(q.captions) == 1 else tuple(q.captions)


def score(dataset: CIRDataset, queries: Sequence[CIRQuery], rankings: Sequence[Sequence[str]], gallery_size: int,
          subset_rankings: Sequence[Sequence[str]] | None = None) -> dict[str, float]:
    """The data set's official metrics for ranked lists (best first)."""
    if isinstance(dataset, CIRRDataset):
        return cirr_metrics(rankings, queries, subset_rankings=subset_rankings, gallery_size=gallery_size)
    if isinstance(dataset, FashionIQDataset):
        return fashioniq_metrics(rankings, queries, gallery_size=gallery_size)
    if isinstance(dataset, CIRCODataset):
        return circo_metrics(rankings, queries, gallery_size=gallery_size)
    ks = tuple(k for k in SYNTHETIC_KS if k <= gallery_size - 1) or (1,)
    return recall_at_k(rankings, [q.target_ids for q in queries], ks,
                       exclude=[q.reference_id for q in queries] if dataset.remove_reference else None,
                       gallery_size=gallery_size)


def _gallery_matrix(col: CIRCollection, ids: Sequence[str]) -> np.ndarray:
    vecs: dict[Any, np.ndarray] = {}
    for s in range(0, len(ids), 512):
        vecs.update(col.get_vectors(ids[s : s + 512]))
    missing = [i for i in ids if i not in vecs]
    if missing:
        raise ConfigError(f"{len(missing)} gallery images are not stored (first: {missing[0]!r}); ingest first")
    g = np.stack([vecs[i] for i in ids])
    return (g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def evaluate(
    dataset: CIRDataset,
    col: CIRCollection,
    *,
    composer: str | None = None,
    alpha: float | None = None,
    composer_params: Mapping[str, Any] | None = None,
    ingest: bool = True,
    batch_size: int = 64,
    progress: bool = True,
    filter: str | None = None,
    filter_params: Mapping[str, Any] | None = None,
    official: bool = True,
) -> EvalResult:
    """Run a data set through a collection: ingest (resumable), compose, Milvus search and exact search, score.

    Args:
        dataset: a CIRR / FashionIQ (one category) / CIRCO / synthetic data set.
        col: the collection holding (or receiving) the gallery.
        composer: composer name (default: the collection's recipe).
        alpha: composer alpha override.
        composer_params: other composer parameters (``head``, ``template``...).
        ingest: store the gallery first (already stored images are skipped).
        batch_size: encoder batch size.
        progress: progress bars.
        filter: restrict the Milvus search (e.g. one FashionIQ category); exact search uses the same gallery.
        filter_params: values of the filter's placeholders.
        official: refuse a collection whose images are not loaded and decoded as the official code does
            (:func:`official_deviations`); ``False`` scores it anyway and records ``config["official"] = False``
            with the deviations.

    Raises:
        ConfigError: the collection is off the official path and ``official`` is True; the data set has no queries.
    """
    path = _official_config(col, official)
    t0 = time.perf_counter()
    if ingest:
        ingest_dataset(dataset, col, batch_size=batch_size, progress=progress)
    t_ingest = time.perf_counter() - t0
    corpus = dataset.corpus()
    ids = [g.id for g in corpus]
    queries = dataset.queries()
    if not queries:
        raise ConfigError(f"{dataset!r} has no queries")
    params = dict(composer_params or {})
    comp = col.composer(composer, alpha=alpha, **params)
    rule = {k: v for k, v in official_composer_params(comp).items() if k not in params}
    if rule:  # the method's own evaluation rule unless the caller chose otherwise
        params.update(rule)
        comp = col.composer(composer, alpha=alpha, **params)
    gallery_mode = col.encoder.recipe.get("preprocess", {}).get("mode", "clip")
    t1 = time.perf_counter()
    texts = [_query_text(q) for q in queries]
    if comp.needs_image and comp.preprocess not in (None, gallery_mode):
        paths = {g.id: g.path for g in corpus}
        refs = [paths[q.reference_id] for q in queries]
        qv = np.concatenate([col.compose(refs[s : s + batch_size], texts[s : s + batch_size], composer=comp.name,
                                         alpha=alpha, **params) for s in range(0, len(queries), batch_size)])
    else:
        qv = np.concatenate([col.compose(None, texts[s : s + batch_size],
                                         ref_ids=[q.reference_id for q in queries[s : s + batch_size]],
                                         composer=comp.name, alpha=alpha, **params)
                             for s in range(0, len(queries), batch_size)])
    t_compose = time.perf_counter() - t1
    k = min(len(ids), 51)
    t2 = time.perf_counter()
    # ids are all the scoring reads: no source or metadata travels back (most of a search's time on Lite)
    hits = col.search_vectors(qv, k=k, filter=filter, filter_params=filter_params, output_fields=[])
    t_search = time.perf_counter() - t2
    milvus_rank = [[str(h.id) for h in row] for row in hits]  # eval galleries use string ids
    g = _gallery_matrix(col, ids)
    sims = qv @ g.T  # [Q, G]
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    exact_rank = [[ids[j] for j in row] for row in order]
    sub_m = sub_e = None
    if isinstance(dataset, CIRRDataset):
        sub_m, sub_e = _cirr_subsets(col, qv, queries, ids, sims)
    labeled = all(q.target_ids for q in queries)
    milvus = score(dataset, queries, milvus_rank, len(ids), sub_m) if labeled else {}
    exact = score(dataset, queries, exact_rank, len(ids), sub_e) if labeled else {}
    enc = col.encoder.recipe
    config = {
        "dataset": dataset.name, "split": dataset.split, "model": enc.get("model"),
        "pretrained": enc.get("pretrained"), "weights_sha256": enc.get("weights_sha256"),
        "backend": enc.get("backend"), "preprocess": enc.get("preprocess"), "composer": comp.config(),
        "index": col.recipe.index, "metric": col.recipe.metric, "package_version": _version(), **path,
    }
    return EvalResult(
        dataset=dataset.name, split=dataset.split, milvus=milvus, exact=exact, config=config,
        n_queries=len(queries), gallery_size=len(ids),
        seconds={"ingest": round(t_ingest, 2), "compose": round(t_compose, 2), "milvus_search": round(t_search, 2)},
        rankings={q.query_id: r for q, r in zip(queries, milvus_rank, strict=True)},
        exact_rankings={q.query_id: r for q, r in zip(queries, exact_rank, strict=True)},
        subset_rankings={q.query_id: r for q, r in zip(queries, sub_m, strict=True)} if sub_m is not None else {},
    )


def evaluate_fashioniq(
    datasets: Mapping[str, FashionIQDataset] | Sequence[FashionIQDataset],
    col: CIRCollection,
    *,
    composer: str | None = None,
    alpha: float | None = None,
    composer_params: Mapping[str, Any] | None = None,
    ingest: bool = True,
    batch_size: int = 64,
    progress: bool = True,
    official: bool = True,
) -> EvalResult:
    """FashionIQ over several categories stored in ONE collection, scored like the papers.

    Each category's gallery is ingested with ``metadata["category"]`` and searched with a Milvus filter on it, so
    every query ranks only its own category. The per-category Milvus and exact rankings are then scored together by
    :func:`~cir_milvus.eval.metrics.fashioniq_metrics` (per-category R@10/R@50 and their plain mean).

    Args:
        datasets: ``{category: FashionIQDataset}`` (as from :func:`~cir_milvus.eval.datasets.fashioniq_datasets`)
            or a sequence of them, all of one split.
        col, composer, alpha, composer_params, ingest, batch_size, progress, official: as for :func:`evaluate`.

    Returns:
        One combined :class:`EvalResult` (``dataset="fashioniq"``); ``config["categories"]`` lists the categories.

    Raises:
        ConfigError: no data sets, or data sets of different splits.
    """
    dss = list(datasets.values()) if isinstance(datasets, Mapping) else list(datasets)
    if not dss:
        raise ConfigError("evaluate_fashioniq needs at least one FashionIQ category")
    splits = {d.split for d in dss}
    if len(splits) != 1:
        raise ConfigError(f"FashionIQ categories must share one split, got {sorted(splits)}")
    parts = [evaluate(d, col, composer=composer, alpha=alpha, composer_params=composer_params, ingest=ingest,
                      batch_size=batch_size, progress=progress, filter='metadata["category"] == {c}',
                      filter_params={"c": d.category}, official=official) for d in dss]
    queries = [q for d in dss for q in d.queries()]
    sizes = {d.category: p.gallery_size for d, p in zip(dss, parts, strict=True)}
    rankings = {k: v for p in parts for k, v in p.rankings.items()}
    exact_rankings = {k: v for p in parts for k, v in p.exact_rankings.items()}
    labeled = all(q.target_ids for q in queries)
    milvus = fashioniq_metrics([rankings[q.query_id] for q in queries], queries, gallery_size=sizes) if labeled else {}
    exact = (fashioniq_metrics([exact_rankings[q.query_id] for q in queries], queries, gallery_size=sizes)
             if labeled else {})
    seconds = {k: round(sum(p.seconds.get(k, 0.0) for p in parts), 2) for k in parts[0].seconds}
    return EvalResult(
        dataset="fashioniq", split=dss[0].split, milvus=milvus, exact=exact,
        config={**parts[0].config, "categories": [d.category for d in dss]},
        n_queries=len(queries), gallery_size=sum(sizes.values()), seconds=seconds, rankings=rankings,
        exact_rankings=exact_rankings,
    )


def _evaluate_any(dataset: CIRDataset | Mapping[str, FashionIQDataset] | Sequence[FashionIQDataset],
                  col: CIRCollection, **kw: Any) -> EvalResult:
    if isinstance(dataset, CIRDataset):
        return evaluate(dataset, col, **kw)
    return evaluate_fashioniq(dataset, col, **kw)


def _cirr_subsets(col: CIRCollection, qv: np.ndarray, queries: Sequence[CIRQuery], ids: Sequence[str],
                  sims: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
    """Recall_subset rankings: Milvus searches filtered to each img_set; exact from the same scores."""
    pos = {i: j for j, i in enumerate(ids)}
    sub_m: list[list[str]] = []
    sub_e: list[list[str]] = []
    for i, q in enumerate(queries):
        members = [m for m in (q.subset_ids or ()) if m in pos]
        if not members:
            sub_m.append([])
            sub_e.append([])
            continue
        hits = col.search_vectors(qv[i : i + 1], k=len(members), filter="id in {ids}", filter_params={"ids": members})
        sub_m.append([str(h.id) for h in hits[0]])
        sub_e.append(sorted(members, key=lambda m: -sims[i, pos[m]]))
    return sub_m, sub_e


def sweep_alpha(dataset: CIRDataset | Mapping[str, FashionIQDataset] | Sequence[FashionIQDataset],
                col: CIRCollection, alphas: Sequence[float], *, composer: str = "slerp", metric: str = "R@1",
                composer_params: Mapping[str, Any] | None = None, progress: bool = False,
                write_default: bool = False, official: bool = True) -> tuple[float, list[EvalResult]]:
    """Evaluate ``alphas`` on a validation split and return the best (by the Milvus ``metric``) and all results.

    With ``write_default`` the best alpha becomes the collection's default composer setting. ``dataset`` may also
    be several FashionIQ categories (scored together by :func:`evaluate_fashioniq`; use ``metric="avg/R@10"``).
    ``official`` is :func:`evaluate`'s.
    """
    if not alphas:
        raise ConfigError("sweep_alpha needs at least one alpha")
    results = []
    for i, a in enumerate(alphas):
        results.append(_evaluate_any(dataset, col, composer=composer, alpha=a, composer_params=composer_params,
                                     ingest=(i == 0), progress=progress, official=official))
    if metric not in results[0].milvus:
        raise ConfigError(f"metric {metric!r} not reported for {results[0].dataset}/{results[0].split}; choose from "
                          f"{list(results[0].milvus) or 'none (unlabeled split: sweep on a labeled one)'}")
    best_i = max(range(len(alphas)), key=lambda i: (results[i].milvus[metric], -abs(alphas[i] - 0.8)))
    best = float(alphas[best_i])
    if write_default:
        col.set_default_composer(composer, **{**results[best_i].config["composer"]["params"], "alpha": best})
    return best, results


def format_table(results: Sequence[EvalResult], keys: Sequence[str] | None = None) -> str:
    """One row per result (composer), Milvus figures with the exact R@1 beside them."""
    if not results:
        return ""
    keys = list(keys or results[0].milvus)
    widths = [max(9, len(k) + 1) for k in keys]
    cols = list(zip(keys, widths, strict=True))
    head = f"{'composer':<26}" + "".join(f"{k:>{w}}" for k, w in cols) + f"{'exact ' + keys[0]:>12}"
    lines = [head, "-" * len(head)]
    for r in results:
        c = r.config["composer"]
        params = c.get("params", {})
        label = c["name"] + (f"({params['base']})" if isinstance(params.get("base"), str) else "")
        label += f" a={params['alpha']:.2f}" if "alpha" in params else ""
        lines.append(f"{label:<26}" + "".join(f"{r.milvus.get(k, float('nan')):>{w}.1f}" for k, w in cols)
                     + f"{r.exact.get(keys[0], float('nan')):>12.1f}")
    return "\n".join(lines)


def write_json(path: str | Path, results: Sequence[EvalResult], extra: Mapping[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**dict(extra or {}), "results": [r.to_json() for r in results]}, indent=2) + "\n")
    return path


def _version() -> str:
    from cir_milvus import __version__

    return __version__
