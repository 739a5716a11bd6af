"""Fixtures of the reliability suite: the zoo folder, and the backends (Milvus Lite always; the 2.3.5 server for
``-m server``, where its byte limits and parser differ from Lite's)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from zoo import ZooEntry, build_zoo  # noqa: E402


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ZooEntry]]:
    """The zoo folder (built once per module; treat it as read-only) and its entries."""
    root = tmp_path_factory.mktemp("zoo") / "zoo"
    return root, build_zoo(root)


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def backend_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A Milvus Lite file in ``tmp_path``, or (``-m server``) the session's Milvus 2.3.5 server."""
    if request.param == "lite":
        pytest.importorskip("milvus_lite")
        yield str(tmp_path / "zoo.db")
        return
    yield request.getfixturevalue("server_uri")
