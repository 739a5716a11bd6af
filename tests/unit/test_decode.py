"""Decode at the needed size (draft / reducing_gap) and the decode pool: shared memory, killed workers, orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import photo_like
from PIL import Image

from cir_milvus.errors import ConfigError
from cir_milvus.images import load_image
from cir_milvus.ingest.decode import DecodePool, decode_uint8, default_workers
from cir_milvus.preprocess import (
    DEFAULT_DECODE,
    PreprocessConfig,
    default_decode,
    normalize_uint8,
    preprocess_batch,
    preprocess_image_uint8,
)
from cir_milvus.types import SkipKind


def _jpeg(path: Path, w: int, h: int, seed: int = 0) -> Path:
    photo_like(w, h, seed).save(path, quality=90)
    return path


def test_decode_mode_is_validated_and_recorded_only_when_not_exact() -> None:
    assert "decode" not in PreprocessConfig().to_dict()  # recipes of existing collections compare equal
    d = PreprocessConfig(decode="draft").to_dict()
    assert d["decode"] == "draft" and PreprocessConfig.from_dict(d).decode == "draft"
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()).decode == "exact"
    with pytest.raises(ConfigError, match="decode must be one of"):
        PreprocessConfig(decode="fast")  # type: ignore[arg-type]


def test_default_decode_is_reduce_only_where_the_shortcut_applies() -> None:
    assert DEFAULT_DECODE == "reduce"
    assert PreprocessConfig().decode == "exact"  # the dataclass stays the reference transform
    assert default_decode(PreprocessConfig(mode="clip")) == "reduce"
    assert default_decode(PreprocessConfig(mode="targetpad")) == "reduce"
    assert default_decode(PreprocessConfig(mode="hf_clip")) == "exact"  # LinCIR / RTD recipes unchanged
    assert default_decode(PreprocessConfig(resize_mode="squash")) == "exact"
    assert default_decode(PreprocessConfig(resize_mode="longest")) == "exact"
    assert [default_decode(PreprocessConfig(mode="hf_clip"), m) for m in ("exact", "reduce", "draft")] == [
        "exact", "reduce", "draft"]  # an explicit mode is kept
    with pytest.raises(ConfigError, match="decode must be one of"):
        default_decode(PreprocessConfig(), "fast")


def test_exact_uint8_path_equals_the_reference_preprocessing(tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=32)
    path = _jpeg(tmp_path / "a.jpg", 160, 90)
    u8 = decode_uint8(str(path), cfg)
    assert u8.dtype == np.uint8 and u8.shape == (32, 32, 3)
    np.testing.assert_allclose(normalize_uint8(u8[None], cfg), preprocess_batch([load_image(path)], cfg), atol=1e-6)


def test_draft_decodes_large_jpegs_smaller_and_stays_close(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "big.jpg", 800, 600)
    cfg = PreprocessConfig(size=64, decode="draft")
    img = load_image(path, draft=(128, 128))
    assert img.size == (200, 150)  # 1/4 DCT scaling: both sides still >= 2 x 64
    assert load_image(path).size == (800, 600)
    exact = preprocess_batch([load_image(path)], PreprocessConfig(size=64))
    fast = normalize_uint8(decode_uint8(str(path), cfg)[None], cfg)
    reduce = normalize_uint8(decode_uint8(str(path), cfg.with_decode("reduce"))[None], cfg)
    for x in (fast, reduce):
        cos = float((x.ravel() @ exact.ravel()) / np.linalg.norm(x) / np.linalg.norm(exact))
        assert 0.99 < cos < 1.0  # changed, but only slightly (the embedding effect is measured in bench_peers)
    # PNGs and small JPEGs are untouched by draft
    png = tmp_path / "big.png"
    photo_like(800, 600).save(png)
    assert load_image(png, draft=(128, 128)).size == (800, 600)
    small = _jpeg(tmp_path / "small.jpg", 250, 200)
    assert load_image(small, draft=(128, 128)).size == (250, 200)


def test_box_resize_matches_resize_then_crop_within_one_level() -> None:
    img = photo_like(333, 257, seed=3)
    exact = preprocess_image_uint8(img, PreprocessConfig(size=48)).astype(int)
    boxed = preprocess_image_uint8(img, PreprocessConfig(size=48, decode="reduce")).astype(int)  # < 3x: no reduce
    assert np.abs(exact - boxed).max() <= 1


def test_default_workers_one_per_core_and_the_encoder_keeps_every_core() -> None:
    from cir_milvus.ingest.decode import encoder_threads

    assert [default_workers(c) for c in (1, 2, 4, 64)] == [1, 2, 4, 32]
    assert [encoder_threads(c) for c in (1, 2, 16)] == [1, 2, 16]


def test_decode_workers_run_niced(tmp_path: Path) -> None:
    """The workers yield a contended core to the encoder: they run at a niceness above the parent's."""
    from cir_milvus.ingest.decode import DECODE_NICE

    cfg = PreprocessConfig(size=16)
    png = tmp_path / "a.png"
    Image.new("RGB", (20, 20), (10, 20, 30)).save(png)
    with DecodePool(1, cfg, batch_size=1, slots=1) as pool:
        pool.submit([(0, str(png))]).result().release()  # the worker is past its start-up
        (pid,) = pool.pids
        nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + DECODE_NICE)


