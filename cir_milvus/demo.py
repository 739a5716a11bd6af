"""``cir-milvus demo``: the whole product offline — synthetic gallery → Milvus Lite → composed queries → recall.

1. Render the synthetic gallery (1,024 PNGs) and ingest it into a Milvus Lite file with the shipped demo model.
2. Tune each composer's alpha on the validation queries (a different seed from the test queries).
3. Run the test queries through Milvus search for every composer, print Recall@1/5/10 (and exact search R@1),
   and say whether slerp beats the image-only and text-only baselines by the required margin.
   Then one line per query family (negation, two references, feedback, fused alphas) against its naive
   alternative (:mod:`cir_milvus.eval.families`).
4. Write a contact sheet PNG of a few queries with their top hits, a plot of recall against alpha
   (``demo_alpha.png``, when matplotlib is installed) and a JSON file with every figure.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from cir_milvus.encoders.capabilities import HasBundleHeads, HasPrecision
from cir_milvus.errors import BackendUnavailableError
from cir_milvus.eval.families import family_results, format_family_line
from cir_milvus.eval.runner import EvalResult, evaluate, format_table, ingest_dataset, sweep_alpha, write_json
from cir_milvus.eval.synthetic import SyntheticDataset

__all__ = ["run_demo"]

log = logging.getLogger(__name__)

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MARGIN = 15.0


def _demo_encoder(model: str | None, device: str | None) -> tuple[Any, dict[str, Any], str]:
    """The encoder, its pseudo-token heads by kind, and a label.

    ``model`` (``bundle:DIR``, an ONNX bundle of the demo model) runs on onnxruntime with the bundle's own heads; by
    default the shipped demo model runs on torch with its shipped heads when torch is installed, else the bundle
    shipped in the package (:func:`cir_milvus.models.demo.demo_bundle_path`) on onnxruntime.

    Raises:
        BackendUnavailableError: neither torch nor onnxruntime is installed.
    """
    from cir_milvus._optional import available
    from cir_milvus.models.demo import DEMO_MODEL, DEMO_WEIGHTS, demo_bundle_path, demo_heads

    if model is None and not (available("torch") and available("open_clip")):
        if not available("onnxruntime"):
            raise BackendUnavailableError(
                "the demo runs on onnxruntime (pip install 'cir_milvus[onnx]') or on torch (pip install "
                "'cir_milvus[torch]'); neither is installed")
        model = f"bundle:{demo_bundle_path()}"
    if model is not None:
        from cir_milvus.encoders import create_encoder

        encoder = create_encoder(model, None, device=device)
        heads = {h.kind: h for h in encoder.heads.values()} if isinstance(encoder, HasBundleHeads) else {}
        return encoder, heads, model
    from cir_milvus.encoders.torch import TorchEncoder

    encoder = TorchEncoder(DEMO_MODEL, DEMO_WEIGHTS, device=device)
    return encoder, {k: str(p) for k, p in demo_heads().items()}, f"{DEMO_MODEL}/{DEMO_WEIGHTS}"


def run_demo(
    workdir: str | Path = "cir-demo",
    *,
    n_queries: int = 400,
    device: str | None = None,
    progress: bool = True,
    grid_rows: int = 6,
    print_fn: Any = print,
    model: str | None = None,
) -> dict[str, Any]:
    """Run the offline demo and return its figures (also written to ``workdir/demo_results.json``).

    Args:
        workdir: where the gallery PNGs, the Milvus Lite file and the outputs go.
        n_queries: test queries (the validation split has the same size).
        device: encoder device (default CUDA when available).
        progress: progress bars.
        grid_rows: queries shown in the contact sheet.
        print_fn: where the report goes.
        model: ``bundle:DIR``, an ONNX bundle of the demo model (with its heads), to run on onnxruntime; default
            the demo model on torch when installed, else the bundle shipped in the package.

    Raises:
        BackendUnavailableError: neither torch nor onnxruntime is installed.
    """
    from cir_milvus.collection import CIRCollection

    t0 = time.perf_counter()
    encoder, heads, label = _demo_encoder(model, device)  # first: a missing backend is said before any work
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    test = SyntheticDataset(workdir / "world", split="test", n_queries=n_queries, progress=progress)
    val = SyntheticDataset(workdir / "world", split="val", n_queries=n_queries, progress=progress)
    backend = encoder.recipe.get("backend", "?")
    print_fn(f"model {label} ({backend}) on {encoder.device} "
             f"({encoder.precision if isinstance(encoder, HasPrecision) else 'fp32'}), dim {encoder.dim}")
    col = CIRCollection.create(str(workdir / "demo.db"), "synthetic", encoder=encoder, if_exists="open")
    added = ingest_dataset(test, col, progress=progress, metadata=test.attributes())
    print_fn(f"gallery: {added.summary()}; collection holds {len(col)} images")
    col.wait_for_index()

    plan: list[tuple[str, dict[str, Any], bool]] = [("image", {}, False), ("text", {}, False), ("sum", {}, False),
                                                     ("slerp", {}, True)]
    for kind, path in heads.items():
        plan.append((kind, {"head": path}, False))
    if heads:  # Slerp between the reference image and the pseudo-token query of the first shipped head
        base = next(k for k in ("lincir", "pic2word", "searle") if k in heads)
        plan.append(("combined", {"base": base, "head": heads[base]}, True))

    results: list[EvalResult] = []
    tuned: dict[str, float] = {}
    sweeps: dict[str, dict[float, dict[str, float]]] = {}
    for name, params, tune in plan:
        alpha = None
        if tune:
            alpha, swept = sweep_alpha(val, col, ALPHAS, composer=name, composer_params=params, progress=False,
                                       official=False)
            tuned[name] = alpha
            sweeps[name] = {a: r.milvus for a, r in zip(ALPHAS, swept)}
        results.append(evaluate(test, col, composer=name, alpha=alpha, composer_params=params, ingest=False,
                                progress=False, official=False))  # a product collection: recorded as such
    by_name = {r.config["composer"]["name"]: r for r in results}
    print_fn("")
    print_fn(f"Synthetic world, test split: {n_queries} composed queries over {len(col)} images through Milvus "
             f"Lite (HNSW, IP); a hit = any image of the target attribute combination; the reference is excluded.")
    if tuned:
        print_fn("alpha tuned on the validation split: "
                 + ", ".join(f"{k}={v:.1f}" for k, v in tuned.items()))
    print_fn(format_table(results, keys=["R@1", "R@5", "R@10"]))
    s = by_name["slerp"].milvus["R@1"]
    gap_i = s - by_name["image"].milvus["R@1"]
    gap_t = s - by_name["text"].milvus["R@1"]
    ok = gap_i >= MARGIN and gap_t >= MARGIN
    print_fn(f"slerp R@1 {s:.1f}: {gap_i:+.1f} points over image-only, {gap_t:+.1f} over text-only "
             f"(target ≥ {MARGIN:.0f}): {'PASS' if ok else 'FAIL'}")
    pseudo_ok = {}
    for kind in heads:
        p = by_name[kind].milvus["R@1"]
        pseudo_ok[kind] = p > by_name["image"].milvus["R@1"] and p > by_name["text"].milvus["R@1"]
        print_fn(f"{kind} R@1 {p:.1f} vs image {by_name['image'].milvus['R@1']:.1f} / text "
                 f"{by_name['text'].milvus['R@1']:.1f}: {'beats both' if pseudo_ok[kind] else 'does NOT beat both'}")

    families = family_results(col, val, test, composer="slerp", alpha=tuned["slerp"])
    print_fn("query families (slerp; the feature's R@10 against its naive alternatives, 2-standard-error verdict):")
    for fam in families.values():
        print_fn("  " + format_family_line(fam))

    grid = _contact_sheet(test, col, tuned.get("slerp"), workdir / "demo_queries.png", grid_rows)
    print_fn(f"contact sheet: {grid}")
    plot = _alpha_plot(sweeps, results, tuned, workdir / "demo_alpha.png")
    if plot is not None:
        print_fn(f"recall against alpha (validation split): {plot}")
    out_json = write_json(workdir / "demo_results.json", results,
                          {"tuned_alpha": tuned, "slerp_margin_pass": ok, "pseudo_beats_baselines": pseudo_ok,
                           "validation_sweeps": {k: {str(a): m for a, m in v.items()} for k, v in sweeps.items()},
                           "query_families": {k: f.to_dict() for k, f in families.items()},
                           "seconds": round(time.perf_counter() - t0, 1)})
    print_fn(f"figures: {out_json}  ({time.perf_counter() - t0:.0f} s)")
    col.close()
    return json.loads(out_json.read_text())


def _alpha_plot(sweeps: dict[str, dict[float, dict[str, float]]], results: list[EvalResult],
                tuned: dict[str, float], path: Path) -> Path | None:
    """R@1 / R@10 against alpha on the validation split (the tuned alphas marked), with the test R@1 of the other
    composers as dashed lines."""
    from cir_milvus._optional import available

    if not available("matplotlib"):
        log.warning("no alpha plot: matplotlib is not installed (pip install 'cir_milvus[plot]')")
        return None
    from cir_milvus.viz import plot_recall_vs_alpha

    others = {r.config["composer"]["name"]: r.milvus for r in results
              if r.config["composer"]["name"] not in sweeps}
    return plot_recall_vs_alpha(sweeps, path, metrics=("R@1", "R@10"), baselines=others, tuned=tuned,
                                title="Synthetic world, Milvus recall against alpha on the validation split "
                                      "(dashed lines: composers without alpha, test split)")


def _contact_sheet(ds: SyntheticDataset, col: Any, alpha: float | None, path: Path, n: int) -> Path:
    from PIL import Image

    from cir_milvus.viz import SheetRow, contact_sheet

    queries = ds.queries()[:n]
    paths = {g.id: g.path for g in ds.corpus()}
    hits = col.search_batch(None, [q.captions[0] for q in queries], k=5, composer="slerp", alpha=alpha,
                            ref_ids=[q.reference_id for q in queries])
    rows = []
    for q, hs in zip(queries, hits):
        rows.append(SheetRow(
            reference=Image.open(paths[q.reference_id]), text=q.captions[0],
            hits=[(Image.open(paths[h.id]), f"{h.id}\n{h.score:.3f}", h.id in q.target_ids) for h in hs]))
    return contact_sheet(rows, path)
