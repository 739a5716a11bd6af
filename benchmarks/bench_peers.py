"""cir_milvus side by side with what users pick instead: ingest rate, query latency, memory, recall, GEMM fraction.

    python benchmarks/bench_peers.py                 # demo model + ViT-B-32 (random weights), 3 interleaved rounds
    python benchmarks/bench_peers.py --quick         # 200 / 48 images, 2 rounds
    python benchmarks/bench_peers.py --models cir-demo-tiny:cir-demo --images 2000 --rounds 5

Stacks (each run in its own fresh process, so peak RSS and thread settings are its own; every round runs every stack
once, in a rotated order, so the shared machine's load drifts over all of them alike):

- ``handwritten``: what a user writes in an afternoon: open_clip ``create_model_and_transforms`` + its torchvision
  preprocess per PIL image, batches of 64, ``MilvusClient.insert`` into Milvus Lite; queries: image + text towers,
  slerp in numpy, ``client.search``.
- ``lancedb``: LanceDB's registered ``open-clip`` embedding function (a ``LanceModel`` with ``SourceField`` image
  URIs; ``table.add`` computes the vectors); queries: the function's image + text embeddings, slerp, ``table.search``.
- ``cir-*``: :func:`cir_milvus.ingest.ingest` into a Milvus Lite collection (``cir-torch`` = defaults: ``reduce``
  decode, fp32; ``-exact`` = the reference transform; ``-draft`` = ``decode="draft"``; ``-bf16`` = bfloat16 autocast;
  ``cir-onnx-fp32`` / ``-int8`` = an exported bundle through onnxruntime); the script imports cir_milvus first, as a
  user's script does (its OpenMP wait policy then applies); queries: ``CIRCollection.search(image_path, text, k=10)``.
  Every stack starts without ``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT`` in its environment.

Per stack and round: ingest images/s (paths → rows stored), decode-alone and encode-alone images/s (the stack's own
decode+preprocess over all cores it uses; its encoder on pixels in memory, batch 64), peak RSS (parent and children),
composed-query p50/p99 (image file + text → top-10) and recall@10 of the store's answer against exact search over the
stored vectors. Per round: this CPU's GEMM bound (numpy and torch fp32 matmul 2048³, best of 5) and each stack's
encode-alone FLOP rate as a fraction of it (FLOPs per image counted with ``torch.utils.flop_counter``).
Reported: medians with min–max over rounds, and per-round ratios cir/peer. JSON in ``benchmarks/results/peers.json``.
Images: photo-like JPEGs of 500×375 to 1024×768 (``_photos.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import make_photos  # noqa: E402
from _results import write_results  # noqa: E402

# cir stacks: name -> (backend, decode, precision); cir-torch is the library's default
CIR_STACKS: dict[str, tuple[str, str | None, str]] = {  # backend, decode (None: the library default), precision
    "cir-torch": ("torch", None, "fp32"),
    "cir-torch-exact": ("torch", "exact", "fp32"),
    "cir-torch-draft": ("torch", "draft", "fp32"),
    "cir-torch-bf16": ("torch", None, "bf16"),
    "cir-torch-bf16-draft": ("torch", "draft", "bf16"),
    "cir-onnx-fp32-draft": ("onnx", "draft", "fp32"),
    "cir-onnx-int8-draft": ("onnx", "draft", "int8"),
}
STACKS = ("handwritten", "lancedb", *CIR_STACKS)
PEERS = ("handwritten", "lancedb")
TEXTS = ("make it look like a painting", "the same scene at night", "with more red in it", "seen from further away")


def _slerp(a: np.ndarray, b: np.ndarray, alpha: float = 0.8) -> np.ndarray:
    """What a user writes: spherical interpolation of two unit vectors (alpha weights the text)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    theta = np.arccos(np.clip(a @ b, -1.0, 1.0))
    if theta < 1e-4:
        q = (1 - alpha) * a + alpha * b
    else:
        q = (np.sin((1 - alpha) * theta) * a + np.sin(alpha * theta) * b) / np.sin(theta)
    return (q / np.linalg.norm(q)).astype(np.float32)


