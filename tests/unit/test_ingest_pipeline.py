"""The ingestion pipeline against an in-memory collection: counts, resume, bad inputs, workers, retries, CLI."""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cir_milvus.encoders.fake import FakeEncoder
from cir_milvus.errors import ConfigError, StorageError, TransientStorageError
from cir_milvus.images import content_id
from cir_milvus.ingest import MAX_ASPECT, IngestOptions, IngestReport, ingest, prepare_batch
from cir_milvus.preprocess import PreprocessConfig, preprocess_batch
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.types import SkipKind


class MemoryCollection:
    """What :func:`ingest` uses of a CIRCollection: an encoder and a real :class:`VectorStore` whose injected client
    is this in-memory fake; ``fail_upserts`` / ``fail_lookups`` make the next N calls fail transiently."""

    def __init__(self, encoder: Any, fail_upserts: int = 0, fail_lookups: int = 0) -> None:
        from cir_milvus.storage.client import Capabilities
        from cir_milvus.storage.store import FieldMap, VectorStore

        self.name = "mem"
        self.encoder = encoder
        self.rows: dict[str, dict[str, Any]] = {}
        self.upserts = 0
        self.fail_upserts = fail_upserts
        self.fail_lookups = fail_lookups
        self.lookups = 0
        self.flushes = 0
        self.fail_flush = False
        caps = Capabilities(is_lite=True, version="memory", index_types=frozenset({"FLAT"}), filter_templates=False)
        self.store = VectorStore(self, "mem", uri="memory", caps=caps, fields=FieldMap(dim=encoder.dim),
                                 recipe=None, owns_client=False)

    # the MilvusClient API used by the store
    def query(self, name: str, filter: str, output_fields: list[str], **kw: Any) -> list[dict[str, Any]]:
        assert filter.startswith("id in [")  # the store's "already stored?" lookup: escaped literals
        self.lookups += 1
        if self.fail_lookups:
            self.fail_lookups -= 1
            raise TransientStorageError("Milvus failed to look up ids: connection refused")
        ids = json.loads(filter[len("id in "):], strict=False)
        return [{"id": i} for i in ids if i in self.rows]

    def upsert(self, name: str, rows: list[dict[str, Any]]) -> None:
        if self.fail_upserts:
            self.fail_upserts -= 1
            raise TransientStorageError("Milvus failed to upsert: server unavailable")
        self.upserts += 1
        for r in rows:
            self.rows[r["id"]] = r

    def load_collection(self, name: str) -> None:
        pass

    def flush(self, name: str) -> None:
        if self.fail_flush:
            raise TransientStorageError("Milvus failed to flush: connection refused")  # transient: retried, then given up
        self.flushes += 1


