"""Test helpers shared by the unit and integration ingestion tests (importable as ``ingest_helpers``: ``tests/`` is
on ``sys.path`` because of ``tests/conftest.py``)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path


def write_shard(path: Path, samples: list[tuple[str, dict[str, object] | None, bytes | None]],
                caption: bool = False) -> Path:
    """A tar like img2dataset writes: ``key.jpg`` + ``key.json`` (+ ``key.txt``) per sample, in key order."""
    with tarfile.open(path, "w") as tar:
        for key, meta, img in samples:
            members: list[tuple[str, bytes]] = []
            if img is not None:
                members.append((f"{key}.jpg", img))
            if meta is not None:
                members.append((f"{key}.json", json.dumps(meta).encode()))
            if caption:
                members.append((f"{key}.txt", f"caption of {key}".encode()))
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_synthetic_pngs(root: Path, n: int, seed: int = 5) -> list[Path]:
    """``n`` rendered synthetic-world gallery images saved as ``root/<id>.png`` (a module-scoped image folder)."""
    from cir_milvus.synthetic import SyntheticWorld

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for it in SyntheticWorld(seed=seed, instances=1).gallery()[:n]:
        p = root / f"{it.id}.png"
        it.render().save(p)
        out.append(p)
    return out

