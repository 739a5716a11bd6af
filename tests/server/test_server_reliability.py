"""Reliability on a real Milvus server: a restart in the middle of an ingestion job, searches during ingestion."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cir_milvus import CIRCollection, FakeEncoder
from cir_milvus.images import content_id
from cir_milvus.ingest import ingest

pytestmark = pytest.mark.server


class PacedFake(FakeEncoder):
    """A FakeEncoder that takes ``delay`` seconds per batch and signals after ``signal_after`` images."""

    def __init__(self, delay: float, signal_after: int) -> None:
        super().__init__(dim=16)
        self.delay = delay
        self.signal_after = signal_after
        self.encoded = 0
        self.reached = threading.Event()

    def encode_images(self, images: Any, **kw: Any) -> Any:
        out = super().encode_images(images, **kw)
        time.sleep(self.delay)
        self.encoded += len(images)
        if self.encoded >= self.signal_after:
            self.reached.set()
        return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("imgs")
    paths = []
    for i in range(300):
        arr = np.random.default_rng(i).integers(0, 256, (10, 12, 3), dtype=np.uint8)
        p = root / f"{i:04d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


@pytest.mark.slow  # waits on a real outage/restart: `python -m pytest -m server` runs it (README, Run the tests)
def test_server_restart_mid_ingest_completes_with_the_exact_count(milvus_server, server_uri: str,  # type: ignore[no-untyped-def]
                                                                  folder: list[Path]) -> None:
    if not milvus_server.restartable:
        pytest.skip("CIR_MILVUS_TEST_URI names an external server that the test cannot restart")
    enc = PacedFake(delay=0.05, signal_after=60)
    name = f"r{uuid.uuid4().hex[:10]}"
    col = CIRCollection.create(server_uri, name, encoder=enc)
    result: dict[str, Any] = {}

    def job() -> None:
        try:
            result["report"] = ingest(col, folder, batch_size=10, workers=0, progress=False, retry_timeout=240)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    t = threading.Thread(target=job)
    t.start()
    assert enc.reached.wait(120), "ingestion did not start"
    milvus_server.stop(graceful=0.5)  # SIGTERM then SIGKILL: an abrupt restart
    stopped_at = enc.encoded
    time.sleep(2)
    milvus_server.start()
    t.join(timeout=400)
    assert not t.is_alive(), "ingestion did not finish after the restart"
    assert "error" not in result, repr(result.get("error"))
    report = result["report"]
    assert stopped_at < len(folder), "the server went down mid-job"
    assert report.retries > 0, "the job saw the outage and retried"
    assert report.stored == len(folder) and report.skipped == []
    ids = list(col.iter_ids())
    assert len(ids) == len(set(ids)) == len(col) == len(folder), "exact count, no duplicates"
    assert set(ids) == {content_id(p) for p in folder}
    col.close()


def test_eight_threads_search_during_ingest_without_errors(server_uri: str, folder: list[Path]) -> None:
    col = CIRCollection.create(server_uri, f"s{uuid.uuid4().hex[:10]}", encoder=PacedFake(0.02, 10**9))
    col.add(folder[:20])
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = [0] * 8

    def searcher(k: int) -> None:
        rng = np.random.default_rng(k)
        while not stop.is_set():
            try:
                q = rng.standard_normal((1, 16)).astype(np.float32)
                q /= np.linalg.norm(q)
                hits = col.search_vectors(q, k=5)
                assert len(hits[0]) == 5
                counts[k] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=searcher, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    try:
        report = ingest(col, folder, batch_size=16, workers=0, progress=False)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=60)
    assert errors == [], errors[:3]
    assert all(c > 0 for c in counts), counts
    assert report.stored + report.already_stored == len(folder) and len(col) == len(folder)
    col.close()
