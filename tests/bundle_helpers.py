"""Test helpers shared by the bundle-identity tests (importable as ``bundle_helpers``: ``tests/`` is on ``sys.path``
because of ``tests/conftest.py``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def swap_weights_and_rewrite_manifest(folder: Path) -> None:
    """Other weights (every float of weights.bin scaled by 1.5) behind a manifest rewritten to list their checksums."""
    weights = folder / "weights.bin"
    arr = np.frombuffer(weights.read_bytes(), dtype=np.float32).copy()
    arr *= np.float32(1.5)
    weights.write_bytes(arr.tobytes())
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in manifest["files"]}
    manifest_path.write_text(json.dumps(manifest))
