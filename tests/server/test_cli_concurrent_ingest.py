"""Two ``cir-milvus ingest`` processes that create the same new collection at the same moment both store their images
(issue 25 item 3): creation is create-or-open with the recipe compared, so the one that loses the race opens the
collection the other made instead of failing with "already exists"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("open_clip")

from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

# two CLI processes loading models and ingesting (about a minute): `python -m pytest -m server` runs it
pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_two_cli_ingests_create_one_collection_and_store_every_row(server_uri: str, tmp_path: Path) -> None:
    from cir_milvus.storage.store import VectorStore

    gallery = SyntheticWorld(seed=11, instances=1).gallery()[:40]
    folders = [tmp_path / "a", tmp_path / "b"]
    for i, folder in enumerate(folders):
        folder.mkdir()
        for it in gallery[i::2]:  # disjoint halves
            it.render().save(folder / f"{it.id}.png")
    name = "cli_race"
    assert not VectorStore.exists(server_uri, name)
    procs = [subprocess.Popen([sys.executable, "-m", "cir_milvus.cli", "ingest", str(folder), "--uri", server_uri,
                               "--collection", name, "--model", "cir-demo-tiny", "--device", "cpu", "--workers", "0",
                               "--no-progress", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for folder in folders]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    assert sum(json.loads(out)["stored"] for out, _ in results) == len(gallery)  # each stored its own half
    with VectorStore.open(server_uri, name) as store:
        assert len(store) == len(gallery)
        sources = {Path(row["source"]).name for row in store.iter_rows(output_fields=["source"])}
    assert sources == {f"{it.id}.png" for it in gallery}
