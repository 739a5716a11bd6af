"""Ctrl-C during ``cir-milvus ingest``: exit code 130, no traceback, a line saying what is stored and how to resume;
re-running the command finishes the job without re-encoding what was stored."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("open_clip")

from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration


def test_ctrl_c_during_ingest_ends_cleanly_and_resumes(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    # enough images that the job is still running when the interrupt lands (~2 s at this machine's ~190 images/s)
    n = 400
    for it in SyntheticWorld(seed=9, instances=1).gallery()[:n]:
        it.render().save(imgs / f"{it.id}.png")
    db = str(tmp_path / "i.db")
    cmd = [sys.executable, "-m", "cir_milvus.cli", "ingest", str(imgs), "--uri", db, "--model", "cir-demo-tiny",
           "--device", "cpu", "--workers", "0", "--batch-size", "4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # a background job of a non-interactive shell (nohup ... &) inherits SIGINT ignored, and Python then keeps
    # ignoring it: give the CLI the default disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        # tqdm writes its bar to stderr; interrupt once a few batches are stored
        buf = ""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ch = proc.stderr.read(1)
            if not ch:
                break
            buf += ch
            if ch == "]" and max((int(k) for k in re.findall(r"stored=(\d+)", buf)), default=0) >= 8:
                break
        assert proc.poll() is None, f"ingest ended before it could be interrupted:\n{buf[-2000:]}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pipe in (proc.stdout, proc.stderr):  # a failure above must not leave them to a later test's GC
            if pipe is not None:
                pipe.close()
    err = buf + err
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "interrupted: collection 'images'" in err and "run the same command again to resume" in err
    held = int(err.split("now holds ")[1].split()[0])
    assert 0 < held < n

    done = subprocess.run(cmd + ["--no-progress"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"already stored {held}" in done.stdout and f"holds {n} images" in done.stdout
