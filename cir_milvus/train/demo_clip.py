"""Train the tiny demo CLIP on synthetic image–caption pairs (never on triplets: composition stays zero-shot).

Reproduces ``cir_milvus/data/cir-demo-tiny.safetensors``::

    python -m cir_milvus.train.demo_clip --out cir_milvus/data/cir-demo-tiny.safetensors

The model is open_clip's own ``CLIP`` class built from ``cir_milvus/models/model_configs/cir-demo-tiny.json``
with the real CLIP BPE tokenizer; the loss is open_clip's symmetric InfoNCE (``ClipLoss``) with a learned
temperature. Every step draws fresh images from the synthetic world (random attributes, jitter, noise) and a
caption that names all attributes (40 %) or a random subset of 1-3 (60 %).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cir_milvus.synthetic import sample_pairs


def build_model(seed: int) -> tuple[Any, Any, Any]:
    import open_clip

    from cir_milvus.models.demo import DEMO_MODEL, MODEL_CONFIG_DIR

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(DEMO_MODEL, pretrained=None)
    tokenizer = open_clip.get_tokenizer(DEMO_MODEL)
    return model, preprocess, tokenizer


def train(
    out: Path,
    steps: int = 1600,
    batch_size: int = 128,
    lr: float = 5e-4,
    weight_decay: float = 0.1,
    warmup: int = 100,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, float]:
    """Train and save the demo weights (fp16 safetensors) plus a JSON log beside them.

    Args:
        out: output ``.safetensors`` path.
        steps: optimisation steps.
        batch_size: image–caption pairs per step.
        lr: AdamW peak learning rate (cosine decay after a linear warm-up).
        weight_decay: AdamW weight decay (not applied to gains, biases, embeddings or the logit scale).
        warmup: warm-up steps.
        seed: seed of the weights and of the data stream.
        threads: torch CPU threads (default: torch's choice).

    Returns:
        A summary with the final loss and wall time.
    """
    import open_clip
    from safetensors.torch import save_file

    if threads:
        torch.set_num_threads(threads)
    model, preprocess, tokenizer = build_model(seed)
    model.train()
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * lr * (1 + math.cos(math.pi * progress))

    loss_fn = open_clip.ClipLoss()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    losses: list[float] = []
    bar = tqdm(range(steps), desc="train demo CLIP", unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        images, captions = sample_pairs(batch_size, rng)
        pixels = torch.stack([preprocess(im) for im in images])  # [B, 3, 64, 64]
        tokens = tokenizer(captions)  # [B, context_length]
        img_f, txt_f, scale = model(pixels, tokens)
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", scale=f"{float(scale):.1f}")
    elapsed = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"format": "pt", "model": "cir-demo-tiny"})
    summary = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "final_loss": float(np.mean(losses[-50:])),
        "seconds": round(elapsed, 1),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("cir_milvus/data/cir-demo-tiny.safetensors"))
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    summary = train(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    threads=args.threads)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
