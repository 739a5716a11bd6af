"""The onnxruntime backend (serves exported bundles without torch). Filled in by the export work."""

from __future__ import annotations
