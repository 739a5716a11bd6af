"""Text encoding over the pooled prefix vs open_clip's full padded context, side by side in one process.

    python benchmarks/bench_text.py                          # demo model and ViT-B-32 (random weights), 5 rounds
    python benchmarks/bench_text.py --rounds 3 --models cir-demo-tiny

``TorchEncoder.encode_texts`` runs the text tower only up to the last end-of-text token of the batch
(:func:`cir_milvus.encoders.torch.pooled_prefix`); the reference is what it ran before and what open_clip users
run, ``model.encode_text`` on the tokenizer's padded ``[N, L]`` ids (L = 77 for CLIP), after the same over-length
check (both include tokenisation and the check; they differ only in the forward). Per model and round (the two
ways alternate): one query caption (latency, ms), a SEARLE-style prompt with a pseudo token (``a photo of $ that {caption}``),
256 short captions at once, and 1,024 captions of 3 to 40 words in batches of 256 (captions/s; the evaluation
harness encodes its captions so; ``encode_texts`` batches texts of similar length together). Reports medians with min–max over the
rounds, the per-round speed-up, and the largest difference between the two ways' features (they are the same
features; the difference is float rounding). JSON in ``benchmarks/results/text.json``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

CAPTIONS = ["make it green", "the same jacket but in red", "this scene at night", "with a dog instead of a cat",
            "same dress, shorter sleeves and a floral pattern", "as a pencil drawing", "in winter with snow",
            "remove the people and add a sunset over the water"]


def median_ms(fn: Any, calls: int) -> float:
    """Median milliseconds of ``fn(i)`` for ``i`` in ``range(calls)``, after one warm-up call ``fn(0)``."""
    import numpy as np

    fn(0)  # warm-up
    lat = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        lat.append(1000 * (time.perf_counter() - t0))
    return float(np.median(lat))


def parse_args(argv: list[str] | None, doc: str, out: Path) -> argparse.Namespace:
    """The text benchmarks' options: ``--models``, ``--rounds``, ``--calls``, ``--out`` (default ``out``)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--models", default="cir-demo-tiny:cir-demo,ViT-B-32",
                   help="model[:pretrained] list; no pretrained = random weights (speed does not depend on them)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=30, help="timed calls per latency figure and round")
    p.add_argument("--out", type=Path, default=out)
    return p.parse_args(argv)


def bench_model(model: str, pretrained: str | None, a: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from bench_peers import summary

    from cir_milvus.encoders.slots import mark_slot
    from cir_milvus.encoders.torch import TorchEncoder, inject_pseudo_tokens

    torch.manual_seed(0)
    enc = TorchEncoder(model, pretrained, device="cpu")
    m = enc.model
    batch = [CAPTIONS[i % len(CAPTIONS)] + f" {i}" for i in range(256)]
    words = " ".join(CAPTIONS).split()
    rng = np.random.default_rng(0)
    limit = enc.context_length - 4
    mixed = [" ".join(rng.choice(words, int(rng.integers(3, min(40, limit))))) for _ in range(1024)]
    prompts = [f"a photo of $ that {c}" for c in CAPTIONS]
    tokens = torch.randn(len(prompts), enc.token_width())
    pid = enc.placeholder_id("$")

    def full_text(texts: list[str]) -> Any:  # what encode_texts ran before: the length check, then open_clip's forward
        enc.token_counts(texts)
        with torch.no_grad():
            return m.encode_text(enc.tokenizer(texts))

    def full_batches(texts: list[str]) -> Any:  # batches of 256 in the given order, as encode_texts did
        return [full_text(texts[s:s + 256]) for s in range(0, len(texts), 256)]

    def full_pseudo(k: int) -> Any:
        enc.token_counts(prompts[k:k + 1])
        marked, inject = mark_slot(enc.tokenize(prompts[k:k + 1]), pid, 0)
        with torch.no_grad():
            return inject_pseudo_tokens(m, torch.from_numpy(marked), tokens[k:k + 1], inject)

    ways: dict[str, dict[str, Any]] = {
        "full context (open_clip encode_text)": {
            "query_ms": lambda i: full_text([CAPTIONS[i % len(CAPTIONS)]]),
            "pseudo_ms": lambda i: full_pseudo(i % len(prompts)),
            "batch": lambda: full_text(batch),
            "mixed": lambda: full_batches(mixed)},
        "pooled prefix (cir_milvus)": {
            "query_ms": lambda i: enc.encode_texts([CAPTIONS[i % len(CAPTIONS)]], normalize=False),
            "pseudo_ms": lambda i: enc.encode_texts_with_pseudo_tokens(prompts[i % len(prompts):][:1],
                                                                       tokens[i % len(prompts):][:1], normalize=False),
            "batch": lambda: enc.encode_texts(batch, normalize=False),
            "mixed": lambda: enc.encode_texts(mixed, normalize=False)},
    }
    got: dict[str, dict[str, list[float]]] = {w: {"query_ms": [], "pseudo_ms": [], "batch_per_s": [], "mixed_per_s": []}
                                              for w in ways}
    for r in range(a.rounds):
        for w in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            f = ways[w]
            for key in ("query_ms", "pseudo_ms"):
                got[w][key].append(median_ms(lambda i, f=f, key=key: f[key](i), a.calls))
            for key, texts in (("batch", batch), ("mixed", mixed)):
                f[key]()  # warm-up
                t0 = time.perf_counter()
                f[key]()
                got[w][f"{key}_per_s"].append(len(texts) / (time.perf_counter() - t0))
    full, prefix = (np.asarray(full_text(batch)), np.asarray(enc.encode_texts(batch, normalize=False)))
    cos = (full * prefix).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(prefix, axis=1))
    base, ours = list(ways)
    out: dict[str, Any] = {"model": model, "pretrained": pretrained, "context_length": enc.context_length,
                           "query_tokens": enc.token_counts(CAPTIONS),
                           "ways": {w: {k: summary(v) for k, v in d.items()} for w, d in got.items()},
                           "speedup": {k: summary([(b / o if k.endswith("_ms") else o / b)
                                                   for b, o in zip(got[base][k], got[ours][k], strict=True)])
                                       for k in got[base]},
                           "max_abs_diff": float(np.abs(full - prefix).max()), "min_cosine": float(cos.min())}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    a = parse_args(argv, __doc__, Path(__file__).parent / "results" / "text.json")
    import torch

    import cir_milvus  # noqa: F401  (first, as a user's script: its OpenMP wait policy applies before torch)

    res: dict[str, Any] = {"machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
                           "command": "python benchmarks/bench_text.py " + " ".join(argv or sys.argv[1:]),
                           "models": []}
    for spec in a.models.split(","):
        model, _, pretrained = spec.partition(":")
        m = bench_model(model, pretrained or None, a)
        res["models"].append(m)
        print(f"[{model}] query tokens {m['query_tokens']} of {m['context_length']}; "
              f"max |diff| {m['max_abs_diff']:.2e}, min cosine {m['min_cosine']:.7f}")
        for w, d in m["ways"].items():
            print(f"  {w:38s} query {d['query_ms']['median']:7.2f} ms  pseudo {d['pseudo_ms']['median']:7.2f} ms  "
                  f"batch {d['batch_per_s']['median']:8.1f}  mixed {d['mixed_per_s']['median']:8.1f} captions/s")
        print("  speed-up " + ", ".join(f"{k} {v['median']:.2f}x ({v['min']:.2f}-{v['max']:.2f})"
                                        for k, v in m["speedup"].items()), flush=True)
    return write_results(res, a.out)


if __name__ == "__main__":
    main()
