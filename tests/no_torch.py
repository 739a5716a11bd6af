"""Shared by the torch-free tests: source code that makes torch, torchvision and open_clip unimportable.

A child process runs ``BLOCKER`` first (``python -c BLOCKER + child_code``), so any import of those packages fails
as it would in a venv with only ``cir_milvus[onnx]`` installed.
"""

from __future__ import annotations

BLOCKER = '''
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "open_clip", "torchvision"}:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
'''
