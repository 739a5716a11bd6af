"""Training throughput of the four recipes (LinCIR, Pic2Word, TAT, RTD): samples/s and peak GPU memory.

    python benchmarks/bench_train.py                                   # CPU, demo model only
    python benchmarks/bench_train.py --device cuda --models cir-demo-tiny,ViT-B-32,ViT-L-14 \
        --out benchmarks/results/train_cuda.json

Each recipe runs at its paper batch size (``--batch-size`` overrides) for ``--warmup-steps`` untimed steps, then
resumes from that checkpoint for ``--steps`` timed ones; samples/s is the timed steps' samples over their seconds.
``compute`` mode reuses one batch (``repeat_batch``: what the model costs when the data loader keeps up);
``stream`` mode (demo model only) draws a fresh synthetic batch each step, rendering included. Models other than
the demo run with random weights (``pretrained=None``): throughput does not depend on the weights' values, and no
checkpoint can be downloaded here. A run that does not fit in GPU memory is retried with gradient checkpointing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

RECIPE_ORDER = ("lincir", "pic2word", "tat", "rtd")


def _measure(name: str, overrides: dict[str, Any], work: Path, warm: int, timed: int) -> dict[str, Any]:
    import torch

    from cir_milvus.train.config import load_config
    from cir_milvus.train.loop import run
    from cir_milvus.train.recipes import get_recipe

    cfg_cls, recipe_cls = get_recipe(name)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cfg = load_config(cfg_cls, None, {**overrides, "steps": warm, "progress": False})
    first = run(recipe_cls(cfg), cfg, work, export=name == "lincir")  # LinCIR's head feeds RTD
    cfg = load_config(cfg_cls, None, {**cfg.to_dict(), "steps": warm + timed})
    second = run(recipe_cls(cfg), cfg, work, export=False)
    seconds = second.seconds - first.seconds
    out = {"batch_size": cfg.batch_size, "timed_steps": timed, "seconds": round(seconds, 3),
           "samples_per_s": round((second.samples - first.samples) / seconds, 1),
           "final_loss": round(second.losses[-1], 4), "grad_checkpointing": cfg.grad_checkpointing,
           "precision": "fp32" if cfg.device == "cpu" else cfg.precision}
    if torch.cuda.is_available() and cfg.device != "cpu":
        out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default="cir-demo-tiny", help="comma-separated open_clip names")
    p.add_argument("--recipes", default=",".join(RECIPE_ORDER))
    p.add_argument("--batch-size", type=int, default=None, help="override every recipe's paper batch size")
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train.json")
    args = p.parse_args(argv)

    import torch

    from cir_milvus.demo import _demo_heads
    from cir_milvus.models.demo import DEMO_MODEL

    res: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "device": args.device,
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
                    "torch": torch.__version__},
        "command": "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "runs": [],
    }
    recipes = [r for r in args.recipes.split(",") if r]
    for model in [m for m in args.models.split(",") if m]:
        demo = model == DEMO_MODEL
        modes = ("compute", "stream") if demo else ("compute",)
        for mode in modes:
            with tempfile.TemporaryDirectory(prefix="cir-bench-train-") as tmp:
                for name in recipes:
                    over: dict[str, Any] = {"model": model, "pretrained": "cir-demo" if demo else None,
                                            "device": args.device, "repeat_batch": mode == "compute", "warmup": 0,
                                            "val": "none"}  # throughput only: no validation passes
                    if args.batch_size:
                        over["batch_size"] = args.batch_size
                    if name == "rtd":
                        head = _demo_heads()["lincir"] if demo else str(Path(tmp) / "lincir" / "head")
                        if not Path(head).exists():
                            print(f"{model} rtd: skipped (no LinCIR head: run the lincir recipe first)")
                            continue
                        over["head"] = head
                    row: dict[str, Any] = {"model": model, "recipe": name, "mode": mode}
                    for ckpt in (False, True):
                        try:
                            row.update(_measure(name, {**over, "grad_checkpointing": ckpt}, Path(tmp) / name,
                                                args.warmup_steps, args.steps))
                            break
                        except torch.cuda.OutOfMemoryError:
                            row["oom_without_checkpointing"] = True
                            torch.cuda.empty_cache()
                            if ckpt:
                                row["error"] = "out of GPU memory even with gradient checkpointing"
                    res["runs"].append(row)
                    print(f"{model:>14} {name:>8} {mode:>7} bs {row.get('batch_size', '-'):>5}  "
                          f"{row.get('samples_per_s', float('nan')):>9.1f} samples/s  "
                          f"peak {row.get('peak_gpu_mem_gib', '-')} GiB  ckpt {row.get('grad_checkpointing')}",
                          flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
