"""Shortcuts that change pixels or arithmetic: their speed, what they do to the embeddings and to recall.

    python benchmarks/bench_decode.py            # writes benchmarks/results/decode.json
    python benchmarks/bench_decode.py --quick

Decode shortcuts (``PreprocessConfig.decode``: ``exact``, ``reduce`` = Pillow ``reducing_gap=3``, ``draft`` = JPEG
DCT-domain scaling + ``reducing_gap``) and precision shortcuts (torch ``bf16`` on the CPU, an onnxruntime ``int8``
bundle), each against the reference path (exact decode, fp32):

1. decode-alone rate in one process (file → uint8 ``[S, S, 3]``), at 64 px (demo model) and 224 px (ViT-B-32), on
   camera-size photo-like JPEGs (500×375 to 1024×768) and phone-size ones (2016×1512 to 4032×3024; ``_photos.py``);
2. the embedding change vs the reference path: min and median cosine, with the trained demo model (64 px) and
   ViT-B-32 (one random-weights checkpoint shared by every variant unless ``--vit-pretrained`` names a local one: a
   random network is at least as sensitive to pixel changes as a trained one, so this is a conservative check);
3. the synthetic world's composed-query recall@1/@10 with each shortcut (gallery and references rendered at 512 px
   and stored as JPEG q90, so every decode mode has something to skip; gallery and queries through the same path,
   exact search), with one standard error.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import make_photos  # noqa: E402

MODES = ("exact", "reduce", "draft")


def decode_rate(paths: list[str], cfg: Any, rounds: int) -> float:
    from cir_milvus.ingest.decode import decode_uint8

    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        for p in paths:
            decode_uint8(p, cfg)
        rates.append(len(paths) / (time.perf_counter() - t))
    return statistics.median(rates)


def embed(enc: Any, paths: list[str], mode: str, batch: int = 32) -> np.ndarray:
    from cir_milvus.ingest.decode import decode_uint8
    from cir_milvus.preprocess import normalize_uint8

    cfg = enc.preprocess_config.with_decode(mode)
    out = []
    for s in range(0, len(paths), batch):
        u8 = np.stack([decode_uint8(p, cfg) for p in paths[s:s + batch]])  # [B, S, S, 3]
        out.append(np.asarray(enc.encode_pixels(normalize_uint8(u8, cfg), normalize=True)))
    return np.concatenate(out)  # [N, D]


def cosine_effect(enc: Any, paths: list[str]) -> dict[str, Any]:
    ref = embed(enc, paths, "exact")
    out = {}
    for mode in MODES[1:]:
        cos = np.sum(embed(enc, paths, mode) * ref, axis=1)
        out[mode] = {"min_cosine": round(float(cos.min()), 5), "median_cosine": round(float(np.median(cos)), 5)}
    return out


def synthetic_recall(variants: dict[str, tuple[Any, str]], tmp: Path, n_queries: int, instances: int
                     ) -> dict[str, Any]:
    """Recall of slerp on the synthetic world per variant ``label -> (encoder, decode mode)``."""
    from cir_milvus.composers import get_composer
    from cir_milvus.synthetic import SyntheticWorld

    world = SyntheticWorld(seed=7, instances=instances)
    gallery = world.gallery()
    folder = tmp / "synthetic512"
    folder.mkdir(exist_ok=True)
    paths = {}
    for it in gallery:
        p = folder / f"{it.id}.jpg"
        if not p.exists():
            it.render(512).save(p, quality=90)
        paths[it.id] = str(p)
    ids = [it.id for it in gallery]
    triplets = world.triplets(n_queries, seed=3)
    slerp = get_composer("slerp", alpha=0.8)
    out = {}
    for label, (enc, mode) in variants.items():
        g = embed(enc, [paths[i] for i in ids], mode)  # [G, D]
        pos = {i: k for k, i in enumerate(ids)}
        raw = g[[pos[t.reference_id] for t in triplets]]
        q = slerp.compose(enc, raw, [t.text for t in triplets])  # [Q, D]
        scores = q @ g.T  # [Q, G]
        for k, t in enumerate(triplets):
            scores[k, pos[t.reference_id]] = -np.inf  # the reference is never a hit
        top = np.argsort(-scores, axis=1)[:, :10]
        r1 = np.mean([ids[top[k, 0]] in t.target_ids for k, t in enumerate(triplets)])
        r10 = np.mean([any(ids[j] in t.target_ids for j in top[k]) for k, t in enumerate(triplets)])
        n = len(triplets)
        out[label] = {"recall@1": round(100 * float(r1), 2), "recall@10": round(100 * float(r10), 2),
                      "se@1": round(100 * float(np.sqrt(r1 * (1 - r1) / n)), 2),
                      "se@10": round(100 * float(np.sqrt(r10 * (1 - r10) / n)), 2), "queries": n}
    return out


def precision_effect(ref: Any, others: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Cosine of each encoder's image (and text) embeddings against the fp32 reference encoder's."""
    base = embed(ref, paths, "exact")
    texts = ["make it look like a painting", "the same scene at night", "with more red in it", "a dog on a beach"]
    tbase = np.asarray(ref.encode_texts(texts, normalize=True))
    out = {}
    for label, enc in others.items():
        cos = np.sum(embed(enc, paths, "exact") * base, axis=1)
        tcos = np.sum(np.asarray(enc.encode_texts(texts, normalize=True)) * tbase, axis=1)
        out[label] = {"min_cosine": round(float(cos.min()), 5), "median_cosine": round(float(np.median(cos)), 5),
                      "text_min_cosine": round(float(tcos.min()), 5)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=300, help="camera-size photos")
    p.add_argument("--phone-images", type=int, default=60, help="phone-size photos")
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--quick", action="store_true", help="60 / 20 photos, 200 queries on a 512-image world")
    p.add_argument("--vit-pretrained", default=None, help="ViT-B-32 checkpoint (default: random weights)")
    p.add_argument("--data", type=Path, default=None, help="where to keep the generated JPEGs (default: a temp dir)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decode.json")
    args = p.parse_args(argv)
    import torch
    from bench_peers import export_bundles, random_checkpoint

    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.preprocess import PreprocessConfig

    n, n_phone = (60, 20) if args.quick else (args.images, args.phone_images)
    tmpdir = None if args.data else tempfile.TemporaryDirectory(prefix="cir-decode-bench-")
    tmp = args.data or Path(tmpdir.name)  # type: ignore[union-attr]
    sets = {"camera": make_photos(tmp / "photos", n), "phone": make_photos(tmp / "phone", n_phone,
                                                                             long_side=(2016, 4032))}
    desc = sets["camera"][1]
    res: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                    "note": "2-core dev machine: rates are medians of rounds; compare rows, not runs"},
        "command": "python benchmarks/bench_decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "photos": {"source": desc, "camera": {"count": n, "sizes": "500x375 to 1024x768, JPEG q85-95"},
                   "phone": {"count": n_phone, "sizes": "2016x1512 to 4032x3024, JPEG q85-95"}},
        "decode_alone_images_per_s": {}, "embedding_cosine_vs_exact": {}, "precision_cosine_vs_fp32": {}}
    for set_name, (paths, _) in sets.items():
        for size in (64, 224):
            res["decode_alone_images_per_s"][f"{set_name} {size}px"] = {
                m: round(decode_rate(paths[:60], PreprocessConfig(size=size, decode=m), rounds=3), 1) for m in MODES}
    print("decode alone, one process (images/s):", json.dumps(res["decode_alone_images_per_s"], indent=1))
    vit_ckpt = args.vit_pretrained or random_checkpoint("ViT-B-32", tmp)
    vit_label = "ViT-B-32 (" + ("random weights" if not args.vit_pretrained else Path(vit_ckpt).name) + ", 224 px)"
    demo = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu")
    vit = TorchEncoder("ViT-B-32", vit_ckpt, device="cpu")
    for set_name, (paths, _) in sets.items():
        res["embedding_cosine_vs_exact"][f"cir-demo-tiny (trained, 64 px), {set_name}"] = cosine_effect(demo, paths)
        res["embedding_cosine_vs_exact"][f"{vit_label}, {set_name}"] = cosine_effect(vit, paths[: max(20, n // 3)])
    print("embedding cosine vs exact:", json.dumps(res["embedding_cosine_vs_exact"], indent=1))
    bundles = {}
    for model, pre, enc in (("cir-demo-tiny", "cir-demo", demo), ("ViT-B-32", vit_ckpt, vit)):
        folder = tmp / f"bundles-{model}"
        export_bundles(model, pre, folder)
        bundles[model] = OrtEncoder(folder / "int8", device="cpu")
        others = {"torch bf16": TorchEncoder(model, pre, device="cpu", precision="bf16"),
                  "onnx int8": bundles[model]}
        label = "cir-demo-tiny (trained, 64 px)" if model == "cir-demo-tiny" else vit_label
        res["precision_cosine_vs_fp32"][label] = precision_effect(enc, others, sets["camera"][0][: max(20, n // 3)])
    print("embedding cosine vs fp32:", json.dumps(res["precision_cosine_vs_fp32"], indent=1))
    variants = {f"decode {m}": (demo, m) for m in MODES}
    variants["torch bf16"] = (TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", precision="bf16"), "exact")
    variants["onnx int8"] = (bundles["cir-demo-tiny"], "exact")
    res["synthetic_recall_demo"] = synthetic_recall(variants, tmp, 200 if args.quick else args.queries,
                                                    instances=1 if args.quick else 2)
    print("synthetic world recall (demo model, 512 px JPEG renders):", json.dumps(res["synthetic_recall_demo"],
                                                                               indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    if tmpdir is not None:
        tmpdir.cleanup()
    return res


if __name__ == "__main__":
    main()
