"""Test helpers shared by the unit and integration ingestion tests (importable as ``ingest_helpers``: ``tests/`` is
on ``sys.path`` because of ``tests/conftest.py``)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth gradients + a few shapes + sensor noise: JPEG-friendly like a photo, unlike white noise (the decode
    shortcuts change such an image by a small, nonzero amount when it is far above the model's input size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(xx / (w / rng.uniform(1, 4)) + c) * np.cos(yy / (h / rng.uniform(1, 4)))
                     for c in range(3)], axis=-1)  # [H, W, 3]
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, min(w, h) / 3)
        base[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    base += rng.normal(0, 6, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


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

