"""``synthetic-report``: train (or load) every recipe on the synthetic world and print ONE table of test R@k.

All figures come from the evaluation runner (:func:`cir_milvus.eval.runner.evaluate`) through Milvus Lite on the
synthetic test split (a different query seed from the validation split, where slerp's alpha is tuned):

- untuned slerp (the demo CLIP) vs slerp on the TAT-tuned CLIP (its own, re-ingested collection);
- the LinCIR and Pic2Word heads vs the image-only and text-only baselines;
- RTD (tuned text tower, same φ) vs its base head, served from the base collection (no re-ingestion).

Recipe outputs go to ``OUT/{lincir,pic2word,tat,rtd}``; a finished run is loaded, not retrained (resume). With
``--use-shipped`` (default) the heads shipped in ``cir_milvus/data`` are evaluated instead of training new ones.
The TAT and RTD comparisons are also made query by query on the same test queries (:func:`paired_r1`: the R@1
difference, its standard error, the queries gained and lost, McNemar's exact p-value), because a difference of a
point or two is within the noise of two independent R@1 figures. The table and every figure are written to
``OUT/report.json``.

Example::

    nice -n 10 python -m cir_milvus.train synthetic-report --out runs/synthetic-report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["REPORT_RECIPES", "add_arguments", "main", "synthetic_report"]

_SHIPPED_OPTIMIZER = {"beta2": 0.999, "eps": 1e-8, "decay_filter": "skip-1d", "warmup_cap": 0.1, "keep": "last"}

REPORT_RECIPES: dict[str, dict[str, Any]] = {
    "lincir": {"steps": 1500, "batch_size": 128, "lr": 3e-4, "noise_scale": 4.0, **_SHIPPED_OPTIMIZER,
               "keyword_tagger": "rule"},
    "pic2word": {"steps": 800, "batch_size": 128, "lr": 3e-4, **_SHIPPED_OPTIMIZER, "augment": "none"},
    "tat": {"steps": 300, "batch_size": 128, "lr": 3e-4},
    "rtd": {"steps": 300, "batch_size": 64, "lr": 1e-5},
}
"""Per-recipe overrides used by the report (CPU-sized). LinCIR and Pic2Word keep the settings the shipped heads
were trained with (before the recipes' defaults followed the official scripts: torch's AdamW betas, no decay on
biases, warm-up capped at a tenth of the run, last step, stop-word masking, no crop augmentation), so
``--no-use-shipped`` retrains those heads; TAT and RTD use the recipes' defaults (RTD: best validation step)."""

ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/synthetic-report"), help="output folder")
    p.add_argument("--n-queries", type=int, default=2000, help="queries per split")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every recipe's step count")
    p.add_argument("--use-shipped", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate the heads shipped in cir_milvus/data instead of training new ones")
    p.add_argument("--device", default=None, help="device for training and encoders (default: auto)")
    for name in REPORT_RECIPES:
        p.add_argument(f"--{name}-config", type=Path, default=None, help=f"JSON config for {name} (over the defaults)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


def _train(name: str, out: Path, scale: float, config: Path | None, device: str | None, progress: bool,
           **extra: Any) -> dict[str, Any]:
    from cir_milvus.train.recipes import train

    over = dict(REPORT_RECIPES[name])
    over["steps"] = max(1, int(round(over["steps"] * scale)))
    over.update(extra)
    if config is not None:
        over = {k: v for k, v in over.items() if k not in json.loads(Path(config).read_text())}
    if device:
        over["device"] = device
    over["progress"] = progress
    result = train(name, out / name, config, **over)
    return {**result.summary(), "samples_per_s": result.samples_per_s}


def synthetic_report(out: str | Path = "runs/synthetic-report", *, n_queries: int = 2000, steps_scale: float = 1.0,
                     use_shipped: bool = True, device: str | None = None, configs: dict[str, Path | None] | None = None,
                     progress: bool = True, print_fn: Any = print) -> dict[str, Any]:
    """Train/load each recipe, evaluate everything on the synthetic test split, print one table.

    Returns:
        ``{"rows": [...], "training": {...}, "checks": {...}}`` (also written to ``out/report.json``).
    """
    from cir_milvus.eval.synthetic import SyntheticDataset

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    configs = configs or {}
    training, heads = _shipped_heads(use_shipped)
    for kind in ("lincir", "pic2word"):
        if kind not in heads:
            training[kind] = _train(kind, out, steps_scale, configs.get(kind), device, progress)
            heads[kind] = training[kind]["outputs"]["head"]
    training["tat"] = _train("tat", out, steps_scale, configs.get("tat"), device, progress)
    training["rtd"] = _train("rtd", out, steps_scale, configs.get("rtd"), device, progress, head=heads["lincir"])

    test = SyntheticDataset(out / "world", split="test", n_queries=n_queries, progress=progress)
    val = SyntheticDataset(out / "world", split="val", n_queries=n_queries, progress=progress)
    board = _Board(out, test, val, device, training)
    base_recipe = board.base_rows(heads)
    checks = {"rtd_open": board.rtd_rows(heads["lincir"], training["rtd"]["outputs"]["weights"])}
    checks.update(board.tat_rows(training["tat"]["outputs"]["weights"], base_recipe))

    queries = test.queries()
    res = board.results
    paired = {"TAT slerp vs untuned slerp": paired_r1(queries, res[("-", "slerp")], res[("tat", "slerp")]),
              "RTD vs its LinCIR head": paired_r1(queries, res[("lincir", "lincir")], res[("rtd", "lincir")])}
    table = format_rows(board.rows)
    print_fn("")
    print_fn(f"Synthetic world, test split: {n_queries} composed queries over {len(test.corpus())} images through "
             "Milvus Lite (HNSW, IP); hit = any image of the target combination, reference excluded; slerp alpha "
             "tuned on the val split. samples/s = training throughput of the recipe on this machine.")
    print_fn(table)
    for name, d in paired.items():
        print_fn(f"paired on the same queries, {name}: R@1 {d['delta_R@1']:+.2f} (standard error {d['se']:.2f}; "
                 f"{d['gained']} queries gained, {d['lost']} lost; McNemar p = {d['p_mcnemar']:.3g})")
    for name, msg in checks.items():
        print_fn(f"recipe check {name}: {msg}")
    report = {"rows": board.rows, "training": training, "checks": checks, "paired": paired, "table": table,
              "seconds": round(time.perf_counter() - t0, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_fn(f"figures: {out / 'report.json'} ({report['seconds']:.0f} s)")
    return report


def _shipped_heads(use_shipped: bool) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The heads shipped in ``cir_milvus/data`` (when ``use_shipped``) and their training figures from the sidecars."""
    from cir_milvus.models.demo import DATA_DIR

    training: dict[str, dict[str, Any]] = {}
    heads: dict[str, str] = {}
    for kind in ("lincir", "pic2word"):
        shipped = DATA_DIR / f"cir-demo-tiny.{kind}.safetensors"
        if use_shipped and shipped.is_file():
            heads[kind] = str(shipped)
            side = shipped.with_suffix(".json")
            info = json.loads(side.read_text()) if side.is_file() else {}
            training[kind] = {"source": str(shipped), "samples_per_s": info.get("samples_per_s"),
                              "seconds": info.get("seconds"), "steps": info.get("steps")}
    return training, heads


class _Board:
    """The report's collections and its table: one row per (recipe, composer), evaluated through Milvus Lite."""

    def __init__(self, out: Path, test: Any, val: Any, device: str | None,
                 training: dict[str, dict[str, Any]]) -> None:
        self.out, self.test, self.val, self.device, self.training = out, test, val, device, training
        self.rows: list[dict[str, Any]] = []
        self.results: dict[tuple[str, str], Any] = {}

    def encoder(self, pretrained: str, text_weights: str | None = None) -> Any:
        from cir_milvus.encoders.torch import TorchEncoder
        from cir_milvus.models.demo import DEMO_MODEL

        # images loaded and decoded the official way, as evaluate() requires (cir_milvus.eval.official_deviations)
        return TorchEncoder(DEMO_MODEL, pretrained, device=self.device, text_weights=text_weights,
                            image_loading="official", decode="exact")

    def collection(self, name: str, pretrained: str) -> Any:
        from cir_milvus.collection import CIRCollection
        from cir_milvus.eval.runner import ingest_dataset

        col = CIRCollection.create(str(self.out / f"{name}.db"), name, encoder=self.encoder(pretrained),
                                   if_exists="overwrite")
        ingest_dataset(self.test, col, progress=False)
        col.wait_for_index()
        return col

    def add(self, recipe: str, backbone: str, col: Any, composer: str, params: dict[str, Any] | None = None,
            tune: bool = False) -> None:
        from cir_milvus.eval.runner import evaluate, sweep_alpha

        alpha = None
        if tune:
            alpha, _ = sweep_alpha(self.val, col, ALPHAS, composer=composer, composer_params=params)
        r = evaluate(self.test, col, composer=composer, alpha=alpha, composer_params=params, ingest=False,
                     progress=False)
        self.results[(recipe, composer)] = r
        info = self.training.get(recipe, {})
        self.rows.append({"recipe": recipe, "backbone": backbone, "composer": composer, "alpha": alpha,
                          **{k: r.milvus[k] for k in ("R@1", "R@5", "R@10")}, "exact R@1": r.exact["R@1"],
                          "samples/s": info.get("samples_per_s"), "train s": info.get("seconds")})

    def base_rows(self, heads: dict[str, str]) -> dict[str, Any]:
        """The untuned demo CLIP: baselines, tuned slerp, the LinCIR and Pic2Word heads. Returns its recipe."""
        from cir_milvus.models.demo import DEMO_WEIGHTS

        base = self.collection("base", DEMO_WEIGHTS)
        for comp in ("image", "text"):
            self.add("-", "demo CLIP", base, comp)
        self.add("-", "demo CLIP", base, "slerp", tune=True)
        self.add("lincir", "demo CLIP", base, "lincir", {"head": heads["lincir"]})
        self.add("pic2word", "demo CLIP", base, "pic2word", {"head": heads["pic2word"]})
        recipe: dict[str, Any] = base.encoder.recipe
        base.close()
        return recipe

    def rtd_rows(self, head: str, rtd_path: str) -> str:
        """RTD swaps the text tower only: the base collection (same gallery vectors) is opened with the RTD
        encoder. Returns what the recipe check saw."""
        from cir_milvus.collection import CIRCollection
        from cir_milvus.errors import RecipeMismatchError
        from cir_milvus.models.demo import DEMO_WEIGHTS

        try:
            rtd = CIRCollection.open(str(self.out / "base.db"), "base",
                                     encoder=self.encoder(DEMO_WEIGHTS, text_weights=rtd_path))
            check = "CIRCollection.open(base, encoder=base weights + RTD text tower) served the base gallery"
        except RecipeMismatchError as e:
            check = f"refused (unexpected): {e}"
            rtd = self.collection("rtd", DEMO_WEIGHTS)
        self.add("rtd", "RTD text tower", rtd, "lincir", {"head": head})
        rtd.close()
        return check

    def tat_rows(self, tat_path: str, base_recipe: dict[str, Any]) -> dict[str, str]:
        """TAT tunes the image tower: its own, re-ingested collection; the base collection must refuse it."""
        from cir_milvus.collection import CIRCollection
        from cir_milvus.errors import RecipeMismatchError
        from cir_milvus.storage.recipe import Recipe, check_compatible

        tat = self.collection("tat", tat_path)
        for comp in ("image", "text"):
            self.add("tat", "TAT CLIP", tat, comp)
        self.add("tat", "TAT CLIP", tat, "slerp", tune=True)
        tat_recipe = tat.encoder.recipe
        tat.close()
        checks: dict[str, str] = {}
        try:
            check_compatible("base", Recipe(encoder=base_recipe), tat_recipe)
            checks["tat"] = "accepted (unexpected)"
        except RecipeMismatchError as e:
            checks["tat"] = f"refused: {str(e).split(': ', 1)[-1][:160]}"
        try:
            CIRCollection.open(str(self.out / "base.db"), "base", encoder=self.encoder(tat_path))
            checks["tat_open"] = "opened (unexpected)"
        except RecipeMismatchError:
            checks["tat_open"] = "CIRCollection.open(base, encoder=TAT) raised RecipeMismatchError (re-ingest needed)"
        return checks


def paired_r1(queries: list[Any], base: Any, new: Any) -> dict[str, Any]:
    """Paired comparison of two systems' Recall@1 on the same queries (reference excluded).

    Returns the R@1 difference (points), its standard error (``sqrt(gained + lost) / n``, the paired-proportion
    estimate), the discordant counts, and McNemar's exact two-sided p-value (binomial on the discordant queries).
    """
    from math import comb, sqrt

    def top1(result: Any, q: Any) -> bool:
        first = next((i for i in result.rankings[q.query_id] if i != q.reference_id), None)
        return first in set(q.target_ids)

    a = [top1(base, q) for q in queries]
    b = [top1(new, q) for q in queries]
    gained = sum(1 for x, y in zip(a, b) if y and not x)
    lost = sum(1 for x, y in zip(a, b) if x and not y)
    n, m = len(queries), gained + lost
    tail = sum(comb(m, k) for k in range(min(gained, lost) + 1)) / 2**m if m else 1.0
    return {"n": n, "delta_R@1": round(100 * (gained - lost) / n, 2), "se": round(100 * sqrt(m) / n, 2),
            "gained": gained, "lost": lost, "p_mcnemar": min(1.0, 2 * tail)}


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = (f"{'recipe':<9}{'backbone':<16}{'composer':<10}{'alpha':>6}{'R@1':>7}{'R@5':>7}{'R@10':>7}"
            f"{'exact R@1':>11}{'samples/s':>11}{'train s':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        a = f"{r['alpha']:.1f}" if r["alpha"] is not None else "-"
        sps = f"{r['samples/s']:.0f}" if r["samples/s"] else "-"
        secs = f"{r['train s']:.0f}" if r["train s"] else "-"
        lines.append(f"{r['recipe']:<9}{r['backbone']:<16}{r['composer']:<10}{a:>6}{r['R@1']:>7.1f}{r['R@5']:>7.1f}"
                     f"{r['R@10']:>7.1f}{r['exact R@1']:>11.1f}{sps:>11}{secs:>9}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    synthetic_report(args.out, n_queries=args.n_queries, steps_scale=args.steps_scale, use_shipped=args.use_shipped,
                     device=args.device, configs={k: getattr(args, f"{k}_config") for k in REPORT_RECIPES},
                     progress=args.progress)
