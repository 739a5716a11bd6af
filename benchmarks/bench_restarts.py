"""Stop/start cycles of the embedded Milvus 2.3.5 server (``cir_milvus.storage.embedded.EmbeddedMilvus``), counted.

Each cycle stops the server (as the fault benchmarks do: ``stop(graceful=2)``) while client threads keep searching
and reconnecting, and starts it again on the same ports. A failed start (the first one included) is counted with its
message and what held the port (``ss``), and tried again after a pause.

With ``--neighbour`` a second server makes its first start while the first is down (what another test session, or
a test worker, does on a shared machine), and stops at the end of the cycle.

    python benchmarks/bench_restarts.py --cycles 10 --neighbour    # benchmarks/results/restarts.json
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _holders(port: int) -> str:
    """What the kernel has on ``port`` (sockets, states, processes), for the record of a failed start."""
    try:
        out = subprocess.run(["ss", "-tanp", f"( sport = :{port} or dport = :{port} )"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"ss failed: {e}"
    return out.strip()[-1500:]


def _clients(uri: str, stop: threading.Event, n: int, calls: list[int]) -> list[threading.Thread]:
    """``n`` threads, each with its own client, searching until ``stop`` (errors while the server is down are
    expected: they make the reconnect traffic of a real client)."""
    from pymilvus import MilvusClient

    def run() -> None:
        client = None
        while not stop.is_set():
            try:
                if client is None:
                    client = MilvusClient(uri, timeout=2)
                client.search("restarts", data=[[0.5] * 8], limit=1)
                calls[0] += 1
            except Exception:  # noqa: BLE001 - the server is down: reconnect
                client = None
                time.sleep(0.1)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--clients", type=int, default=2, help="threads searching through the restarts")
    ap.add_argument("--graceful", type=float, default=2.0, help="seconds between SIGTERM and SIGKILL")
    ap.add_argument("--neighbour", action="store_true", help="another server starts while this one is down")
    ap.add_argument("--out", type=Path, default=RESULTS / "restarts.json")
    args = ap.parse_args()

    from pymilvus import MilvusClient

    from cir_milvus.storage.embedded import EmbeddedMilvus

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL + 1)  # the clients' reconnect errors while the server is down

    work = Path(tempfile.mkdtemp(prefix="bench-restarts-"))
    server = EmbeddedMilvus(work / "milvus")
    failures: list[dict[str, Any]] = []
    starts: list[float] = []

    def start(cycle: int, neighbour: EmbeddedMilvus | None = None) -> None:
        """Start (a failed start is counted, then tried again after a pause, the neighbour stopped: three failures in
        a row end the run)."""
        for attempt in range(3):
            t0 = time.monotonic()
            try:
                server.start()
                starts.append(round(time.monotonic() - t0, 1))
                print(f"cycle {cycle}: up in {starts[-1]} s", flush=True)
                return
            except RuntimeError as e:
                lines = str(e).splitlines()
                msg = next((ln for ln in lines if "bind" in ln), lines[0])[:400]
                port = re.search(r"(?:=|:)(\d{4,5})(?:, but bind failed|: bind: address already in use)", msg)
                failures.append({"cycle": cycle, "attempt": attempt, "error": msg,
                                 "holders": _holders(int(port.group(1))) if port else ""})
                print(f"cycle {cycle}: failed start: {msg}", flush=True)
                if neighbour is not None:
                    neighbour.stop()
                time.sleep(5)
        raise RuntimeError("three failed starts in a row")

    start(-1)  # the first start
    client = MilvusClient(server.uri)
    client.create_collection("restarts", dimension=8)
    client.insert("restarts", [{"id": i, "vector": np.random.default_rng(i).random(8).tolist()} for i in range(50)])
    client.close()
    stop, calls = threading.Event(), [0]
    threads = _clients(server.uri, stop, args.clients, calls)
    try:
        for cycle in range(args.cycles):
            server.stop(graceful=args.graceful)
            neighbour = None
            if args.neighbour:
                neighbour = EmbeddedMilvus(work / f"neighbour{cycle}")
                try:
                    neighbour.start()
                except RuntimeError as e:
                    print(f"cycle {cycle}: the neighbour did not start: {str(e).splitlines()[0]}", flush=True)
            try:
                start(cycle, neighbour)
            finally:
                if neighbour is not None:
                    neighbour.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        server.stop()
    res = {"cycles": args.cycles, "clients": args.clients, "graceful_s": args.graceful, "neighbour": args.neighbour,
           "starts": len(starts),
           "failed_starts": len(failures), "failed": failures, "start_s": starts, "client_calls": calls[0]}
    print(f"{len(failures)} failed starts of {len(starts) + len(failures)} (the first start and {args.cycles} "
          "stop/start cycles)")
    return write_results(res, args.out)


if __name__ == "__main__":
    main()
