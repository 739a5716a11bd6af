"""A script that calls ``ingest(..., workers=2)`` at module level, with and without an ``if __name__ ==
"__main__":`` guard: wall time of each (issue 24 item 4: the unguarded one must take at most 1.1x the guarded one).

Decode workers never run the parent's main script (``cir_milvus.ingest.decode._start_without_main``), so both
scripts do the same work. Each script runs ``--rounds`` times in alternation; the medians are compared.

    python benchmarks/bench_main_guard.py --images 200 --rounds 3 --out main_guard.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BODY = """
from cir_milvus import CIRCollection
from cir_milvus.collection import EncoderSpec
from cir_milvus.ingest import ingest
col = CIRCollection.create({db!r}, "c", "cir-demo-tiny", "cir-demo", encoder=EncoderSpec(device="cpu"),
                           if_exists="overwrite")
report = ingest(col, {folder!r}, workers=2, progress=False)
print("stored", report.stored, flush=True)
col.close()
"""


def _script(path: Path, folder: str, db: str, guarded: bool) -> Path:
    body = BODY.format(db=db, folder=folder)
    if guarded:
        body = 'if __name__ == "__main__":\n' + textwrap.indent(body, "    ")
    path.write_text(body)
    return path


def _run(script: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        raise SystemExit(f"{script.name} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from cir_milvus.synthetic import SyntheticWorld

    tmp = Path(tempfile.mkdtemp(prefix="cir-main-guard-"))
    folder = tmp / "photos"
    folder.mkdir()
    for i, it in enumerate(SyntheticWorld(seed=0).gallery()[: args.images]):
        it.render().save(folder / f"{i:05d}.png")
    scripts = {g: _script(tmp / f"{g}.py", str(folder), str(tmp / f"{g}.db"), g == "guarded")
               for g in ("guarded", "unguarded")}
    times: dict[str, list[float]] = {"guarded": [], "unguarded": []}
    for _ in range(args.rounds):
        for kind, script in scripts.items():
            seconds, out = _run(script)
            assert out.endswith(f"stored {args.images}"), out
            times[kind].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"images": args.images, "rounds": args.rounds, "cpus": os.cpu_count(), "seconds": times,
           "median_s": med, "ratio_unguarded_to_guarded": round(med["unguarded"] / med["guarded"], 3),
           "command": "python benchmarks/bench_main_guard.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
