"""``cir-milvus`` start-up: process start to the first hit of ``search``, with torch and with an ONNX bundle.

    python benchmarks/bench_cli_startup.py                     # 7 interleaved rounds, demo model, Milvus Lite
    python benchmarks/bench_cli_startup.py --rounds 11 --out benchmarks/results/cli_startup.json

Setup (not timed): a Milvus Lite collection of 64 synthetic images ingested with the demo model (torch) and an ONNX
bundle exported from the same weights. Then each round runs, in a fresh process and in alternating order:

- ``search`` (torch): the model rebuilt from the collection's recipe (imports torch + open_clip);
- ``search --model bundle:DIR`` (onnxruntime, no torch import);
- ``info``: the recipe, count and index, no model at all.

The clock starts before ``Popen`` and stops when the first hit line (or the info table) arrives on stdout. Medians
of the interleaved rounds are printed and written as JSON with the machine's load average (other processes on a
shared machine slow every figure down; the ratios between modes stay comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _first_line_time(cmd: list[str], ready: Any, env: dict[str, str]) -> tuple[float, bool]:
    """Seconds from process start until ``ready(line)`` holds for a stdout line; and whether torch was imported."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    took = None
    for line in proc.stdout:
        if took is None and ready(line):
            took = time.perf_counter() - t0
    _, err = proc.communicate()
    if proc.returncode != 0 or took is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return took, "TORCH-IMPORTED" in err


# run the CLI and report on stderr whether torch ended up imported (checked at exit, after the hits are printed)
_RUNNER = ("import atexit, sys\n"
           "atexit.register(lambda: print('TORCH-IMPORTED' if 'torch' in sys.modules else 'no torch', "
           "file=sys.stderr))\n"
           "from cir_milvus.cli import main\n"
           "sys.exit(main(sys.argv[1:]))\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--images", type=int, default=64, help="gallery size (default 64)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli_startup.json",
                    help="JSON output")
    args = ap.parse_args()

    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus.cli import main as cli
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.synthetic import SyntheticWorld

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        imgs = tmp / "imgs"
        imgs.mkdir()
        for it in SyntheticWorld(seed=11, instances=1).gallery()[: args.images]:
            it.render().save(imgs / f"{it.id}.png")
        db = str(tmp / "bench.db")
        assert cli(["ingest", str(imgs), "--uri", db, "--model", "cir-demo-tiny", "--device", "cpu", "-q",
                    "--no-progress"]) == 0
        bundle = export_bundle(TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", precision="fp32"),
                               tmp / "bundle", fused=False)
        ref = str(sorted(imgs.glob("*.png"))[0])
        base = [sys.executable, "-c", _RUNNER]
        search = ["search", "--uri", db, "--image", ref, "--text", "make it blue", "-k", "1", "--device", "cpu"]
        modes = {
            "search_torch": (base + search, lambda line: line.strip().startswith("1 ")),
            "search_bundle": (base + [*search, "--model", f"bundle:{bundle}"],
                              lambda line: line.strip().startswith("1 ")),
            "info": (base + ["info", "--uri", db], lambda line: line.startswith("images")),
        }
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        times: dict[str, list[float]] = {m: [] for m in modes}
        torch_seen: dict[str, bool] = {}
        order = list(modes)
        load_before = os.getloadavg()
        for r in range(args.rounds):
            for m in order if r % 2 == 0 else order[::-1]:
                took, imported = _first_line_time(modes[m][0], modes[m][1], env)
                times[m].append(took)
                torch_seen[m] = torch_seen.get(m, False) or imported
        load_after = os.getloadavg()

    medians = {m: statistics.median(ts) for m, ts in times.items()}
    print(f"cir-milvus start-up, process start -> first hit (median of {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} -> {load_after[0]:.1f}):")
    for m, t in medians.items():
        print(f"  {m:<14} {t:6.2f} s   (min {min(times[m]):.2f}, max {max(times[m]):.2f}; torch imported: "
              f"{'yes' if torch_seen[m] else 'no'})")
    print(f"  bundle / torch: {medians['search_bundle'] / medians['search_torch']:.2f}")
    result = {
        "benchmark": "cli_startup", "rounds": args.rounds, "images": args.images,
        "median_s": {m: round(t, 3) for m, t in medians.items()},
        "all_s": {m: [round(t, 3) for t in ts] for m, ts in times.items()},
        "torch_imported": torch_seen,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