def test_pool_writes_shared_memory_and_survives_a_killed_worker(tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=24)
    paths = [str(_jpeg(tmp_path / f"{i}.jpg", 60 + i, 50, seed=i)) for i in range(10)] + [str(tmp_path / "no.jpg")]
    with DecodePool(2, cfg, batch_size=4, slots=3) as pool:
        assert len(pool.pids) == 2
        futs = [pool.submit(list(enumerate(paths[i:i + 4]))) for i in range(0, len(paths), 4)]
        os.kill(pool.pids[0], signal.SIGKILL)
        got = [f.result(timeout=60) for f in futs if f is not None]
        assert [len(b.ok) for b in got] == [4, 4, 2]
        assert got[2].bad and got[2].bad[0][1] is SkipKind.MISSING and "not found" in got[2].bad[0][2]
        ref = preprocess_batch([load_image(p) for p in paths[:4]], cfg)
        np.testing.assert_allclose(normalize_uint8(got[0].pixels, cfg), ref, atol=1e-6)
        for b in got:
            b.release()
        deadline = time.monotonic() + 30
        while len(pool.pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool.pids) == 2 and pool.restarts >= 1  # the dead worker was replaced
        with pytest.raises(ConfigError, match="at most batch_size"):
            pool.submit(list(enumerate(paths[:5])))


def _state(pid: int) -> str | None:
    """The process state letter, or None when the pid is gone (zombies count as dead: 'Z')."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from cir_milvus.ingest.decode import DecodePool
        from cir_milvus.preprocess import PreprocessConfig
        if __name__ == "__main__":
            pool = DecodePool(2, PreprocessConfig(size=16), batch_size=2, slots=2)
            print(*pool.pids, flush=True)
            time.sleep(120)
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, env=env) as proc:
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            pids = [int(x) for x in line.split()]
            assert len(pids) == 2 and all(_state(p) not in (None, "Z") for p in pids)
        finally:
            proc.kill()  # SIGKILL: no cleanup code of the parent runs
            proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_state(p) not in (None, "Z") for p in pids):
        time.sleep(0.1)
    alive = [p for p in pids if _state(p) not in (None, "Z")]
    for p in alive:  # do not leave them behind even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not alive, f"decode workers {alive} outlived their killed parent"


def test_a_script_without_main_guard_runs_once_and_its_workers_decode(tmp_path: Path) -> None:
    # spawn re-runs the parent's main script in every child; decode workers must not (issue 24 item 4): the
    # unguarded script's module-level code runs once, its two workers decode the job (no restarts, no traceback,
    # no warning) and no shared memory is left behind.
    photos = [str(_jpeg(tmp_path / f"{i}.jpg", 80, 60, seed=i)) for i in range(5)]
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        print("module level", flush=True)
        from cir_milvus.ingest.decode import DecodePool
        from cir_milvus.preprocess import PreprocessConfig
        pool = DecodePool(2, PreprocessConfig(size=16), batch_size=8, slots=2)
        batch = pool.submit(list(enumerate({photos!r}))).result(timeout=120)
        print("decoded", len(batch.ok), "restarts", pool.restarts, flush=True)
        batch.release()
        pool.close()
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("module level") == 1, proc.stdout
    assert "decoded 5 restarts 0" in proc.stdout
    assert "Traceback" not in proc.stderr and "decode workers" not in proc.stderr, proc.stderr[-2000:]
    assert "leaked shared_memory" not in proc.stderr