class PixelFakeEncoder(FakeEncoder):
    """A fake with the pixel API (``preprocess_config`` + ``encode_pixels``), so the worker path runs without torch."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim=dim)
        self.preprocess_config = PreprocessConfig(size=16)
        self._proj = np.random.default_rng(1).standard_normal((3 * 16 * 16, dim)).astype(np.float32) / 16
        self.pixel_batches: list[int] = []

    def encode_pixels(self, pixels: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        self.pixel_batches.append(len(pixels))
        x = pixels.reshape(len(pixels), -1) @ self._proj  # [N, 768] @ [768, D] -> [N, D]
        return x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x

    def encode_images(self, images: Any, *, normalize: bool = True, **kw: Any) -> np.ndarray:
        from cir_milvus.images import load_image

        return self.encode_pixels(preprocess_batch([load_image(i) for i in images], self.preprocess_config),
                                  normalize=normalize)


def _save(img: Image.Image, path: Path, **kw: Any) -> Path:
    img.save(path, **kw)
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's signature) with no real pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def make_bad_inputs(root: Path) -> tuple[dict[str, str], list[str]]:
    """Every awkward input named in the issue. Returns ``({file: expected skip kind}, [files that must be stored])``."""
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    good = _save(noise, root / "good.png")
    (root / "zero.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(_encode(noise, "JPEG")[:200])
    (root / "truncated.png").write_bytes(good.read_bytes()[:100])
    (root / "text.png").write_text("this is not an image")
    (root / "bomb.png").write_bytes(_png_header_only(20_000, 20_000))
    _save(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), root / "cmyk.jpg")
    _save(Image.fromarray(np.full((20, 30), 40_000, dtype=np.uint16)), root / "sixteen_bit.png")
    pal = Image.new("P", (30, 20), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.info["transparency"] = 0
    _save(pal, root / "palette_transparent.png", transparency=0)
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(noise, root / "exif_rotated.jpg", exif=exif.tobytes())
    _save(Image.new("RGB", (1, 4000), (10, 200, 30)), root / "tall_1x4000.png")
    _save(Image.new("RGB", (4000, 2), (200, 10, 30)), root / "wide_4000x2.png")
    skipped = {"zero.jpg": "empty", "truncated.jpg": "corrupt", "truncated.png": "corrupt", "text.png": "not_an_image",
               "bomb.png": "too_large"}
    stored = ["good.png", "cmyk.jpg", "sixteen_bit.png", "palette_transparent.png", "animated.gif",
              "exif_rotated.jpg", "tall_1x4000.png", "wide_4000x2.png"]
    return skipped, stored


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _images(root: Path, n: int, offset: int = 0) -> list[Path]:
    out = []
    for i in range(n):
        arr = np.random.default_rng(offset + i).integers(0, 256, (12, 16, 3), dtype=np.uint8)
        out.append(_save(Image.fromarray(arr), root / f"img{offset + i:04d}.png"))
    return out


# -- counts and resume ----------------------------------------------------------------------------------------------


def test_counts_duplicates_resume_and_summary(tmp_path: Path) -> None:
    paths = _images(tmp_path, 20)
    col = MemoryCollection(FakeEncoder(dim=8))
    first = ingest(col, [*paths[:12], paths[0]], batch_size=5, options=IngestOptions(lookup_batches=1), progress=False)
    assert (first.seen, first.stored, first.duplicates, first.already_stored) == (13, 12, 1, 0)
    assert first.encoded == 12 and len(col.rows) == 12
    second = ingest(col, paths, batch_size=5, options=IngestOptions(lookup_batches=1), progress=False)
    assert (second.stored, second.already_stored, second.encoded) == (8, 12, 8)
    assert col.lookups == 3 + 4, "one 'already stored?' lookup per batch with lookup_batches=1"
    col.lookups = 0
    assert ingest(col, paths, batch_size=5, progress=False).already_stored == 20
    assert col.lookups == 1, "by default one lookup covers 8 batches"
    assert set(col.rows) == {content_id(p) for p in paths}
    text = second.summary()
    assert "stored 8" in text and "already stored 12" in text and "images/s" in text
    d = second.to_dict()
    assert d["seen"] == d["stored"] + d["already_stored"] + d["duplicates"] + d["skipped"]
    again = ingest(col, paths, batch_size=5, progress=False, skip_existing=False)
    assert again.encoded == 20 and len(col.rows) == 20, "skip_existing=False re-encodes and overwrites"


def test_rows_hold_normalised_vectors_raw_norms_sources_and_metadata(tmp_path: Path) -> None:
    paths = _images(tmp_path, 3)
    enc = FakeEncoder(dim=8)
    col = MemoryCollection(enc)
    ingest(col, [("a", paths[0], {"k": 1, "bad": float("nan"), "np": np.int64(3)})], progress=False)
    row = col.rows["a"]
    raw = enc.encode_images([paths[0]], normalize=False)[0]
    assert np.allclose(np.asarray(row["vector"]) * row["norm"], raw, atol=1e-5)
    assert row["source"] == str(paths[0])
    assert row["metadata"] == {"k": 1, "bad": None, "np": 3}, "metadata is made JSON-safe"


def test_user_ids_are_validated_and_reported(tmp_path: Path) -> None:
    paths = _images(tmp_path, 2)
    col = MemoryCollection(FakeEncoder(dim=8))
    rep = ingest(col, [("x" * 600, paths[0], {}), ("ok", paths[1], {})], progress=False)
    assert rep.stored == 1 and len(rep.skipped) == 1 and rep.skipped[0].kind is SkipKind.INVALID_ID


# -- bad inputs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-process"])
def test_every_bad_input_is_stored_or_reported(tmp_path: Path, workers: int) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    expect_skipped, expect_stored = make_bad_inputs(root)
    enc = PixelFakeEncoder()
    col = MemoryCollection(enc)
    report_path = tmp_path / "skips.jsonl"
    rep = ingest(col, root, batch_size=4, workers=workers, skip_report=report_path, progress=False)
    lines = [json.loads(line) for line in report_path.read_text().splitlines()]
    got = {Path(line["source"]).name: line["kind"] for line in lines}
    assert got == expect_skipped
    assert all(line["reason"] for line in lines)
    stored_sources = sorted(Path(r["source"]).name for r in col.rows.values())
    assert stored_sources == sorted(expect_stored)
    assert rep.stored == len(expect_stored) and rep.skipped_by_reason == {
        "corrupt": 2, "empty": 1, "not_an_image": 1, "too_large": 1}
    assert enc.pixel_batches, "the pixel path was used"
    assert "skipped 5" in rep.summary() and str(report_path) in rep.summary()


def test_worker_and_in_process_paths_give_identical_vectors(tmp_path: Path) -> None:
    paths = _images(tmp_path, 6)
    a, b = MemoryCollection(PixelFakeEncoder()), MemoryCollection(PixelFakeEncoder())
    ingest(a, paths, batch_size=4, workers=0, progress=False)
    ingest(b, paths, batch_size=4, workers=1, progress=False)
    for i in a.rows:
        assert np.array_equal(a.rows[i]["vector"], b.rows[i]["vector"])


def test_prepare_batch_matches_preprocess_batch_and_caps_aspect(tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=16)
    paths = _images(tmp_path, 3)
    ok, pixels, bad = prepare_batch(list(enumerate(map(str, paths))), cfg.to_dict())
    from cir_milvus.images import load_image

    assert ok == [0, 1, 2] and bad == []
    assert np.array_equal(pixels, preprocess_batch([load_image(p) for p in paths], cfg))
    strip = _save(Image.new("RGB", (1, 5000), (0, 0, 0)), tmp_path / "strip.png")
    ok, pixels, _ = prepare_batch([(0, str(strip))], cfg.to_dict())
    assert ok == [0] and pixels.shape == (1, 3, 16, 16)
    assert MAX_ASPECT == 32.0


def test_pixel_cap_is_configurable(tmp_path: Path) -> None:
    paths = _images(tmp_path, 1)  # 16 x 12 = 192 pixels
    col = MemoryCollection(FakeEncoder(dim=8))
    rep = ingest(col, paths, options=IngestOptions(max_pixels=100), progress=False)
    assert rep.stored == 0 and rep.skipped_by_reason == {"too_large": 1}


def test_tiny_torch_encoder_pipeline_matches_encode_images(tmp_path: Path, tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    paths = _images(tmp_path, 5)
    col = MemoryCollection(tiny_torch_encoder)
    ingest(col, paths, batch_size=2, workers=0, progress=False)
    raw = tiny_torch_encoder.encode_images(paths, normalize=False)
    for p, r in zip(paths, raw):
        row = col.rows[content_id(p)]
        assert np.allclose(np.asarray(row["vector"]) * row["norm"], r, atol=1e-4)


# -- reliability ----------------------------------------------------------------------------------------------------


def test_transient_storage_failures_are_retried_to_the_exact_count(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("cir_milvus.ingest.pipeline.time.sleep", lambda s: None)
    paths = _images(tmp_path, 10)
    col = MemoryCollection(FakeEncoder(dim=8), fail_upserts=3, fail_lookups=2)
    rep = ingest(col, paths, batch_size=3, progress=False)
    assert rep.stored == 10 and len(col.rows) == 10 and rep.retries == 5


def test_retry_gives_up_after_the_timeout_and_skips_permanent_errors(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.errors import CollectionNotFoundError

    clock = [0.0]
    monkeypatch.setattr("cir_milvus.ingest.pipeline.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr("cir_milvus.ingest.pipeline.time.monotonic", lambda: clock[0])
    calls = []

    def down() -> None:
        calls.append(1)
        raise TransientStorageError("connection refused")

    with pytest.raises(StorageError, match="still failing after"):
        RetryPolicy(timeout=30).call(down, "upsert")
    assert 4 <= len(calls) <= 8 and clock[0] <= 30

    def missing() -> None:
        calls.append(2)
        raise CollectionNotFoundError("no collection")

    with pytest.raises(CollectionNotFoundError):
        RetryPolicy(timeout=30).call(missing, "upsert")
    assert calls.count(2) == 1


def test_a_killed_decode_worker_is_replaced_and_the_count_stays_exact(tmp_path: Path) -> None:
    """kill -9 of the decode workers mid-ingest (twice): the job finishes with every image stored once, no hang."""
    import multiprocessing
    import os
    import signal
    import threading

    class Killer(PixelFakeEncoder):
        kills = 0

        def encode_pixels(self, pixels: np.ndarray, *, normalize: bool = True) -> np.ndarray:
            if len(self.pixel_batches) in (0, 2):  # first and third batch: every decode worker dies
                for p in multiprocessing.active_children():
                    if p.name == "cir-decode" and p.pid is not None:
                        os.kill(p.pid, signal.SIGKILL)
                        Killer.kills += 1
            return super().encode_pixels(pixels, normalize=normalize)

    col = MemoryCollection(Killer())
    paths = _images(tmp_path, 24)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(ingest(col, paths, batch_size=3, workers=2, progress=False)),
                         daemon=True)
    t.start()
    t.join(timeout=120)  # the watchdog: a hang fails the test instead of the suite
    assert not t.is_alive(), "ingest hung after a decode worker was killed"
    assert Killer.kills >= 2
    rep = out[0]
    assert rep.stored == 24 and len(col.rows) == 24 and not rep.skipped
    assert not [p for p in multiprocessing.active_children() if p.name == "cir-decode"]


def test_encoder_errors_stop_the_job_cleanly(tmp_path: Path) -> None:
    class Broken(FakeEncoder):
        def encode_images(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("CUDA out of memory")

    col = MemoryCollection(Broken(dim=8))
    with pytest.raises(RuntimeError, match="out of memory"):
        ingest(col, _images(tmp_path, 5), batch_size=2, progress=False)


def test_bad_arguments(tmp_path: Path) -> None:
    col = MemoryCollection(FakeEncoder(dim=8))
    with pytest.raises(ConfigError, match="batch_size"):
        ingest(col, [], batch_size=0)
    with pytest.raises(ConfigError, match="workers"):
        ingest(col, [], workers=-1)
    assert isinstance(ingest(col, [], progress=False), IngestReport)


def test_shards_end_to_end_with_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ingest_helpers import write_shard

    imgs = [_encode(Image.fromarray(np.full((8, 8, 3), i * 20, dtype=np.uint8)), "PNG") for i in range(6)]
    write_shard(tmp_path / "00000.tar", [(f"{i:09d}", {"caption": f"c{i}"}, imgs[i]) for i in range(3)])
    write_shard(tmp_path / "00001.tar", [(f"{i:09d}", {"caption": f"c{i}"}, imgs[i] if i != 4 else None)
                                         for i in range(3, 6)])
    col = MemoryCollection(FakeEncoder(dim=8))
    rep = ingest(col, str(tmp_path / "{00000..00001}.tar"), batch_size=2, progress=True)
    assert rep.stored == 5 and rep.skipped_by_reason == {"no_image": 1}
    assert col.rows["000000002"]["metadata"] == {"caption": "c2", "shard": "00000.tar"}
    assert col.rows["000000002"]["source"] == "00000.tar#000000002"
    err = capsys.readouterr().err
    assert "img/s" in err and "skipped=1" in err


def test_the_encoder_keeps_every_core_without_spinning_and_its_setting_is_restored(tmp_path: Path) -> None:
    from cir_milvus.ingest.decode import encoder_threads, usable_cpus

    class Threaded(PixelFakeEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.setting: tuple[int | None, bool] = (7, True)
            self.during: list[tuple[int | None, bool]] = []

        def set_threads(self, threads: int | None, *, spin: bool = True) -> tuple[int | None, bool]:
            prev, self.setting = self.setting, (threads, spin)
            return prev

        def encode_pixels(self, pixels: np.ndarray, *, normalize: bool = True) -> np.ndarray:
            self.during.append(self.setting)
            return super().encode_pixels(pixels, normalize=normalize)

    enc = Threaded()
    rep = ingest(MemoryCollection(enc), _images(tmp_path, 6), batch_size=3, workers=1, progress=False)
    assert rep.stored == 6
    assert set(enc.during) == {(encoder_threads(), False)}  # no busy-waiting beside the decode worker
    assert encoder_threads() == usable_cpus()
    assert enc.setting == (7, True)


def test_a_job_ends_with_one_flush_and_a_failed_flush_loses_nothing(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Rows are sealed after the job (searches right after an ingest scan unsealed rows otherwise); a resumed job
    with nothing new does not flush, and a flush that fails is a warning, not a failed job."""
    col = MemoryCollection(FakeEncoder(dim=8))
    paths = _images(tmp_path, 5)
    assert ingest(col, paths, batch_size=2, workers=0, progress=False).stored == 5
    assert col.flushes == 1
    assert ingest(col, paths, batch_size=2, workers=0, progress=False).already_stored == 5
    assert col.flushes == 1
    col.fail_flush = True
    more = _images(tmp_path, 3, offset=10)
    with caplog.at_level(logging.WARNING):
        rep = ingest(col, more, batch_size=2, workers=0, progress=False, retry_timeout=0.3)
    assert rep.stored == 3 and len(col.rows) == 8
    assert "could not flush" in caplog.text
