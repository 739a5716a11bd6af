"""``cir-milvus eval``: score a composer on CIRR / FashionIQ / CIRCO / the synthetic world through Milvus.

The gallery is stored once in a collection (default name ``"{dataset}_{split}"`` in ``./cir.db``, with a
``_targetpad`` suffix for SEARLE, whose protocol preprocesses the gallery with targetpad) and re-used on later runs:
the runner's ingest skips ids that are already stored. Every labeled split is scored twice, on the
Milvus ANN rankings and on exact (brute-force) rankings of the same stored vectors, and both are printed side by
side. Unlabeled test splits (CIRR ``test1``, CIRCO ``test``) are not scored: with ``--submission DIR`` their
rankings are written as the files the evaluation servers accept, and validated before their paths are printed.

Example::

    cir-milvus eval cirr --root /data/cirr --split val --model ViT-L-14 --pretrained openai \\
        --composer searle --head /ckpt/SEARLE_ViT-L14.pt --output results/searle_cirr_val.json
    cir-milvus eval circo --root /data/circo --split test --model ViT-L-14 --pretrained openai \\
        --composer slerp --alpha 0.8 --submission out/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cir_milvus.cli.composing import composer_request
from cir_milvus.cli.models import creation_model, pretrained_for
from cir_milvus.cli.options import (
    add_composer_args,
    add_connection_args,
    add_json,
    add_model_args,
    check_uri,
    out,
    show,
)
from cir_milvus.errors import BackendUnavailableError, ConfigError, RecipeMismatchError
from cir_milvus.eval.datasets import CIRCODataset, CIRDataset, CIRRDataset, FashionIQDataset, fashioniq_datasets
from cir_milvus.eval.runner import (
    EvalResult,
    evaluate,
    evaluate_fashioniq,
    format_table,
    official_deviations,
    sweep_alpha,
    write_json,
)
from cir_milvus.eval.submission import (
    CIRCO_TOP_K,
    CIRR_SUBSET_K,
    CIRR_TOP_K,
    validate_circo_submission,
    validate_cirr_submission,
    write_circo_submission,
    write_cirr_submission,
)

__all__ = [
    "SWEEP_METRICS",
    "add_parser",
    "gallery_preprocess",
    "load_datasets",
    "parse_alphas",
    "plot_sweep",
    "run_eval_command",
    "write_submission",
]

DEFAULT_COLLECTION = "images"
#: the Milvus metric a ``--sweep`` maximises on each data set
SWEEP_METRICS: dict[str, str] = {"cirr": "R@1", "fashioniq": "avg/R@10", "circo": "mAP@10", "synthetic": "R@1"}

Datasets = CIRDataset | dict[str, FashionIQDataset]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``cir-milvus eval`` to the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "eval", help="score a composer on CIRR / FashionIQ / CIRCO / the synthetic world",
        description=(__doc__ or "").split("Example::")[0].split("\n", 2)[-1].strip())
    p.add_argument("dataset", choices=["cirr", "fashioniq", "circo", "synthetic"], help="data set")
    p.add_argument("--root", type=Path, required=True, help="data set root folder (its official layout)")
    p.add_argument("--split", default="val", help="split to score (default val; CIRR test1, CIRCO test)")
    add_connection_args(p, collection_default=DEFAULT_COLLECTION,
                        collection_help="collection caching the gallery (default: DATASET_SPLIT, e.g. cirr_val, "
                                        "with a _targetpad suffix for searle)")
    add_model_args(p)
    add_composer_args(p, "the composer scored (default slerp)", composer_default="slerp")
    p.add_argument("--sweep", default=None, help="comma-separated alphas to sweep (reports the best)")
    p.add_argument("--plot", type=Path, default=None,
                   help="with --sweep: write a PNG of R@K against alpha here (default: next to --output, as .png; "
                        "needs matplotlib: pip install 'cir_milvus[plot]')")
    p.add_argument("--write-default", action="store_true", help="store the best swept alpha in the recipe")
    p.add_argument("--output", type=Path, default=None, help="write results JSON here")
    p.add_argument("--submission", type=Path, default=None, help="write test-server submission file(s) here")
    add_json(p, "the results (what --output writes)")
    p.set_defaults(func=run_eval_command)
    return p


def load_datasets(name: str, root: str | Path, split: str) -> tuple[Datasets, str]:
    """The data set(s) of a ``cir-milvus eval`` run and the canonical split name.

    Args:
        name: ``"cirr"``, ``"fashioniq"``, ``"circo"`` or ``"synthetic"``.
        root: the data set folder in its official layout.
        split: split name (CIRR's ``"test"`` is read as ``"test1"``).

    Returns:
        ``(dataset, split)``; for FashionIQ the dataset is ``{category: FashionIQDataset}`` (all three).

    Raises:
        ConfigError: unknown name or split.
        DatasetError: annotation files are missing or malformed.
    """
    if name == "cirr":
        cirr = CIRRDataset(root, split)
        return cirr, cirr.split
    if name == "fashioniq":
        return fashioniq_datasets(root, split), split
    if name == "circo":
        return CIRCODataset(root, split), split
    if name == "synthetic":
        from cir_milvus.eval.synthetic import SPLIT_SEEDS, SyntheticDataset

        if split not in SPLIT_SEEDS:
            raise ConfigError(f"synthetic split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
        return SyntheticDataset(root, split), split
    raise ConfigError(f"unknown data set {name!r}; choose cirr, fashioniq, circo or synthetic")


def parse_alphas(text: str) -> list[float]:
    """``"0.5,0.6,0.7"`` → ``[0.5, 0.6, 0.7]``.

    Raises:
        ConfigError: empty, not numbers, or outside [0, 1].
    """
    try:
        alphas = [float(a) for a in text.split(",") if a.strip()]
    except ValueError as e:
        raise ConfigError(f"--sweep needs comma-separated numbers such as 0.5,0.6,0.7; got {text!r}") from e
    if not alphas:
        raise ConfigError(f"--sweep needs at least one alpha, got {text!r}")
    bad = [a for a in alphas if not 0.0 <= a <= 1.0]
    if bad:
        raise ConfigError(f"--sweep alphas must lie in [0, 1], got {bad[0]}")
    return alphas


def _labeled(ds: Datasets) -> bool:
    return all(d.labeled for d in ds.values()) if isinstance(ds, dict) else ds.labeled


def _composer_params(args: argparse.Namespace) -> dict[str, Any]:
    composer, params = composer_request(args)
    args.composer = composer or args.composer
    params.pop("alpha", None)  # passed on its own (a --sweep replaces it)
    return params


def gallery_preprocess(composer: str, composer_params: dict[str, Any]) -> str:
    """The gallery preprocessing a composer's protocol uses: SEARLE's ``targetpad``, LinCIR's ``hf_clip``, else
    ``clip``.

    SEARLE encodes gallery and reference images with targetpad (its README: plain CLIP preprocessing does not
    reproduce the paper); LinCIR (and RTD, evaluated with LinCIR's code) uses Hugging Face's
    ``CLIPImageProcessor`` (floored crop offset); Pic2Word and Slerp use CLIP's resize + centre crop.
    """
    from cir_milvus.composers.base import get_composer

    return get_composer(composer, **composer_params).preprocess or "clip"


def _encoder_kwargs(args: argparse.Namespace, preprocess: str) -> dict[str, Any]:
    """Encoder options of an eval: benchmark images are decoded as the official data sets do (no EXIF rotation, no
    compositing) and resized with the reference transform (``decode="exact"``: the library default for new
    collections is ``"reduce"``), with the gallery preprocessing of the composer's protocol."""
    kw: dict[str, Any] = {"device": args.device, "image_loading": "official", "decode": "exact"}
    if preprocess != "clip":
        kw["preprocess"] = preprocess
    if getattr(args, "text_weights", None):
        kw["text_weights"] = args.text_weights
    if getattr(args, "precision", None) is not None:
        kw["precision"] = args.precision
    return kw


def _open_or_create(args: argparse.Namespace, name: str, composer_params: dict[str, Any], preprocess: str,
                    encoder: Any = None) -> Any:
    """Open the cached collection (its recipe must match ``--model``) or create it with the eval's composer.

    The encoder (``encoder``, or one built from ``--model``) uses :func:`_encoder_kwargs`; an existing collection
    opened without ``--model`` keeps the encoder of its recipe.
    """
    from cir_milvus.cli.options import is_lite
    from cir_milvus.collection import CIRCollection, ComposerSpec, EncoderSpec, connect
    from cir_milvus.encoders.base import create_encoder

    enc_kwargs = _encoder_kwargs(args, preprocess)
    db = connect(args.uri, token=args.token, timeout=args.timeout)
    # a Lite file that is not there yet is not created to find out; the check releases the file
    if not (is_lite(args.uri) and not Path(args.uri).expanduser().exists()) and db.has_collection(name):
        if encoder is None and args.model is not None:
            encoder = create_encoder(args.model, pretrained_for(args.model, args.pretrained), **enc_kwargs)
        try:
            col = CIRCollection.open(db, name, encoder=encoder or EncoderSpec(
                device=args.device, precision=getattr(args, "precision", None),
                text_weights=getattr(args, "text_weights", None)))
        except RecipeMismatchError as e:
            raise RecipeMismatchError(f"{e} (or pass --collection NAME to cache this gallery separately)") from e
        deviations = official_deviations(col)
        if deviations:  # the collection's modes win on open: refuse rather than score a non-reference gallery
            col.close()
            raise ConfigError(f"collection {name!r} is off the official path ({'; '.join(deviations)}), but eval "
                              "scores galleries loaded and decoded as the official code does; pass --collection NAME "
                              "to build one")
        return col
    model, pretrained = creation_model(args)
    return CIRCollection.create(db, name, encoder=encoder or create_encoder(model, pretrained, **enc_kwargs),
                                composer=ComposerSpec(args.composer, alpha=args.alpha if not args.sweep else None,
                                                      params=composer_params or {}))


def _bundle_encoder(args: argparse.Namespace, params: dict[str, Any]) -> Any:
    """With ``--model bundle:DIR`` and ``--head NAME`` of a head inside the bundle: the bundle's encoder, with that
    head swapped into ``params`` (so the composer's protocol is known before the gallery is made); else ``None``."""
    head = params.get("head")
    if not (args.model or "").startswith("bundle:") or not isinstance(head, str) or head.startswith("hf-hub:") \
            or Path(head).exists():
        return None
    from cir_milvus.cli.composing import resolve_bundle_head
    from cir_milvus.encoders.base import create_encoder

    encoder = create_encoder(args.model, None, **_encoder_kwargs(args, "clip"))
    resolve_bundle_head(encoder, args.composer, params)
    return encoder


def plot_sweep(results: list[EvalResult], alphas: list[float], path: str | Path, composer: str,
               title: str = "", best: float | None = None) -> Path:
    """PNG of the Milvus recall of a ``--sweep`` against alpha (every R@K the data set reports; ``best`` marked).

    Raises:
        BackendUnavailableError: matplotlib is not installed (``pip install 'cir_milvus[plot]'``).
    """
    from cir_milvus.viz import plot_recall_vs_alpha

    names = list(results[0].milvus)
    metrics = ([m for m in names if m.startswith("avg/")] or [m for m in names if m.startswith(("R@", "mAP@"))]
               or names)
    sweep = {composer: {a: r.milvus for a, r in zip(alphas, results)}}
    return plot_recall_vs_alpha(sweep, path, metrics=metrics[:4], title=f"{title}: Milvus recall against alpha",
                                tuned={composer: best} if best is not None else None)


def write_submission(result: EvalResult, ds: CIRDataset, out_dir: str | Path) -> list[Path]:
    """Write and validate the server file(s) of an unlabeled CIRR / CIRCO split; returns their paths.

    The servers take the top-50 ids per query (CIRR also the top-3 of each ``img_set``). A gallery smaller than
    that (the miniature test copies) gets every id it has, ``min(50, gallery - 1)`` for CIRR (reference removed)
    and ``min(50, gallery)`` for CIRCO, and is validated against that same length; real splits always get 50.

    Raises:
        ConfigError: the data set has no evaluation server.
        DatasetError: a written file fails validation.
    """
    out = Path(out_dir)
    queries = ds.queries()
    rankings = [result.rankings[q.query_id] for q in queries]
    if isinstance(ds, CIRRDataset):
        top_k = min(CIRR_TOP_K, result.gallery_size - 1)
        subsets = [result.subset_rankings[q.query_id] for q in queries] if result.subset_rankings else None
        recall, subset = write_cirr_submission(out / f"cirr_{ds.split}", rankings, queries, subset_rankings=subsets,
                                               top_k=top_k)
        validate_cirr_submission(recall, queries, metric="recall", top_k=top_k)
        validate_cirr_submission(subset, queries, metric="recall_subset", top_k=CIRR_SUBSET_K)
        return [recall, subset]
    if isinstance(ds, CIRCODataset):
        top_k = min(CIRCO_TOP_K, result.gallery_size)
        path = write_circo_submission(out / f"circo_{ds.split}.json", rankings, queries, top_k=top_k)
        validate_circo_submission(path, queries, top_k=top_k)
        return [path]
    raise ConfigError(f"{ds.name} has no evaluation server; submission files exist for CIRR test1 and CIRCO test")


def _run_config(args: argparse.Namespace, result: EvalResult, collection: str) -> dict[str, Any]:
    """The full configuration written to ``--output``: the runner's config plus the command's arguments."""
    comp = result.config.get("composer", {})
    return {
        **result.config,
        "dataset": args.dataset, "split": result.split, "alpha": comp.get("params", {}).get("alpha"),
        "root": str(args.root), "uri": args.uri, "collection": collection, "head": args.head,
        "template": args.template, "sweep": args.sweep,
    }


def _check_args(args: argparse.Namespace, labeled: bool, split: str) -> list[float] | None:
    """The sweep's alphas, after refusing flag combinations the split cannot honour."""
    alphas = parse_alphas(args.sweep) if args.sweep else None
    if alphas is not None and not labeled:
        raise ConfigError(f"--sweep needs a labeled split to score; {args.dataset}/{split} has no ground truth "
                          f"(sweep on --split val, then evaluate test with --alpha)")
    if args.write_default and alphas is None:
        raise ConfigError("--write-default stores the best alpha of a --sweep; pass --sweep too")
    if args.plot is not None:  # asked for by name: refused now rather than skipped after the sweep
        from cir_milvus._optional import require

        require("matplotlib", purpose="eval --plot")
    if args.submission is not None and args.dataset not in ("cirr", "circo"):
        raise ConfigError(f"--submission is for the CIRR and CIRCO test servers; {args.dataset} is scored locally")
    if getattr(args, "decode", None) not in (None, "exact"):
        raise ConfigError(f"eval decodes benchmark images exactly as the official code does; drop --decode "
                          f"{args.decode} (it is an ingest speed option)")
    return alphas


def _sweep(args: argparse.Namespace, ds: Datasets, col: Any, alphas: list[float], params: dict[str, Any],
           split: str, name: str) -> tuple[EvalResult, list[EvalResult], float]:
    progress = sys.stderr.isatty() and not args.json
    best, results = sweep_alpha(ds, col, alphas, composer=args.composer, metric=SWEEP_METRICS[args.dataset],
                                composer_params=params, progress=progress, write_default=args.write_default)
    show(args, format_table(results))
    show(args, f"best alpha {best:.2f} by Milvus {SWEEP_METRICS[args.dataset]}")
    if args.write_default:
        out(args, f"stored composer {args.composer} alpha={best:.2f} as the default of collection {name!r}")
    plot = args.plot or (args.output.with_suffix(".png") if args.output is not None else None)
    if plot is None:
        out(args, "pass --plot FILE.png (or --output) for a plot of recall against alpha")
    else:
        try:
            out(args, f"plot: {plot_sweep(results, alphas, plot, args.composer, f'{args.dataset} {split}', best)}")
        except BackendUnavailableError as e:
            out(args, f"no plot: {e}")
    return results[alphas.index(best)], results, best


def _submit(args: argparse.Namespace, ds: Datasets, result: EvalResult, labeled: bool, split: str) -> list[Path]:
    written: list[Path] = []
    if not labeled:
        if args.submission is not None and isinstance(ds, CIRDataset):
            written = write_submission(result, ds, args.submission)
            for p in written:
                out(args, f"submission (validated): {p}")
        elif args.dataset in ("cirr", "circo"):
            out(args, f"pass --submission DIR to write the {args.dataset} server file(s) for this split")
    elif args.submission is not None:
        out(args, f"note: --submission ignored: {args.dataset}/{split} is labeled and scored locally")
    return written


def run_eval_command(args: argparse.Namespace) -> int:
    """Run ``cir-milvus eval`` (see the module docstring); returns the exit code.

    Raises:
        CIRError: bad arguments, missing data set files, recipe mismatches (reported by the CLI as ``error: ...``).
    """
    params = _composer_params(args)
    check_uri(args.uri)
    ds, split = load_datasets(args.dataset, args.root, args.split)
    labeled = _labeled(ds)
    alphas = _check_args(args, labeled, split)
    encoder = _bundle_encoder(args, params)
    preprocess = gallery_preprocess(args.composer, params)
    name = args.collection
    if name == DEFAULT_COLLECTION:
        name = f"{args.dataset}_{split}" + (f"_{preprocess}" if preprocess != "clip" else "")
    col = _open_or_create(args, name, params, preprocess, encoder)
    try:
        before = len(col)
        best: float | None = None
        if alphas is not None:
            result, results, best = _sweep(args, ds, col, alphas, params, split, name)
        else:
            kw: dict[str, Any] = {"composer": args.composer, "alpha": args.alpha, "composer_params": params,
                                  "progress": sys.stderr.isatty() and not args.json}
            result = evaluate_fashioniq(ds, col, **kw) if isinstance(ds, dict) else evaluate(ds, col, **kw)
            results = [result]
        after = len(col)
        out(args, f"gallery cached in {args.uri} collection {name!r}: {after} images ({after - before} newly encoded)")
        show(args, result.table())
        written = _submit(args, ds, result, labeled, split)
        extra = {"command": "eval", "config": _run_config(args, result, name), "best_alpha": best,
                 "submission": [str(p) for p in written]}
        if args.output is not None:
            out(args, f"results: {write_json(args.output, results, extra=extra)}")
        if args.json:
            print(json.dumps({**extra, "results": [r.to_json() for r in results]}, indent=2, default=str))
    finally:
        col.close()
    return 0
