"""Helpers shared by the ``cir-milvus serve`` tests and benchmark (importable as ``serve_helpers``: ``tests/`` is on
``sys.path`` through its conftest)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from cir_milvus.synthetic import SyntheticWorld


def write_gallery(root: Path, n: int = 40, seed: int = 3) -> tuple[list[str], list[dict[str, Any]]]:
    """Render ``n`` synthetic gallery images into ``root``; returns their paths and metadata (the attributes)."""
    root.mkdir(parents=True, exist_ok=True)
    paths, metadata = [], []
    for item in SyntheticWorld(seed=seed, instances=1).gallery()[:n]:
        p = root / f"{item.id}.png"
        item.render().save(p)
        paths.append(str(p))
        a = item.attributes
        metadata.append({"shape": a.shape, "colour": a.colour, "size": a.size, "background": a.background})
    return paths, metadata


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