def _pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000.0, p)), 2)


def _recall(got: list[list[str]], exact: list[list[str]]) -> float:
    return round(float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)])), 4)


def _exact_top(vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int = 10) -> list[list[str]]:
    scores = queries @ vectors.T  # [Q, N]
    return [[ids[j] for j in np.argsort(-row)[:k]] for row in scores]


def _gemm_gflops() -> dict[str, float]:
    import torch

    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = {}
    t = torch.from_numpy(a)
    tb = t.to(torch.bfloat16)
    for name, fn in (("numpy", lambda: a @ a), ("torch", lambda: torch.mm(t, t)),
                     ("torch_bf16", lambda: torch.mm(tb, tb))):
        fn()
        best = min(_timed(fn) for _ in range(5))
        out[name] = round(2 * n**3 / best / 1e9, 1)
    return out


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _flops_per_image(model: Any, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size)
    # with grad mode on: under no_grad, nn.MultiheadAttention takes a fused fast path the counter does not see
    # (ViT-B-32: 5.9 GFLOP counted instead of 8.7, the attention projections missing)
    with FlopCounterMode(display=False) as fc:
        model.encode_image(x.to(next(model.parameters()).dtype))
    return float(fc.get_total_flops())


def _hwm_mb(pid: int | str = "self") -> float:
    """Peak resident memory of a process (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def _rate(fn: Any, n: int, rounds: int = 3, window: float = 0.5) -> float:
    """Items per second of ``fn`` (``n`` items a call): the best of ``rounds`` windows of at least ``window`` s."""
    fn()  # warm-up
    best = 0.0
    for _ in range(rounds):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            el = time.perf_counter() - t0
            if el >= window:
                break
        best = max(best, calls * n / el)
    return round(best, 1)


# -- one stack in one process ---------------------------------------------------------------------------------------


def run_stack(stack: str, a: argparse.Namespace) -> dict[str, Any]:
    if stack not in PEERS:
        import cir_milvus  # noqa: F401  (first, as in a user's script: its OpenMP wait policy applies before torch)
    import torch

    paths = sorted(str(p) for p in Path(a.photos).glob("*.jpg"))[: a.images]
    refs = paths[: a.queries]
    texts = [TEXTS[i % len(TEXTS)] for i in range(len(refs))]
    tmp = Path(a.tmp)
    ckpt = a.checkpoint or None
    res: dict[str, Any] = {"stack": stack, "images": len(paths), "torch_threads": torch.get_num_threads(),
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if stack in PEERS:
        import open_clip
        from PIL import Image

        from cir_milvus.models.demo import MODEL_CONFIG_DIR

        open_clip.add_model_config(MODEL_CONFIG_DIR)
    if stack == "handwritten":
        from pymilvus import MilvusClient

        model, _, preprocess = open_clip.create_model_and_transforms(a.model, pretrained=ckpt)
        model.eval()
        tokenizer = open_clip.get_tokenizer(a.model)

        def embed_images(ps: list[str]) -> np.ndarray:
            x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in ps])
            with torch.no_grad():
                f = model.encode_image(x)
            return (f / f.norm(dim=-1, keepdim=True)).numpy()

        def embed_text(t: str) -> np.ndarray:
            with torch.no_grad():
                f = model.encode_text(tokenizer([t]))
            return (f / f.norm(dim=-1, keepdim=True)).numpy()[0]

        dim = embed_text("x").shape[0]
        client = MilvusClient(str(tmp / f"hw-{os.getpid()}.db"))
        client.create_collection("photos", dimension=dim, metric_type="IP", id_type="string", max_length=512)
        t0 = time.perf_counter()
        for s in range(0, len(paths), 64):
            batch = paths[s:s + 64]
            vecs = embed_images(batch)
            client.insert("photos", [{"id": p, "vector": v.tolist()} for p, v in zip(batch, vecs)])
        client.flush("photos")  # a careful script seals its rows (cir_milvus's ingest does): fair query latency
        res["ingest_s"] = time.perf_counter() - t0

        def query(ref: str, text: str) -> list[str]:
            q = _slerp(embed_images([ref])[0], embed_text(text))
            return [h["id"] for h in client.search("photos", [q.tolist()], limit=10)[0]]

        def stored() -> tuple[list[str], np.ndarray]:
            rows = client.query("photos", filter='id != ""', output_fields=["id", "vector"], limit=16384)
            return [r["id"] for r in rows], np.asarray([r["vector"] for r in rows], dtype=np.float32)

        def qvec(ref: str, text: str) -> np.ndarray:
            return _slerp(embed_images([ref])[0], embed_text(text))

        res["decode_alone_per_s"] = _rate(lambda: [preprocess(Image.open(p).convert("RGB")) for p in paths[:64]], 64)
        enc_model, size = model, 0
    elif stack == "lancedb":
        import lancedb
        from lancedb.embeddings import get_registry
        from lancedb.pydantic import LanceModel, Vector

        func = get_registry().get("open-clip").create(name=a.model, pretrained=ckpt or "", batch_size=64)

        class Photo(LanceModel):  # type: ignore[misc]
            image_uri: str = func.SourceField()
            vector: Vector(func.ndims()) = func.VectorField()  # type: ignore[valid-type]

        db = lancedb.connect(str(tmp / f"lance-{os.getpid()}"))
        tbl = db.create_table("photos", schema=Photo)
        t0 = time.perf_counter()
        tbl.add([{"image_uri": p} for p in paths])
        res["ingest_s"] = time.perf_counter() - t0

        def qvec(ref: str, text: str) -> np.ndarray:
            return _slerp(func.generate_image_embedding(ref), func.generate_text_embeddings(text))

        def query(ref: str, text: str) -> list[str]:
            return [r["image_uri"] for r in tbl.search(qvec(ref, text)).limit(10).to_list()]

        def stored() -> tuple[list[str], np.ndarray]:
            t = tbl.to_arrow()
            return t["image_uri"].to_pylist(), np.asarray(t["vector"].to_pylist(), dtype=np.float32)

        pre = func._preprocess
        res["decode_alone_per_s"] = _rate(lambda: [pre(func._to_pil(p)) for p in paths[:64]], 64)
        enc_model, size = func._model, 0
    else:
        from cir_milvus import CIRCollection
        from cir_milvus.ingest import ingest
        from cir_milvus.ingest.decode import DecodePool, default_workers, encoder_threads

        backend, decode, precision = CIR_STACKS[stack]
        if backend == "onnx":
            from cir_milvus.encoders.ort import OrtEncoder

            enc: Any = OrtEncoder(Path(a.bundles) / precision, device="cpu", decode=decode)
        else:
            from cir_milvus.encoders.torch import TorchEncoder

            enc = TorchEncoder(a.model, a.pretrained or None, device="cpu", decode=decode, precision=precision)
        col = CIRCollection.create(str(tmp / f"cir-{os.getpid()}.db"), "photos", encoder=enc)
        t0 = time.perf_counter()
        rep = ingest(col, paths, progress=False)
        res["ingest_s"] = time.perf_counter() - t0
        assert rep.stored == len(paths), rep.summary()

        def query(ref: str, text: str) -> list[str]:
            return [h.id for h in col.search(ref, text, k=10, exclude_reference=False)]

        def qvec(ref: str, text: str) -> np.ndarray:
            return np.asarray(col.compose([ref], [text]))[0]

        def stored() -> tuple[list[str], np.ndarray]:
            ids = list(col.iter_ids())
            got = col.get_vectors(ids)
            v = np.asarray([got[i] for i in ids], dtype=np.float32)
            return ids, v / np.linalg.norm(v, axis=1, keepdims=True)

        cfg = enc.preprocess_config
        workers = default_workers()
        worker_hwm: list[float] = []
        sample = paths[: min(len(paths), 512)]
        starts = range(0, len(sample), 64)
        # decode alone: the ingest's own pool (same workers, same niceness), started before the clock
        with DecodePool(workers, cfg, batch_size=64, slots=len(starts)) as pool:  # a slot per job: none waits

            def decode_all() -> None:
                futs = [pool.submit(list(enumerate(sample[s:s + 64]))) for s in starts]
                for f in futs:
                    if f is not None:
                        f.result().release()

            res["decode_alone_per_s"] = _rate(decode_all, len(sample))
            worker_hwm.extend(_hwm_mb(pid) for pid in pool.pids)
        res["decode_workers"] = workers
        res["peak_rss_children_mb"] = round(workers * max(worker_hwm, default=0.0), 1)
        # encode alone: the encoder as the ingest runs it (every core, no spinning), on pixels in memory
        before = enc.set_threads(encoder_threads(), spin=False) if hasattr(enc, "set_threads") else None
        pix = np.random.default_rng(0).standard_normal((a.encode_batch, 3, cfg.size, cfg.size)).astype(np.float32)
        res["encode_alone_per_s"] = _rate(lambda: enc.encode_pixels(pix), a.encode_batch)
        if before is not None:  # queries run with the encoder's own setting, as after an ingest
            enc.set_threads(before[0], spin=before[1])
        size = cfg.size
        enc_model = getattr(enc, "model", None)
        if stack == "cir-torch":
            res["gflop_per_image"] = round(_flops_per_image(enc.model, cfg.size) / 1e9, 3)
    if "encode_alone_per_s" not in res:
        size = size or int(enc_model.visual.image_size[0] if isinstance(enc_model.visual.image_size, tuple)
                           else enc_model.visual.image_size)
        x = torch.randn(a.encode_batch, 3, size, size)

        def enc_fn() -> None:
            with torch.no_grad():
                enc_model.encode_image(x)

        res["encode_alone_per_s"] = _rate(enc_fn, a.encode_batch)
    res["ingest_per_s"] = round(len(paths) / res["ingest_s"], 1)
    for r, t in zip(refs[:3], texts[:3]):  # warm-up
        query(r, t)
    lat = []
    got = []
    for r, t in zip(refs, texts):
        t0 = time.perf_counter()
        got.append(query(r, t))
        lat.append(time.perf_counter() - t0)
    res["query_p50_ms"], res["query_p99_ms"] = _pct(lat, 50), _pct(lat, 99)
    ids, vecs = stored()
    qs = np.stack([qvec(r, t) for r, t in zip(refs, texts)])  # [Q, D]
    res["recall@10_vs_exact"] = _recall(got, _exact_top(vecs, ids, qs))
    res["peak_rss_mb"] = _hwm_mb()
    res.setdefault("peak_rss_children_mb", 0.0)  # the peers decode in threads of this process
    return res


# -- the driver -----------------------------------------------------------------------------------------------------


def summary(xs: list[float]) -> dict[str, float]:
    """Median and min–max, rounded to 2 decimals."""
    return {"median": round(statistics.median(xs), 2), "min": round(min(xs), 2), "max": round(max(xs), 2)}


def export_bundles(model: str, pretrained: str | None, out: Path) -> None:
    from cir_milvus_export.onnx_export import export_bundle

    from cir_milvus.encoders.torch import TorchEncoder

    enc = TorchEncoder(model, pretrained, device="cpu")
    sha = enc.recipe["weights_sha256"]
    for prec in ("fp32", "int8"):
        manifest = out / prec / "manifest.json"
        # a kept bundle is reused only when it was exported from these very weights
        if not manifest.exists() or json.loads(manifest.read_text())["source"].get("weights_sha256") != sha:
            export_bundle(enc, out / prec, precision=prec, fused=False, overwrite=True)


def random_checkpoint(model: str, folder: Path) -> str:
    """One random-weights checkpoint file shared by every stack (so all of them compute the same vectors)."""
    import open_clip
    import torch

    path = folder / f"{model}-random-weights.pt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(open_clip.create_model(model).state_dict(), path)
    return str(path)


def bench_model(model: str, pretrained: str | None, a: argparse.Namespace, tmp: Path, photos: Path) -> dict[str, Any]:
    from cir_milvus.models.spec import resolve_model

    if pretrained is None and model != "cir-demo-tiny":
        pretrained = random_checkpoint(model, a.data or tmp)

    spec = resolve_model(model, pretrained)
    checkpoint = str(spec.checkpoint) if spec.kind in ("demo", "file") else (pretrained or "")
    demo = model == "cir-demo-tiny"
    n = a.images if demo else a.vit_images
    rounds = a.rounds if demo else a.vit_rounds
    bundles = (a.data or tmp) / f"bundles-{model}"  # kept with --data: exported once
    t = time.perf_counter()
    export_bundles(model, pretrained, bundles)
    print(f"[{model}] bundles exported in {time.perf_counter() - t:.0f}s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in a.stacks}
    gemm: list[dict[str, float]] = []
    for r in range(rounds):
        gemm.append(_gemm_gflops())
        order = list(a.stacks[r % len(a.stacks):]) + list(a.stacks[: r % len(a.stacks)])
        for stack in order:
            cmd = [sys.executable, __file__, "--child", stack, "--model", model, "--pretrained", pretrained or "",
                   "--checkpoint", checkpoint, "--photos", str(photos), "--images", str(n), "--queries",
                   str(a.queries), "--bundles", str(bundles), "--tmp", str(tmp),
                   "--encode-batch", "64"]
            # every stack starts from the environment a user's script has: no OpenMP policy set by anyone
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
            line = [x for x in p.stdout.splitlines() if x.startswith("{")]
            if p.returncode or not line:
                print(f"[{model}] {stack} failed:\n{p.stderr[-3000:]}", flush=True)
                continue
            row = json.loads(line[-1])
            runs[stack].append(row)
            print(f"[{model}] round {r + 1} {stack:<21} ingest {row['ingest_per_s']:>7.1f}/s  decode "
                  f"{row['decode_alone_per_s']:>7.1f}/s  encode {row['encode_alone_per_s']:>7.1f}/s  query p50/p99 "
                  f"{row['query_p50_ms']}/{row['query_p99_ms']} ms  R@10 {row['recall@10_vs_exact']}  RSS "
                  f"{row['peak_rss_mb']:.0f}+{row['peak_rss_children_mb']:.0f} MB", flush=True)
    gflop = next((x["gflop_per_image"] for x in runs.get("cir-torch", []) if "gflop_per_image" in x), None)
    best_fp32 = max(max(g["numpy"], g["torch"]) for g in gemm)
    best_bf16 = max(g["torch_bf16"] for g in gemm)
    out: dict[str, Any] = {"model": model, "pretrained": pretrained, "images": n, "rounds": rounds,
                           "gemm_gflops": {k: summary([g[k] for g in gemm]) for k in ("numpy", "torch", "torch_bf16")},
                           "gflop_per_image": gflop, "stacks": {}, "ratios": {}, "p99_vs_best_peer": {}}
    for stack, rows in runs.items():
        if not rows:
            continue
        s = {k: summary([x[k] for x in rows]) for k in ("ingest_per_s", "decode_alone_per_s", "encode_alone_per_s",
                                                         "query_p50_ms", "query_p99_ms", "recall@10_vs_exact",
                                                         "peak_rss_mb", "peak_rss_children_mb")}
        if gflop:  # against the bound of the stack's own arithmetic (int8 has none measured here: fp32's)
            bound = best_bf16 if "bf16" in stack else best_fp32
            s["encode_fraction_of_gemm_bound"] = round(s["encode_alone_per_s"]["median"] * gflop / bound, 3)
        dec, enc = s["decode_alone_per_s"]["median"], s["encode_alone_per_s"]["median"]
        ing = s["ingest_per_s"]["median"]
        s["ingest_vs_min_decode_encode"] = round(ing / min(dec, enc), 3)
        # decode and encode share the same cores: their CPU time adds up (the bound of a perfect overlap)
        s["ingest_vs_shared_core_bound"] = round(ing * (1 / dec + 1 / enc), 3)
        out["stacks"][stack] = s
    # per-round ratios: each cir stack against each peer, same round
    for stack in a.stacks:
        if stack in PEERS:
            continue
        for peer in PEERS:
            pairs = [(x["ingest_per_s"], y["ingest_per_s"]) for x, y in zip(runs.get(stack, []), runs.get(peer, []))]
            if pairs:
                out["ratios"][f"{stack}/{peer}"] = summary([x / y for x, y in pairs])
        rounds_p99 = [(x["query_p99_ms"], min(y["query_p99_ms"] for y in peers))
                      for x, *peers in zip(runs.get(stack, []), *(runs.get(q, []) for q in PEERS))]
        if rounds_p99:
            out["p99_vs_best_peer"][stack] = summary([x / y for x, y in rounds_p99])
    return out


def table(m: dict[str, Any]) -> str:
    """The README's Markdown table for one model (medians over rounds; ratios per round, median)."""
    rows = ["| stack | ingest img/s | × LanceDB | × hand-written | decode / encode alone img/s | ingest ÷ min(d, e) "
            "| ingest ÷ shared-core bound | query p50 / p99 ms | R@10 vs exact | GEMM fraction |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for stack, s in m["stacks"].items():
        def ratio(peer: str, stack: str = stack) -> str:
            r = m["ratios"].get(f"{stack}/{peer}")
            return f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})" if r else "—"

        rows.append(f"| {stack} | {s['ingest_per_s']['median']:.1f} | {ratio('lancedb')} | {ratio('handwritten')} "
                    f"| {s['decode_alone_per_s']['median']:.0f} / {s['encode_alone_per_s']['median']:.0f} "
                    f"| {s['ingest_vs_min_decode_encode']:.2f} | {s['ingest_vs_shared_core_bound']:.2f} "
                    f"| {s['query_p50_ms']['median']:.1f} / {s['query_p99_ms']['median']:.1f} "
                    f"| {s['recall@10_vs_exact']['median']:.3f} | {s.get('encode_fraction_of_gemm_bound', '—')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cir-demo-tiny:cir-demo,ViT-B-32")
    p.add_argument("--images", type=int, default=2000, help="images for the demo model")
    p.add_argument("--vit-images", type=int, default=256, help="images for other (slower) models")
    p.add_argument("--queries", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--vit-rounds", type=int, default=2, help="rounds for other (slower) models")
    p.add_argument("--encode-batch", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--stacks", default=",".join(STACKS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data", type=Path, default=None, help="keep the generated JPEGs here (default: a temp dir)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "peers.json")
    # child mode (one stack in this process)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    for k in ("--model", "--pretrained", "--checkpoint", "--photos", "--bundles", "--tmp"):
        p.add_argument(k, default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(run_stack(a.child, a)), flush=True)
        return {}
    if a.quick:
        a.images, a.vit_images, a.queries, a.rounds, a.vit_rounds = 200, 48, 30, 2, 1
    a.stacks = [s for s in a.stacks.split(",") if s]
    import torch

    res: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "note": "a 2-core machine shared with other jobs: interleaved rounds, medians, ratios per round"},
        "command": "python benchmarks/bench_peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "models": []}
    tmpdir = tempfile.TemporaryDirectory(prefix="cir-peers-")
    tmp = Path(tmpdir.name)
    photos_dir = (a.data or tmp) / "photos"
    _, desc = make_photos(photos_dir, max(a.images, a.vit_images))
    res["photos"] = {"source": desc, "sizes": "500x375 to 1024x768 JPEG q85-95"}
    try:
        for spec in a.models.split(","):
            model, _, pretrained = spec.partition(":")
            res["models"].append(bench_model(model, pretrained or None, a, tmp, photos_dir))
            print(json.dumps(res["models"][-1]["ratios"], indent=1), flush=True)
            print(table(res["models"][-1]), flush=True)
    finally:
        tmpdir.cleanup()
    return write_results(res, a.out)


if __name__ == "__main__":
    main()
