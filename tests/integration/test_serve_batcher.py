"""The encoder worker of ``cir-milvus serve``: one thread composes, queued queries share one pass, errors stay with
their own query, and the results equal composing each query alone."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from cir_milvus.encoders.fake import FakeEncoder
from cir_milvus.errors import ConfigError
from cir_milvus.serve.batcher import ComposeJob, EncoderWorker


class _Composing:
    """Composes like a collection (image → its fake embedding + text embedding), recording calls and threads."""

    def __init__(self) -> None:
        self.encoder = FakeEncoder(dim=16, seed=1)
        self.calls: list[tuple[str, int, str]] = []

    def compose(self, images: Any, texts: list[str], *, ref_ids: Any = None, composer: str | None = None,
                alpha: float | None = None, **params: Any) -> np.ndarray:
        self.calls.append((composer or "", len(texts), threading.current_thread().name))
        if any(t == "boom" for t in texts):
            raise ConfigError("a text the composer refuses")
        img = self.encoder.encode_texts([f"img:{x}" for x in (images or ref_ids or [""] * len(texts))])
        return np.asarray(img + (alpha or 0.5) * self.encoder.encode_texts(texts), dtype=np.float32)


def _gate(worker: EncoderWorker) -> threading.Event:
    """Block the worker thread until the returned event is set (so that jobs queue up behind it)."""
    release, entered = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(10)

    worker.call(hold)
    assert entered.wait(10)
    return release


def test_queued_queries_share_one_pass_and_match_single_ones() -> None:
    col = _Composing()
    worker = EncoderWorker(col, max_batch=32, name="t")
    try:
        release = _gate(worker)
        jobs = [ComposeJob(text=f"text {i}", composer="slerp", alpha=0.8, image=f"im{i}") for i in range(8)]
        jobs += [ComposeJob(text=f"other {i}", composer="sum", ref_id=f"r{i}") for i in range(3)]
        futures = [worker.submit(j) for j in jobs]
        release.set()
        got = [f.result(10) for f in futures]
        assert worker.passes == 2 and worker.composed == 11  # one pass per (composer, alpha, reference kind)
        assert sorted(c[1] for c in col.calls) == [3, 8]
        assert {c[2] for c in col.calls} == {"cir-encoder-t"}  # only the worker thread composes
        alone = _Composing()
        for j, v in zip(jobs, got):
            want = alone.compose([j.image] if j.image else None, [j.text], ref_ids=[j.ref_id] if j.ref_id else None,
                                 composer=j.composer, alpha=j.alpha)[0]
            np.testing.assert_allclose(v, want, rtol=1e-6)
    finally:
        worker.close()


def test_a_bad_query_fails_alone_and_max_batch_one_disables_batching() -> None:
    col = _Composing()
    worker = EncoderWorker(col, max_batch=32)
    try:
        release = _gate(worker)
        futures = [worker.submit(ComposeJob(text=t, composer="slerp", image="x")) for t in ("ok 1", "boom", "ok 2")]
        release.set()
        assert futures[0].result(10).shape == (16,) and futures[2].result(10).shape == (16,)
        with pytest.raises(ConfigError, match="refuses"):
            futures[1].result(10)
    finally:
        worker.close()
    assert not worker.alive
    col = _Composing()
    single = EncoderWorker(col, max_batch=1)
    try:
        release = _gate(single)
        futures = [single.submit(ComposeJob(text=f"t{i}", composer="slerp", image="x")) for i in range(4)]
        release.set()
        [f.result(10) for f in futures]
        assert [c[1] for c in col.calls] == [1, 1, 1, 1]
    finally:
        single.close()
    with pytest.raises(RuntimeError, match="closed"):
        single.submit(ComposeJob(text="late", composer="slerp"))
