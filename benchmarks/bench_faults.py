"""Faults, counted: bad input, hostile ids, kill -9 of the CLI and of decode workers, server restarts, search load.

    python benchmarks/bench_faults.py                 # writes benchmarks/results/faults.json
    python benchmarks/bench_faults.py --quick         # fewer kills, a smaller folder
    python benchmarks/bench_faults.py --server        # also the 2.3.5 server: zoo, ids, restarts mid-ingest

Each section prints one row of the table in the README ("What happens with bad input") and adds its counts to the
JSON:

1. **Zoo** (``tests/reliability/zoo.py``: 51 entries, 32 good images): through ``CIRCollection.add`` in one call and
   through ``cir-milvus ingest`` (a subprocess); stored / reported counts, retries, seconds.
2. **Id payloads** (13 kinds: quotes, backslash, newline, injection attempts, unicode, over the byte limit, empty):
   per id, stored or reported; for stored ones, whether ``get_vectors`` and ``delete`` touched exactly that row.
3. **kill -9 of the CLI** mid-ingest ``--kills`` times, then a plain re-run: final count, duplicates, and the
   processes the killed CLI left behind (decode workers, resource tracker, a Lite server).
4. **kill -9 of a decode worker** ``--worker-kills`` times, each in a fresh ingest: finished with the exact count,
   crashed, or hung (no exit within ``--hang-seconds``).
5. **Concurrent search during an ingest**: ``--threads`` threads run composed-vector searches against the collection
   while ``ingest()`` writes to it; queries and errors.
6. (``--server``) **Server restarts mid-ingest**: the 2.3.5 server is stopped and restarted ``--restarts`` times
   during one CLI ingest; final count and duplicates.
7. **Filters**: a user's ``%`` as a ``like`` value (rows returned vs rows literally ``%``), a placeholder inside
   quotes, a filter the server cannot parse (error class, seconds: never retried); Lite and (``--server``) 2.3.5.
8. (``--server``) **Concurrent creators**: two processes ``create(..., exist_ok=True)`` one new collection at the same
   moment, ``--races`` times with identical recipes (both rows stored) and with different ones (one refused).
9. (``--server``) **Reopen after a restart**: stop, start, open at once, ``--reopens`` times; failures.
10. **Tampered bundles**: a collection built by torch (the shipped demo model, 32 images of the folder) opened with
    the bundle exported from it and with copies whose weights were changed (scaled, or Gaussian noise) behind a
    manifest rewritten to match: opened or refused (the worst re-encoding cosine), seconds; then once with the
    sources gone (opens unverified, with a warning).

Data: the synthetic world rendered to PNG (``--images``), model: the shipped demo model for CLI runs (torch, CPU),
``FakeEncoder`` for the in-process parts. Counts are exact; seconds depend on the machine (say which).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "reliability"))
sys.path.insert(0, str(REPO / "tests"))  # serve_helpers: the service on a real uvicorn, shared with the serve tests
RESULTS = REPO / "benchmarks" / "results" / "faults.json"


# -- helpers ------------------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "cir_milvus.cli", *args]


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
            parents[int(d)] = int(stat[1])
        except (OSError, IndexError, ValueError):
            continue
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.extend(kids)
        todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _count_and_dupes(uri: str, name: str) -> tuple[int, int]:
    """(rows by count(*), rows minus distinct ids) read with a plain pymilvus client."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        client.load_collection(name)
        n = int(client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"])
        it = client.query_iterator(name, batch_size=1000, filter="", output_fields=["id"])
        ids: list[str] = []
        try:
            while True:
                page = it.next()
                if not page:
                    break
                ids.extend(r["id"] for r in page)
        finally:
            it.close()
        return n, len(ids) - len(set(ids))
    finally:
        client.close()


def _render_folder(folder: Path, n: int) -> list[Path]:
    from cir_milvus.synthetic import SyntheticWorld

    folder.mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(seed=11, instances=max(1, n // 512 + 1))
    items = world.gallery()[:n]
    paths = []
    for it in items:
        p = folder / f"{it.id}.png"
        it.render().save(p)
        paths.append(p)
    if len(paths) < n:
        raise SystemExit(f"the synthetic world has only {len(paths)} images; use --images {len(paths)} or fewer")
    return paths


class _RetryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "retry" in msg.lower():
            self.lines.append(msg)


# -- 1. the zoo ---------------------------------------------------------------------------------------------------


def bench_zoo(work: Path, uri: str, label: str) -> dict[str, Any]:
    from zoo import build_zoo

    from cir_milvus import CIRCollection
    from cir_milvus.encoders.fake import FakeEncoder
    from cir_milvus.images import content_id

    root = work / f"zoo-{label}"
    entries = build_zoo(root)
    good = [e for e in entries if e.good]
    out: dict[str, Any] = {"entries": len(entries), "good": len(good)}

    counter = _RetryCounter()
    logging.getLogger().addHandler(counter)
    name = f"zoo_add_{uuid.uuid4().hex[:6]}"
    t = time.perf_counter()
    try:
        col = CIRCollection.create(uri, name, encoder=FakeEncoder(dim=32))
        try:
            res = col.add([e.path for e in entries], batch_size=16)
            ids = [i for i in res if i is not None]  # one entry per input, None where reported
            stored_ok = sorted(ids) == sorted(content_id(e.path) for e in good)
            out["add"] = {"stored": len(ids), "reported": len(res.skipped), "exact": stored_ok and
                          len(res.skipped) == len(entries) - len(good), "rows": len(col),
                          "retry_log_lines": len(counter.lines), "seconds": round(time.perf_counter() - t, 2)}
        finally:
            col.close()
    except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not stop
        out["add"] = {"error": f"{type(e).__name__}: {str(e)[:300]}", "seconds": round(time.perf_counter() - t, 2)}
    finally:
        logging.getLogger().removeHandler(counter)

    report, summary = work / f"zoo-{label}.jsonl", work / f"zoo-{label}.json"
    t = time.perf_counter()
    run = subprocess.run(_cli(["ingest", str(root), "--uri", uri, "--collection", f"zoo_cli_{uuid.uuid4().hex[:6]}",
                               "--model", "cir-demo-tiny", "--device", "cpu", "--skip-report", str(report), "--summary-json", str(summary),
                               "--no-progress", "--batch-size", "16"]),
                         env=_env(), capture_output=True, cwd=work, timeout=1800, check=False)
    seconds = round(time.perf_counter() - t, 2)
    text = run.stdout.decode("utf-8", "replace") + run.stderr.decode("utf-8", "replace")
    if run.returncode == 0 and summary.is_file():
        s = json.loads(summary.read_text(encoding="utf-8"))
        kinds: dict[str, int] = {}
        for line in report.read_text(encoding="utf-8").splitlines():
            k = json.loads(line)["kind"]
            kinds[k] = kinds.get(k, 0) + 1
        out["cli"] = {"stored": s["stored"], "reported": s["skipped"], "retries": s["retries"],
                      "retry_log_lines": sum("retry" in ln.lower() for ln in text.splitlines()),
                      "reported_by_kind": dict(sorted(kinds.items())), "seconds": seconds}
    else:
        out["cli"] = {"error": f"exit {run.returncode}: {text[-400:]}", "seconds": seconds}
    return out


# -- 2. id payloads -----------------------------------------------------------------------------------------------


def bench_ids(uri: str) -> dict[str, Any]:
    """One call with all 13 ids (does one bad id sink it?), then each id alone beside a marker row: stored or
    reported; for stored ones, ``get_vectors`` returns exactly it and ``delete`` removes exactly it."""
    import io

    from zoo import _photo, id_kinds

    from cir_milvus import CIRCollection
    from cir_milvus.encoders.fake import FakeEncoder

    kinds = id_kinds()
    images = []
    for i in range(len(kinds) + 1):
        buf = io.BytesIO()
        _photo(20, 16, 500 + i).save(buf, format="PNG")
        images.append(buf.getvalue())
    marker = images.pop()
    col = CIRCollection.create(uri, f"ids_{uuid.uuid4().hex[:6]}", encoder=FakeEncoder(dim=32))
    try:
        res = col.add(images, ids=[rid for _, rid, _ in kinds])
        one_call: dict[str, Any] = {"stored": sum(i is not None for i in res), "reported": len(res.skipped),
                                    "error": None}
    except Exception as e:  # noqa: BLE001 - recorded
        one_call = {"stored": 0, "reported": 0, "error": f"{type(e).__name__}: {str(e)[:200]}"}
    finally:
        col.close()
    rows: dict[str, str] = {}
    for (name, rid, _), img in zip(kinds, images):
        col = CIRCollection.create(uri, f"id_{name}_{uuid.uuid4().hex[:6]}", encoder=FakeEncoder(dim=32))
        try:
            res = col.add([marker, img], ids=["marker", rid])
            if rid not in res:
                rows[name] = "reported" if res.skipped else "dropped silently"
                continue
            got = set(col.get_vectors([rid]))
            deleted = col.delete(ids=[rid])
            left = set(col.iter_ids())
            exact = got == {rid} and left == {"marker"}
            rows[name] = "exact" if exact else f"WRONG (get {len(got)} rows, delete said {deleted}, left {len(left)})"
        except Exception as e:  # noqa: BLE001 - recorded
            rows[name] = f"error: {type(e).__name__}: {str(e)[:120]}"
        finally:
            col.close()
    n_exact = sum(v == "exact" for v in rows.values())
    n_rep = sum(v == "reported" for v in rows.values())
    return {"kinds": len(kinds), "one_call": one_call, "exact": n_exact, "reported": n_rep,
            "wrong": len(kinds) - n_exact - n_rep, "per_id": rows}


# -- 3. kill -9 of the CLI, resume --------------------------------------------------------------------------------


def bench_cli_kills(work: Path, folder: Path, n_images: int, kills: int, uri: str, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    name = f"kills_{uuid.uuid4().hex[:6]}"
    args = ["ingest", str(folder), "--uri", uri, "--collection", name, "--model", "cir-demo-tiny", "--device", "cpu", "--no-progress",
            "--batch-size", "32", "--workers", "2"]
    leftovers: list[str] = []
    killed_after: list[float] = []
    for _ in range(kills):
        proc = subprocess.Popen(_cli(args), env=_env(), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait until it is ingesting (its decode workers exist), then kill at a random moment
        deadline = time.monotonic() + 120
        while proc.poll() is None and not _decode_workers(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        delay = rng.uniform(1.0, 10.0)
        time.sleep(delay)
        kids = _children(proc.pid)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed_after.append(round(delay, 1))
        proc.wait()
        time.sleep(3.0)  # let orphans notice (a watchdog polls) before counting them
        for k in kids:
            if _alive(k):
                leftovers.append(_cmdline(k)[:120])
                try:
                    os.kill(k, signal.SIGKILL)  # clean up for the next round (counted above)
                except OSError:
                    pass
    summary = work / f"{name}.json"
    final = subprocess.run(_cli([*args, "--summary-json", str(summary)]), env=_env(), cwd=work, capture_output=True,
                           timeout=3600, check=False)
    out: dict[str, Any] = {"kills": len(killed_after), "killed_after_s": killed_after,
                           "processes_left_behind": len(leftovers), "left_behind": sorted(set(leftovers))[:5]}
    if final.returncode != 0:
        out["resume_error"] = final.stderr.decode("utf-8", "replace")[-400:]
        return out
    rows, dupes = _count_and_dupes(uri, name)
    s = json.loads(summary.read_text())
    out.update({"images": n_images, "rows": rows, "duplicates": dupes, "exact": rows == n_images and dupes == 0,
                "resume_stored": s["stored"], "resume_already_stored": s["already_stored"]})
    return out


# -- 4. kill -9 of a decode worker --------------------------------------------------------------------------------


def _decode_workers(pid: int) -> list[int]:
    return [k for k in _children(pid) if "multiprocessing" in _cmdline(k) and "resource_tracker" not in _cmdline(k)]


def bench_worker_kills(work: Path, folder: Path, n_images: int, tries: int, hang_seconds: float,
                       seed: int) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    outcomes: list[str] = []
    for i in range(tries):
        db = str(work / f"worker-kill-{i}.db")
        name = "wk"
        summary = work / f"worker-kill-{i}.json"
        proc = subprocess.Popen(_cli(["ingest", str(folder), "--uri", db, "--collection", name, "--model", "cir-demo-tiny", "--device", "cpu",
                                      "--no-progress", "--batch-size", "32", "--workers", "2", "--summary-json",
                                      str(summary)]),
                                env=_env(), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and proc.poll() is None and time.monotonic() < deadline:
            workers = _decode_workers(proc.pid)
            if workers:
                time.sleep(rng.uniform(0.5, 3.0))  # mid-ingest
                workers = _decode_workers(proc.pid)
                if workers:
                    victim = rng.choice(workers)
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except OSError:
                        victim = None
            else:
                time.sleep(0.2)
        try:
            rc = proc.wait(timeout=hang_seconds)
        except subprocess.TimeoutExpired:
            for k in _children(proc.pid):
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
            proc.kill()
            proc.wait()
            outcomes.append("hang")
            continue
        if victim is None:
            outcomes.append("no worker seen")
        elif rc != 0:
            outcomes.append("crash")
        else:
            rows, dupes = _count_and_dupes(db, name)
            outcomes.append("exact" if rows == n_images and dupes == 0 else f"wrong count {rows}")
    return {"tries": tries, "exact": outcomes.count("exact"), "crash": outcomes.count("crash"),
            "hang": outcomes.count("hang"), "outcomes": outcomes, "hang_seconds": hang_seconds}


# -- 5. search load during an ingest ------------------------------------------------------------------------------


def bench_load(work: Path, folder: Path, uri: str, threads: int) -> dict[str, Any]:
    from cir_milvus import CIRCollection
    from cir_milvus.encoders import create_encoder
    from cir_milvus.ingest import ingest

    enc = create_encoder("cir-demo-tiny", "cir-demo", device="cpu")  # a real encode rate, as the CLI ingests
    col = CIRCollection.create(uri, f"load_{uuid.uuid4().hex[:6]}", encoder=enc)
    paths = sorted(folder.glob("*.png"))
    col.add([str(p) for p in paths[:32]])  # something to find from the first query on
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(256, enc.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    stop = threading.Event()
    counts = [0] * threads
    errors: list[str] = []

    def worker(k: int) -> None:
        i = k
        while not stop.is_set():
            try:
                hits = col.search_vectors(queries[i % len(queries)], k=10)
                if not hits[0]:
                    errors.append("no hits")
            except Exception as e:  # noqa: BLE001 - counted
                errors.append(f"{type(e).__name__}: {str(e)[:100]}")
            counts[k] += 1
            i += threads

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    t0 = time.perf_counter()
    try:
        report = ingest(col, str(folder), batch_size=32, progress=False)
    finally:
        stop.set()
        for t in pool:
            t.join()
    seconds = time.perf_counter() - t0
    rows = len(col)
    col.close()
    return {"threads": threads, "queries": sum(counts), "errors": len(errors), "first_errors": errors[:3],
            "ingest_seconds": round(seconds, 2), "rows": rows, "images": len(paths),
            "stored": report.stored + report.already_stored}


# -- 6. server restarts mid-ingest --------------------------------------------------------------------------------


def bench_restarts(work: Path, folder: Path, n_images: int, restarts: int, down_seconds: float) -> dict[str, Any]:
    from cir_milvus.storage.embedded import EmbeddedMilvus

    server = EmbeddedMilvus(work / "milvus-restarts").start()
    name = f"restarts_{uuid.uuid4().hex[:6]}"
    summary = work / f"{name}.json"
    try:
        proc = subprocess.Popen(_cli(["ingest", str(folder), "--uri", server.uri, "--collection", name, "--model",
                                      "cir-demo-tiny", "--device", "cpu", "--no-progress", "--batch-size", "16", "--workers", "1",
                                      "--summary-json", str(summary)]),
                                env=_env(), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300  # stop the server only once rows are being written (mid-ingest)
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if _count_and_dupes(server.uri, name)[0] > 0:
                    break
            except Exception:  # noqa: BLE001 - not created yet
                pass
            time.sleep(1.0)
        done = 0
        for _ in range(restarts):
            if proc.poll() is not None:
                break
            server.stop(graceful=2)
            time.sleep(down_seconds)
            server.start()
            done += 1
            time.sleep(5)
        try:
            rc = proc.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        out: dict[str, Any] = {"restarts": done, "down_seconds": down_seconds, "exit": rc}
        if rc == 0:
            rows, dupes = _count_and_dupes(server.uri, name)
            s = json.loads(summary.read_text())
            out.update({"images": n_images, "rows": rows, "duplicates": dupes, "retries": s["retries"],
                        "exact": rows == n_images and dupes == 0})
        else:
            out["error"] = err[-400:]
        return out
    finally:
        server.stop(graceful=2)


# -- 7. filters: wildcard values, quoted placeholders, filters the server cannot parse ------------------------------


def bench_filters(uri: str) -> dict[str, Any]:
    """A user's ``%`` in a ``like`` value, a placeholder inside quotes and an unparseable filter, on one backend."""
    from cir_milvus.errors import FilterError
    from cir_milvus.storage.store import VectorStore

    name = f"filters_{uuid.uuid4().hex[:6]}"
    brands = ["a%b", "axb", "a_b", "abc", "%", "zz"] * 20  # 120 rows, 20 of them literally "%"
    store = VectorStore.create(uri, name, dim=4, index="FLAT", consistency="Strong")
    try:
        store.upsert([f"r{i}" for i in range(len(brands))], np.eye(4, dtype=np.float32)[np.arange(len(brands)) % 4],
                     metadata=[{"brand": b} for b in brands])
        out: dict[str, Any] = {"rows": len(brands), "literal_matches": brands.count("%")}
        out["wildcard_returned"] = len(store.query('metadata["brand"] like {p}', {"p": "%"}, limit=1000))
        out["prefix_returned"] = len(store.query('metadata["brand"] like {p:prefix}', {"p": "ab"}, limit=1000))
        for key, expr, params in (("quoted", 'metadata["brand"] == "{b}"', {"b": "x"}),
                                  ("unparseable", 'metadata["brand"] == "a" or 5', None)):
            t0 = time.monotonic()
            try:
                store.query(expr, params, limit=5)
                out[key] = {"error": None}
            except FilterError as e:
                out[key] = {"error": type(e).__name__, "seconds": round(time.monotonic() - t0, 2),
                            "message": str(e)[:160]}
        return out
    finally:
        store.drop()


# -- 8. concurrent creators: two processes create one new collection at the same moment ----------------------------

_CREATOR = """
import json, sys, time
from cir_milvus.errors import RecipeMismatchError
from cir_milvus.storage.recipe import Recipe
from cir_milvus.storage.store import VectorStore
uri, name, model, start, tag = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
recipe = Recipe(encoder={"backend": "fake", "model": model, "pretrained": None, "dim": 4})
time.sleep(max(0.0, start - time.time()))
try:
    store = VectorStore.create(uri, name, dim=4, index="FLAT", recipe=recipe, exist_ok=True)
    store.upsert([tag], [[1.0, 0.0, 0.0, 0.0]])
    print(json.dumps({"ok": True}))
except RecipeMismatchError:
    print(json.dumps({"refused": True}))
except Exception as e:
    print(json.dumps({"error": repr(e)[:200]}))
"""


def bench_creators(uri: str, trials: int) -> dict[str, Any]:
    """``trials`` races of two processes with identical recipes (both must store their row in one collection) and
    ``trials`` with different recipes (exactly one must be refused)."""
    from cir_milvus.storage.store import VectorStore

    def race(models: list[str]) -> tuple[str, list[dict[str, Any]]]:
        name = f"race_{uuid.uuid4().hex[:8]}"
        start = time.time() + 6.0
        procs = [subprocess.Popen([sys.executable, "-c", _CREATOR, uri, name, m, str(start), f"row{i}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
                 for i, m in enumerate(models)]
        outs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            lines = out.strip().splitlines()
            outs.append(json.loads(lines[-1]) if lines else {"error": f"exit {proc.returncode}"})
        return name, outs

    same_ok = diff_ok = 0
    errors: list[str] = []
    for _ in range(trials):
        name, outs = race(["m1", "m1"])
        with VectorStore.open(uri, name, consistency="Strong") as store:
            rows = store.existing_ids(["row0", "row1"])
            if all(o.get("ok") for o in outs) and rows == {"row0", "row1"}:
                same_ok += 1
            errors += [o["error"] for o in outs if "error" in o]
            store.drop()
        name, outs = race(["m1", "m2"])
        if sum(1 for o in outs if o.get("refused")) == 1 and sum(1 for o in outs if o.get("ok")) == 1:
            diff_ok += 1
        errors += [o["error"] for o in outs if "error" in o]
        with VectorStore.open(uri, name) as store:
            store.drop()
    return {"trials": trials, "identical_converged": same_ok, "different_refused_once": diff_ok, "errors": errors[:5]}


# -- 9. reopen right after a server restart --------------------------------------------------------------------------


def bench_reopen(work: Path, cycles: int) -> dict[str, Any]:
    """Stop and start the 2.3.5 server, then open a collection at once (no pause), ``cycles`` times."""
    from cir_milvus.storage.embedded import EmbeddedMilvus
    from cir_milvus.storage.store import VectorStore

    server = EmbeddedMilvus(work / "milvus-reopen").start()
    try:
        name = f"reopen_{uuid.uuid4().hex[:6]}"
        VectorStore.create(server.uri, name, dim=4, index="FLAT").close()
        failures: list[str] = []
        waits: list[float] = []
        for _ in range(cycles):
            server.stop(graceful=2)
            server.start()
            t0 = time.monotonic()
            try:
                with VectorStore.open(server.uri, name, timeout=30) as store:
                    store.count()
                waits.append(time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - counted
                failures.append(repr(e)[:200])
        return {"cycles": cycles, "failures": len(failures), "errors": failures[:3],
                "open_seconds_max": round(max(waits, default=0.0), 2)}
    finally:
        server.stop(graceful=2)


# -- 10. tampered bundles: a torch-built collection opened with bundles that claim its weights -----------------------


def _tamper(folder: Path, change: Any) -> None:
    """``change(tensor)`` applied to every float tensor stored in weights.bin (float16 or float32, as the graphs'
    initializers say), then the manifest's checksums rewritten to match."""
    import hashlib

    import onnx

    dtypes = {onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.FLOAT: np.float32}
    data = bytearray((folder / "weights.bin").read_bytes())
    ranges = {}
    for graph in folder.glob("*.onnx"):
        for t in onnx.load(str(graph), load_external_data=False).graph.initializer:
            ext = {e.key: e.value for e in t.external_data}
            if ext.get("location") == "weights.bin" and t.data_type in dtypes:
                ranges[int(ext["offset"])] = (int(ext["length"]), dtypes[t.data_type])
    for offset, (length, dtype) in ranges.items():
        arr = np.frombuffer(bytes(data[offset:offset + length]), dtype=dtype).astype(np.float32)
        data[offset:offset + length] = np.asarray(change(arr), dtype=dtype).tobytes()
    (folder / "weights.bin").write_bytes(bytes(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def bench_bundles(work: Path, folder: Path) -> dict[str, Any]:
    """Open a torch-built collection with its genuine bundle and with tampered ones (their own checks pass)."""
    import re

    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus import CIRCollection
    from cir_milvus.encoders.ort import OrtEncoder
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.errors import RecipeMismatchError
    from cir_milvus.models.demo import DEMO_MODEL, DEMO_WEIGHTS

    images = work / "bundle-images"
    images.mkdir()
    for p in sorted(folder.glob("*.png"))[:32]:
        shutil.copy(p, images / p.name)
    torch_enc = TorchEncoder(DEMO_MODEL, DEMO_WEIGHTS, device="cpu", precision="fp32")
    uri = str(work / "bundles.db")
    with CIRCollection.create(uri, "demo", encoder=torch_enc) as col:
        col.add([str(p) for p in sorted(images.iterdir())])
    genuine = export_bundle(torch_enc, work / "bundle", fused=False)
    rng = np.random.default_rng(0)
    variants = {"genuine": None, "weights x1.5": lambda a: a * np.float32(1.5),
                "noise 3 % of each tensor's std": lambda a: a + rng.normal(0, 0.03 * float(np.std(a)), a.shape),
                "noise 1 % of each tensor's std": lambda a: a + rng.normal(0, 0.01 * float(np.std(a)), a.shape)}
    out: dict[str, Any] = {"images": 32}

    def attempt(bundle: Path) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            CIRCollection.open(uri, "demo", encoder=OrtEncoder(bundle)).close()
            return {"outcome": "opened", "seconds": round(time.monotonic() - t0, 2)}
        except RecipeMismatchError as e:
            cos = re.search(r"cosine ([0-9.naN]+)", str(e))
            return {"outcome": "refused", "cosine": cos.group(1) if cos else None,
                    "seconds": round(time.monotonic() - t0, 2)}

    bundles = {"genuine": genuine}
    for n, (label, change) in enumerate(variants.items()):
        if change is not None:
            bundles[label] = Path(shutil.copytree(genuine, work / f"tampered-{n}"))
            _tamper(bundles[label], change)
        out[label] = attempt(bundles[label])
    shutil.rmtree(images)  # no readable source: nothing to re-encode
    out["weights x1.5, sources gone"] = attempt(bundles["weights x1.5"])
    return out


# -- 11. silent sockets: sockets that never send, heads and bodies trickled at 1 byte/s, beside a normal client -------


def _serve_collection(work: Path, uri: str, n: int = 16) -> tuple[Any, list[str], Path]:
    """A ``model="fake"`` collection of ``n`` gallery images (``tests/serve_helpers.py``): (collection, ids, folder)."""
    from serve_helpers import write_gallery

    from cir_milvus import CIRCollection

    gallery = work / f"serve-gallery-{uuid.uuid4().hex[:6]}"
    paths, metadata = write_gallery(gallery, n=n)
    col = CIRCollection.create(uri, f"serve_{uuid.uuid4().hex[:6]}", model="fake")
    ids = [str(i) for i in col.add(paths, metadata=metadata)]
    col.store.flush()
    return col, ids, gallery


def _open_bad_sockets(host: str, port: int, silent: int, trickling: int, stop: threading.Event) -> dict[Any, Any]:
    """``silent`` sockets that never send; ``trickling`` ones, half trickling a request head and half a body after a
    complete head, 1 byte/s. Returns socket -> (kind, monotonic time it opened)."""
    import socket

    from serve_helpers import trickle

    opened: dict[Any, Any] = {}
    for i in range(silent + trickling):
        s = socket.create_connection((host, port))
        if i < silent:
            opened[s] = ("silent", time.monotonic())
            continue
        if (i - silent) % 2 == 0:
            kind, head, body = "head", b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        else:
            kind, body = "body", b'{"text": "' + b"x" * 190
            head = (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n")
        opened[s] = (kind, time.monotonic())
        threading.Thread(target=trickle, args=(s, head, body, stop, 1.0), daemon=True).start()
    return opened


def bench_sockets(work: Path, silent: int, trickling: int, limit_s: float = 60.0) -> dict[str, Any]:
    """The service as ``cir-milvus serve`` configures it (its default timeouts) over a Lite collection: the bad
    sockets open while one normal client searches until every bad socket is closed (or ``limit_s``)."""
    import httpx
    from serve_helpers import serving, wait_closed

    from cir_milvus.serve import create_app

    col, _, _ = _serve_collection(work, str(work / "sockets.db"))
    stop, done = threading.Event(), threading.Event()
    normal: list[tuple[int, float]] = []

    def client(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    code = c.post("/search", json={"text": "a red circle", "composer": "text", "k": 3}).status_code
                except httpx.HTTPError:
                    code = 0
                normal.append((code, time.perf_counter() - t0))
    try:
        with serving(create_app({"c": col})) as (host, port):
            opened = _open_bad_sockets(host, port, silent, trickling, stop)
            th = threading.Thread(target=client, args=(f"http://{host}:{port}",), daemon=True)
            th.start()
            closed, got = wait_closed({s: t for s, (_, t) in opened.items()}, limit_s)
            done.set()
            th.join(35)
            stop.set()
            for s in opened:
                s.close()
    finally:
        col.close()
    out: dict[str, Any] = {"limit_s": limit_s}
    for kind in ("silent", "head", "body"):
        mine = [s for s, (k, _) in opened.items() if k == kind]
        secs = sorted(closed[s] for s in mine if s in closed)
        answers = sorted({got[s].split(b"\r\n", 1)[0].decode("latin-1")[:40] or "(none)" for s in mine})
        out[kind] = {"sockets": len(mine), "closed": len(secs), "open_at_limit": len(mine) - len(secs),
                     "closed_after_s_median": round(float(np.median(secs)), 1) if secs else None,
                     "closed_after_s_max": round(secs[-1], 1) if secs else None, "answers": answers}
    lat = sorted(t for code, t in normal if code == 200)
    out["normal_client"] = {"requests": len(normal), "ok": len(lat), "failed": len(normal) - len(lat),
                            "p50_ms": round(1000 * float(np.median(lat)), 1) if lat else None,
                            "max_ms": round(1000 * lat[-1], 1) if lat else None}
    return out


# -- 12. outage answers: Milvus stopped and restarted under the service while clients search ------------------------


def _outage_queries(ids: list[str]) -> list[dict[str, Any]]:
    return [{"text": "a red circle", "composer": "text", "k": 5}, {"ref_id": ids[3], "text": "make it blue", "k": 5}]


def _search_until(base: str, queries: list[dict[str, Any]], want: list[list[str]], done: threading.Event,
                  log: list[tuple[float, float, int, bool, bool]]) -> None:
    """One client: the queries in turn until ``done``; logs (ended at, seconds, status, Retry-After given, right
    hits) per request."""
    import httpx

    with httpx.Client(base_url=base, timeout=60) as c:
        i = 0
        while not done.is_set():
            q, expected = queries[i % len(queries)], want[i % len(queries)]
            i += 1
            t0 = time.monotonic()
            try:
                r = c.post("/search", json=q)
                code, retry = r.status_code, "retry-after" in r.headers
                right = code == 200 and [h["id"] for h in r.json()["hits"]] == expected
            except httpx.HTTPError:
                code, retry, right = 0, False, False
            log.append((time.monotonic(), time.monotonic() - t0, code, retry, right))


def _outage_summary(log: list[tuple[float, float, int, bool, bool]], t_stop: float, t_back: float) -> dict[str, Any]:
    def codes(rows: list[Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out[str(r[2])] = out.get(str(r[2]), 0) + 1
        return dict(sorted(out.items()))

    before = [r for r in log if r[0] - r[1] < t_stop]
    during = [r for r in log if r[0] - r[1] >= t_stop and r[0] < t_back]
    after = [r for r in log if r[0] >= t_back]
    first_503 = next((r[0] for r in sorted(log) if r[0] >= t_stop and r[2] == 503 and r[3]), None)
    ok_after = [r for r in after if r[2] == 200]
    first_right = next((r[0] for r in sorted(after) if r[4]), None)
    return {"requests": len(log), "codes_before": codes(before), "codes_during_outage": codes(during),
            "codes_after_restart": codes(after),
            "first_503_retry_after_s": round(first_503 - t_stop, 2) if first_503 is not None else None,
            "median_during_outage_s": round(float(np.median([r[1] for r in during])), 2) if during else None,
            "slowest_during_outage_s": round(max((r[1] for r in during), default=0.0), 2),
            "over_5s_during_outage": sum(r[1] > 5.0 for r in during),
            "503_without_retry_after": sum(r[2] == 503 and not r[3] for r in log),
            "ok_after_restart": len(ok_after), "wrong_ok_after_restart": sum(not r[4] for r in ok_after),
            "wrong_ok_total": sum(r[2] == 200 and not r[4] for r in log),
            "first_right_after_restart_s": round(first_right - t_back, 2) if first_right is not None else None}


def bench_outage(work: Path, clients: int, down_s: float, after_s: float = 20.0) -> dict[str, Any]:
    """The 2.3.5 server under a running service: ``clients`` threads search over HTTP; Milvus is stopped for
    ``down_s`` seconds and started again; the clients go on ``after_s`` seconds after it listens."""
    import httpx
    from serve_helpers import serving

    from cir_milvus.serve import create_app
    from cir_milvus.storage.embedded import EmbeddedMilvus

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # a traceback per failed call while it is down
    server = EmbeddedMilvus(work / "milvus-outage").start()
    col = None
    try:
        col, ids, gallery = _serve_collection(work, server.uri)
        with serving(create_app({"c": col}, image_roots=[gallery])) as (host, port):
            base, queries = f"http://{host}:{port}", _outage_queries(ids)
            want = [[h["id"] for h in httpx.post(f"{base}/search", json=q, timeout=60).json()["hits"]] for q in queries]
            log: list[tuple[float, float, int, bool, bool]] = []
            done = threading.Event()
            threads = [threading.Thread(target=_search_until, args=(base, queries, want, done, log), daemon=True)
                       for _ in range(clients)]
            for th in threads:
                th.start()
            time.sleep(3.0)
            t_stop = time.monotonic()
            server.stop(graceful=2)
            time.sleep(max(0.0, down_s - (time.monotonic() - t_stop)))
            server.start()
            t_back = time.monotonic()
            time.sleep(after_s)
            done.set()
            for th in threads:
                th.join(70)
        return {"clients": clients, "down_s": round(t_back - t_stop, 1), "after_s": after_s,
                **_outage_summary(log, t_stop, t_back)}
    finally:
        if col is not None:
            col.close()
        server.stop(graceful=2)


# -- the table ----------------------------------------------------------------------------------------------------


def table(res: dict[str, Any]) -> str:
    lines = ["| fault | runs | outcome |", "|---|---|---|"]
    for label, z in res.get("zoo", {}).items():
        a, c = z.get("add", {}), z.get("cli", {})
        lines.append(f"| zoo of {z['entries']} inputs ({z['good']} good images), `add()` in one call, {label} | 1 | "
                     + (f"stored {a['stored']}, reported {a['reported']} with a reason, {a['retry_log_lines']} retry "
                        f"log lines, {a['seconds']} s" if "error" not in a else f"failed: {a['error'][:120]}") + " |")
        lines.append(f"| the same zoo, `cir-milvus ingest DIR`, {label} | 1 | "
                     + (f"stored {c['stored']}, reported {c['reported']} with a reason, {c['retries']} retries, "
                        f"{c['seconds']} s" if "error" not in c else f"failed: {c['error'][:120]}") + " |")
    for label, d in res.get("ids", {}).items():
        lines.append(f"| {d['kinds']} id payloads (quotes, `\\`, newline, injection, unicode, over 512 bytes, empty), "
                     f"{label} | 1 | {d['exact']} stored, looked up and deleted exactly; {d['reported']} reported; "
                     f"{d['wrong']} wrong or failed" + ("; one bad id made the one-call add refuse all 13"
                                                        if d["one_call"]["error"] else "") + " |")
    if "cli_kills" in res:
        k = res["cli_kills"]
        lines.append(f"| kill -9 of `cir-milvus ingest` mid-run, then a re-run | {k['kills']} | "
                     + (f"{k['rows']} of {k['images']} rows, {k['duplicates']} duplicates; "
                        if "rows" in k else f"resume failed: {k.get('resume_error', '')[:100]}; ")
                     + f"{k['processes_left_behind']} processes left behind |")
    if "worker_kills" in res:
        w = res["worker_kills"]
        lines.append(f"| kill -9 of a decode worker mid-ingest | {w['tries']} | {w['exact']} finished with the exact "
                     f"count, {w['crash']} crashed, {w['hang']} hung (> {w['hang_seconds']:.0f} s) |")
    if "load" in res:
        ld = res["load"]
        lines.append(f"| {ld['threads']} search threads during an ingest of {ld['images']} images | 1 | "
                     f"{ld['errors']} errors in {ld['queries']:,} queries; {ld['rows']} rows |")
    if "restarts" in res:
        r = res["restarts"]
        lines.append(f"| server (2.3.5) stopped for {r['down_seconds']:.0f} s and restarted mid-ingest | "
                     f"{r['restarts']} | " + (f"{r['rows']} of {r['images']} rows, {r['duplicates']} duplicates, "
                                              f"{r['retries']} retried calls" if r.get("exit") == 0
                                              else f"failed: {r.get('error', '')[:120]}") + " |")
    for label, f in res.get("filters", {}).items():
        lines.append(f"| `like {{p}}` with the value `%` ({f['rows']} rows, {f['literal_matches']} literally `%`), "
                     f"{label} | 1 | {f['wildcard_returned']} rows returned |")
        q, u = f["quoted"], f["unparseable"]
        lines.append(f"| a placeholder inside quotes; a filter the server cannot parse, {label} | 1 + 1 | "
                     f"{q['error']} in {q.get('seconds')} s; {u['error']} in {u.get('seconds')} s, never retried |")
    if "creators" in res:
        c = res["creators"]
        lines.append(f"| two processes create one new collection at once (`exist_ok=True`), server 2.3.5 | "
                     f"{c['trials']} + {c['trials']} | identical recipes: {c['identical_converged']} converged (both "
                     f"rows stored); different recipes: {c['different_refused_once']} refused exactly one |")
    if "reopen" in res:
        r = res["reopen"]
        lines.append(f"| open right after a server (2.3.5) restart | {r['cycles']} | {r['failures']} failures "
                     f"(longest open {r['open_seconds_max']} s) |")
    if "bundles" in res:
        b = res["bundles"]
        cases = "; ".join(f"{k}: {v['outcome']}" + (f" (cosine {v['cosine']})" if v.get("cosine") else "")
                          + f" in {v['seconds']} s" for k, v in b.items() if isinstance(v, dict))
        lines.append(f"| a torch-built collection ({b['images']} images, demo model) opened with its bundle and with "
                     f"bundles whose weights were changed behind a rewritten manifest, Lite | {len(b) - 1} | {cases} |")
    if "sockets" in res:
        k = res["sockets"]
        bad = "; ".join(f"{k[x]['sockets']} {label}: {k[x]['closed']} closed (median {k[x]['closed_after_s_median']} s, "
                        f"max {k[x]['closed_after_s_max']} s), {k[x]['open_at_limit']} open at {k['limit_s']:.0f} s"
                        for x, label in (("silent", "silent"), ("head", "trickling a head"),
                                         ("body", "trickling a body")))
        n = k["normal_client"]
        lines.append(f"| sockets that never send or trickle 1 byte/s, beside a searching client, `cir-milvus serve` "
                     f"defaults, Lite | 1 | {bad}; the client: {n['ok']} of {n['requests']} answered 200, "
                     f"p50 {n['p50_ms']} ms |")
    if "outage" in res:
        o = res["outage"]
        lines.append(f"| Milvus (2.3.5) stopped for {o['down_s']:.0f} s under `cir-milvus serve`, {o['clients']} "
                     f"searching clients | 1 | first 503 with Retry-After {o['first_503_retry_after_s']} s after the "
                     f"stop; requests during the outage took {o.get('median_during_outage_s')} s (median), "
                     f"{o['slowest_during_outage_s']} s at most, {o.get('over_5s_during_outage')} over 5 s; during: {o['codes_during_outage']}, "
                     f"after: {o['codes_after_restart']}; {o['wrong_ok_total']} wrong 200s; first right 200 "
                     f"{o['first_right_after_restart_s']} s after the restart |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 CLI kills, 2 worker kills, 200 images")
    p.add_argument("--images", type=int, default=None, help="images in the kill / load folder (default 600)")
    p.add_argument("--kills", type=int, default=None, help="kill -9 of the CLI (default 12)")
    p.add_argument("--worker-kills", type=int, default=None, help="kill -9 of a decode worker (default 6)")
    p.add_argument("--hang-seconds", type=float, default=600.0, help="an ingest not done after this has hung")
    p.add_argument("--threads", type=int, default=8, help="search threads during the ingest")
    p.add_argument("--server", action="store_true", help="also the 2.3.5 server (zoo, ids, restarts)")
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--down-seconds", type=float, default=20.0)
    p.add_argument("--only", default=None, help="comma-separated sections: zoo,ids,cli_kills,worker_kills,load,restarts,"
                   "filters,creators,reopen,bundles,sockets,outage")
    p.add_argument("--races", type=int, default=5, help="concurrent-creator races of each kind (server)")
    p.add_argument("--reopens", type=int, default=20, help="restart-then-open cycles (server)")
    p.add_argument("--silent", type=int, default=300, help="sockets that never send (sockets)")
    p.add_argument("--trickling", type=int, default=10, help="sockets trickling a head or a body, 1 byte/s (sockets)")
    p.add_argument("--outage-clients", type=int, default=4, help="searching clients during the outage (server)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    n_images = args.images or (200 if args.quick else 600)
    kills = args.kills if args.kills is not None else (3 if args.quick else 12)
    wkills = args.worker_kills if args.worker_kills is not None else (2 if args.quick else 6)
    only = set(args.only.split(",")) if args.only else None

    def want(section: str) -> bool:
        return only is None or section in only

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymilvus").setLevel(logging.ERROR)  # Lite's query iterator warns on every call
    res: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
                           "python": platform.python_version(), "images": n_images}
    work = Path(tempfile.mkdtemp(prefix="cir-faults-"))
    server = None
    try:
        folder = work / "images"
        _render_folder(folder, n_images)
        uris = {"Lite": str(work / "faults.db")}
        if args.server and (want("zoo") or want("ids") or want("filters") or want("creators")):
            from cir_milvus.storage.embedded import EmbeddedMilvus

            server = EmbeddedMilvus(work / "milvus").start()
            uris["server 2.3.5"] = server.uri
        if want("zoo"):
            res["zoo"] = {label: bench_zoo(work, uri, label.split()[0]) for label, uri in uris.items()}
            print(json.dumps(res["zoo"], indent=1))
        if want("ids"):
            res["ids"] = {label: bench_ids(uri) for label, uri in uris.items()}
            print(json.dumps(res["ids"], indent=1))
        if want("filters"):
            res["filters"] = {label: bench_filters(uri) for label, uri in uris.items()}
            print(json.dumps(res["filters"], indent=1))
        if server is not None and want("creators"):
            res["creators"] = bench_creators(server.uri, args.races)
            print(json.dumps(res["creators"], indent=1))
        if server is not None:
            server.stop(graceful=2)
            server = None
        if want("cli_kills") and kills:
            res["cli_kills"] = bench_cli_kills(work, folder, n_images, kills, str(work / "kills.db"), args.seed)
            print(json.dumps(res["cli_kills"], indent=1))
        if want("worker_kills") and wkills:
            res["worker_kills"] = bench_worker_kills(work, folder, n_images, wkills, args.hang_seconds, args.seed)
            print(json.dumps(res["worker_kills"], indent=1))
        if want("load"):
            res["load"] = bench_load(work, folder, str(work / "load.db"), args.threads)
            print(json.dumps(res["load"], indent=1))
        if args.server and want("restarts"):
            res["restarts"] = bench_restarts(work, folder, n_images, args.restarts, args.down_seconds)
            print(json.dumps(res["restarts"], indent=1))
        if want("bundles"):
            res["bundles"] = bench_bundles(work, folder)
            print(json.dumps(res["bundles"], indent=1))
        if args.server and want("reopen"):
            res["reopen"] = bench_reopen(work, args.reopens)
            print(json.dumps(res["reopen"], indent=1))
        if want("sockets"):
            res["sockets"] = bench_sockets(work, args.silent, args.trickling)
            print(json.dumps(res["sockets"], indent=1))
        if args.server and want("outage"):
            res["outage"] = bench_outage(work, args.outage_clients, args.down_seconds)
            print(json.dumps(res["outage"], indent=1))
    finally:
        if server is not None:
            server.stop(graceful=2)
        shutil.rmtree(work, ignore_errors=True)
    if only is not None and args.output.is_file():  # a partial run updates its sections of an earlier full run
        earlier = json.loads(args.output.read_text(encoding="utf-8"))
        res = {**earlier, **{k: v for k, v in res.items() if k in only}, "sections_rerun": sorted(only | set(earlier.get("sections_rerun", []))),
               "sections_rerun_machine": res["machine"]}
    print()
    print(table(res))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")
    return res


if __name__ == "__main__":
    main()
