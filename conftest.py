"""Runs every Python block of README.md and docs/*.md as a test (sybil), offline.

Each document's blocks run in order in one namespace, in a scratch folder that holds the files the documents name
(``shoe1.jpg``, ``photos/``, ``items.csv``, ``data/00000.tar``, ``catalog/clip.safetensors``, ...: synthetic-world
pictures the demo model knows, and its weights), with the per-user
index of known files and ``$CIR_MILVUS_PATH`` isolated. Blocks that need what a test machine lacks (a Milvus
server, published weights) are marked in the document with ``<!-- skip: next "reason" -->``; the reason shows with
``-rs``. Run them alone with ``python -m pytest README.md docs``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

PICTURES = ("shoe1.jpg", "shoe2.jpg", "shoe3.jpg", "a.jpg", "b.jpg", "q.jpg", "ref.png")


def _jpeg(image: Any) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _scratch_folder(root: Path) -> None:
    """The files the documents name, rendered from the synthetic world."""
    from cir_milvus.models.demo import demo_weights_path
    from cir_milvus.synthetic import SyntheticWorld

    items = SyntheticWorld(seed=3, instances=1).gallery()
    for name, item in zip(PICTURES, items):
        item.render().convert("RGB").save(root / name)
    photos = root / "photos"
    photos.mkdir()
    rows = []
    for i, item in enumerate(items[len(PICTURES):len(PICTURES) + 12]):
        path = photos / f"{item.id}.png"
        item.render().save(path)
        rows.append({"path": f"photos/{path.name}", "price": 10.0 + i, "year": 2020 + i % 4, "product": f"p{i % 5}"})
    data = root / "data"  # WebDataset shards as img2dataset writes them (docs/ingestion.md)
    data.mkdir()
    for shard in range(2):
        with tarfile.open(data / f"{shard:05d}.tar", "w") as tar:
            for i, item in enumerate(items[shard * 4:shard * 4 + 4]):
                key = f"{shard:05d}{i:04d}"
                for suffix, payload in ((".jpg", _jpeg(item.render())), (".json", json.dumps({"key": key}).encode())):
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    (root / "catalog").mkdir()  # a weights file next to a collection (README, "Moving collections")
    shutil.copyfile(demo_weights_path(), root / "catalog" / "clip.safetensors")
    (root / "models").mkdir()
    with (root / "items.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _setup(namespace: dict[str, Any]) -> None:
    root = Path(tempfile.mkdtemp(prefix="cir-docs-"))
    saved = {k: os.environ.get(k) for k in ("CIR_MILVUS_CACHE", "CIR_MILVUS_PATH")}
    os.environ["CIR_MILVUS_CACHE"] = str(root / ".cache")
    os.environ.pop("CIR_MILVUS_PATH", None)
    namespace["__docs_state__"] = (root, os.getcwd(), saved)
    os.chdir(root)
    _scratch_folder(root)


def _teardown(namespace: dict[str, Any]) -> None:
    from cir_milvus import CIRCollection, VectorStore

    root, cwd, saved = namespace.pop("__docs_state__")
    for value in namespace.values():  # release the Milvus Lite files the blocks opened
        if isinstance(value, (CIRCollection, VectorStore)):
            value.close()
    os.chdir(cwd)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(root, ignore_errors=True)


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()


def pytest_xdist_auto_num_workers(config: Any) -> int:
    """``-n auto`` (pyproject's addopts): one worker more than the CPUs this process may use (a container's CPU quota
    counts: ``os.cpu_count()`` there is the host's), as much of the suite waits on subprocesses and servers (2-core
    machine, quiet, one after the other: 315 s with 3 workers against 385 s and 377 s with 2), and at most one per
    3 GiB of memory (a worker holds torch, a tiny model and sometimes a Milvus 2.3.5 server), 8 at most."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        memory_cap = max(1, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (3 << 30))
    except (OSError, ValueError):
        memory_cap = cpus
    return max(1, min(cpus + 1, memory_cap, 8))
