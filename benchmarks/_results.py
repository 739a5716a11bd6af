"""Writing a benchmark's results: one JSON file (folders made as needed), and a line saying where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(res: dict[str, Any], out: Path, note: str = "") -> dict[str, Any]:
    """Write ``res`` to ``out`` as indented JSON, print ``wrote OUT`` (plus ``note``) and return ``res``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}{note}")
    return res
