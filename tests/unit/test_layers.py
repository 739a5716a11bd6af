"""The layers of the design (docs/design.md) hold: ``lint-imports`` keeps pyproject's import-linter contracts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("importlinter.cli", reason="the layer contract needs import-linter: pip install -e '.[dev]'")
    # lint_imports runs logging.config.dictConfig, which disables every logger that exists already: put them back,
    # so that later tests still see the library's log records
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    disabled = {lg: lg.disabled for lg in loggers}
    try:
        status = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    finally:
        for lg, was in disabled.items():
            lg.disabled = was
    out = capsys.readouterr().out
    assert status == 0, out
    assert "layers: nothing imports upward KEPT" in out, out
