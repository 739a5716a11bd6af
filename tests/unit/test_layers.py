"""The layers of the design (docs/design.md) hold: ``lint-imports`` keeps pyproject's import-linter contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("importlinter.cli", reason="the layer contract needs import-linter: pip install -e '.[dev]'")
    status = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "layers: nothing imports upward KEPT" in out, out
