"""What the attach default norm costs: pseudo-token (Pic2Word) retrieval from stored references on the synthetic
world, with each reference's TRUE raw embedding vs its normalised vector × the documented default (the encoder's
mean image-embedding norm on 16 synthetic images, :func:`cir_milvus.collection.facade.mean_image_norm`).

    python benchmarks/bench_attach_norm.py            # CPU, demo model; writes benchmarks/results/attach_norm.json

Exact search in numpy (no Milvus: the store only changes where the norm comes from). Recall@k counts a query as a
hit when any image of the target attribute combination is in the top k (the reference excluded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def _recall(q: np.ndarray, gallery: np.ndarray, ids: list[str], triplets: list[Any], k: int) -> float:
    sims = q @ gallery.T  # [Q, N]
    hit = 0
    for i, t in enumerate(triplets):
        order = [ids[j] for j in np.argsort(-sims[i]) if ids[j] != t.reference_id][:k]
        hit += bool(set(order) & set(t.target_ids))
    return 100.0 * hit / len(triplets)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "attach_norm.json"))
    args = ap.parse_args(argv)

    from cir_milvus import create_encoder, get_composer
    from cir_milvus.collection.facade import mean_image_norm
    from cir_milvus.models.demo import DATA_DIR
    from cir_milvus.synthetic import SyntheticWorld

    enc = create_encoder("cir-demo-tiny", "cir-demo", device="cpu")
    world = SyntheticWorld(seed=7, instances=args.instances)
    items = world.gallery()
    ids = [it.id for it in items]
    raw = np.asarray(enc.encode_images([it.render() for it in items], normalize=False), dtype=np.float32)  # [N, D]
    norms = np.linalg.norm(raw, axis=1)
    unit = raw / norms[:, None]
    default = mean_image_norm(enc)
    triplets = world.triplets(args.queries, seed=3)
    pos = {i: n for n, i in enumerate(ids)}
    refs = np.stack([pos[t.reference_id] for t in triplets])
    texts = [t.text for t in triplets]
    comp = get_composer("pic2word", head=str(DATA_DIR / "cir-demo-tiny.pic2word.safetensors"))
    q_true = np.asarray(comp.compose(enc, raw[refs], texts), dtype=np.float32)
    q_default = np.asarray(comp.compose(enc, unit[refs] * default, texts), dtype=np.float32)
    out: dict[str, Any] = {
        "device": "cpu", "gallery": len(ids), "queries": len(triplets), "composer": "pic2word (shipped demo head)",
        "true_norm_mean": round(float(norms.mean()), 4), "true_norm_std": round(float(norms.std()), 4),
        "default_norm": round(default, 4),
        "query_cosine_true_vs_default_mean": round(float(np.mean(np.sum(q_true * q_default, axis=1))), 5),
    }
    for k in (1, 10):
        out[f"R@{k}_true_norm"] = round(_recall(q_true, unit, ids, triplets, k), 2)
        out[f"R@{k}_default_norm"] = round(_recall(q_default, unit, ids, triplets, k), 2)
    top_t = np.argsort(-(q_true @ unit.T), axis=1)[:, :10]
    top_d = np.argsort(-(q_default @ unit.T), axis=1)[:, :10]
    out["top10_overlap_mean"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_t, top_d)])), 4)
    print(json.dumps(out, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
