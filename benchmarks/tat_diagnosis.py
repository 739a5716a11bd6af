"""Why slerp fails on the synthetic world, per backbone: exact-search slerp R@1/R@5 over an alpha grid, which
attribute the top-1 hit gets wrong, zero-shot attribute accuracy, and how far apart the text tower puts the shape
words. Used to compare the demo CLIP with TAT-tuned backbones (issue 7).

    python benchmarks/tat_diagnosis.py                                   # the shipped demo CLIP
    python benchmarks/tat_diagnosis.py runs/synthetic-report/tat/tat.safetensors --out benchmarks/results/tat_diag.json

Exact numpy search (no Milvus) over the 1,024-image gallery; 400 val and 400 test queries (the splits of
``SyntheticDataset``). Error keys: ``shape`` = an unchanged attribute the hit got wrong, ``shape*`` = a changed
attribute the hit did not change to the target value.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any

import numpy as np

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def diagnose(weights: str, n_queries: int = 400, text_weights: str | None = None) -> dict[str, Any]:
    from cir_milvus.composers.slerp import slerp
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.eval.synthetic import SPLIT_SEEDS
    from cir_milvus.synthetic import ATTRIBUTES, SHAPES, SyntheticWorld, all_combinations

    enc = TorchEncoder("cir-demo-tiny", weights, device="cpu", text_weights=text_weights)
    world = SyntheticWorld(seed=0, instances=2)
    items = world.gallery()
    gallery = enc.encode_images([it.render(world.image_size) for it in items], batch_size=128)  # [N, D]
    row = {it.id: i for i, it in enumerate(items)}
    out: dict[str, Any] = {"weights": weights, "text_weights": text_weights, "splits": {}}
    for split in ("val", "test"):
        trips = world.triplets(n_queries, seed=SPLIT_SEEDS[split])
        refs = np.array([row[t.reference_id] for t in trips])
        texts = enc.encode_texts([t.text for t in trips])
        per_alpha = {}
        for a in ALPHAS:
            q = np.stack([slerp(gallery[r], t, a) for r, t in zip(refs, texts, strict=True)])
            scores = q @ gallery.T
            scores[np.arange(len(trips)), refs] = -np.inf  # the reference is never a hit
            top = np.argsort(-scores, axis=1)[:, :5]
            hits = np.array([[items[j].attributes == t.target for j in r] for r, t in zip(top, trips, strict=True)])
            wrong: collections.Counter[str] = collections.Counter()
            for r, t in zip(top, trips, strict=True):
                got = items[r[0]].attributes
                for at in ATTRIBUTES:
                    if getattr(got, at) != getattr(t.target, at):
                        wrong[at + ("*" if at in t.changed else "")] += 1
            per_alpha[str(a)] = {"R@1": round(100 * hits[:, 0].mean(), 2), "R@5": round(100 * hits.any(1).mean(), 2),
                                 "top1_wrong": dict(wrong.most_common())}
        out["splits"][split] = per_alpha
    best = max(ALPHAS, key=lambda a: out["splits"]["val"][str(a)]["R@1"])
    out["val_alpha"] = best
    out["test_at_val_alpha"] = out["splits"]["test"][str(best)]
    combos = all_combinations()
    caps = enc.encode_texts([f"a {c.size} {c.colour} {c.shape} on a {c.background} background" for c in combos])
    pred = [combos[j] for j in np.argmax(gallery @ caps.T, axis=1)]
    out["zero_shot_accuracy"] = {at: round(float(np.mean([getattr(p, at) == getattr(it.attributes, at)
                                                          for p, it in zip(pred, items, strict=True)])), 3)
                                 for at in ATTRIBUTES}
    words = enc.encode_texts([f"a {s}" for s in SHAPES])
    sim = words @ words.T
    out["shape_word_cosine"] = {f"{SHAPES[i]}/{SHAPES[j]}": round(float(sim[i, j]), 3)
                                for i in range(len(SHAPES)) for j in range(i + 1, len(SHAPES))}
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="*", default=["cir-demo"], help="demo-architecture checkpoints (default: cir-demo)")
    p.add_argument("--text-weights", default=None, help="a tuned text tower for every backbone (RTD)")
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = p.parse_args(argv)
    results = []
    for w in args.weights:
        r = diagnose(w, args.queries, args.text_weights)
        results.append(r)
        t = r["test_at_val_alpha"]
        close = sorted(r["shape_word_cosine"].items(), key=lambda kv: -kv[1])[:4]
        print(f"{w}: val alpha {r['val_alpha']} → test R@1 {t['R@1']:.2f} R@5 {t['R@5']:.2f}; top-1 errors "
              f"{t['top1_wrong']}; zero-shot accuracy {r['zero_shot_accuracy']}; closest shape words {close}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"figures: {args.out}")
    return results


if __name__ == "__main__":
    main()
