"""Scale-out ingestion on Ray Data: the same stages as :mod:`cir_milvus.ingest.pipeline`, spread over a cluster.

::

    records ─► resolve ids ─► "already stored?" ─► decode + preprocess ─► encoder actors ─► writer actors ─► Milvus
    (driver,   (tasks: hash    (actors, one         (tasks, CPU)          (GPU: num_gpus=1   (upsert by URI,
     or shard   file bytes)     client each)                               each)              retries/backoff)
     tasks)

- ``write="workers"`` (the default for server URIs): writer actors connect to the Milvus server by URI and upsert;
  only ids come back to the driver, which counts them.
- ``write="driver"`` (the default for Milvus Lite, whose file cannot be opened from other processes): the driver
  resolves ids and checks "already stored?" itself, Ray decodes and encodes, and the vectors come back to the
  driver, which upserts them.

Counts match the local pipeline: ``stored`` is the number of distinct ids written, ``duplicates`` the repeats
(an id seen twice in the input is encoded twice in the distributed mode, but written idempotently), ``already
stored`` ids are never decoded or encoded. Skips and already-stored counts reach the driver through a small tally
actor.

Needs ``pip install 'cir_milvus[ray]'``. See ``docs/ingestion.md`` for a cluster run and throughput estimates.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus._optional import require
from cir_milvus.collection.decode import prepare_batch
from cir_milvus.errors import ConfigError, ImageDecodeError
from cir_milvus.images import MAX_PIXELS, strip_name
from cir_milvus.ingest.pipeline import IngestReport, _SkipLog, record_id, seal
from cir_milvus.ingest.sources import Record, ShardSource, open_source
from cir_milvus.storage.policy import IdPolicy, MetadataError, jsonable
from cir_milvus.storage.retry import RetryPolicy

__all__ = ["RecipeEncoderFactory", "ingest_ray"]

log = logging.getLogger(__name__)


class RecipeEncoderFactory:
    """Builds the collection's encoder inside a Ray actor from its recipe (picklable; no model in the driver).

    Args:
        recipe: the collection's ``recipe.encoder`` dict.
        device: ``"cuda"``/``"cpu"``/``None`` (CUDA when the actor got a GPU).
    """

    def __init__(self, recipe: Mapping[str, Any], device: str | None = None, *, base_dir: str | None = None,
                 search_path: Sequence[str] | None = None) -> None:
        if recipe.get("backend") == "fake":
            raise ConfigError("this collection uses a FakeEncoder; pass encoder_factory=functools.partial("
                              "FakeEncoder, dim=..., seed=...)")
        # ingestion encodes images only: a swapped text tower is not needed (nor looked up) in the actors
        self.recipe = {k: v for k, v in recipe.items() if k not in ("text_weights", "text_weights_sha256")}
        self.device = device
        self.base_dir = base_dir
        self.search_path = list(search_path or [])

    def __call__(self) -> Any:
        from cir_milvus.encoders.rebuild import encoder_from_recipe

        return encoder_from_recipe(self.recipe, device=self.device, base_dir=self.base_dir,
                                   search_path=self.search_path)


class _Shipped:
    """A factory returning a copy of an encoder pickled in the driver (fake and plugin encoders)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def __call__(self) -> Any:
        return self.encoder


# -- Ray stages (module level: they are pickled to the workers) ------------------------------------------------------


class _Tally:
    """Skips and already-stored counts from the stages that drop rows."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str, str | None]] = []
        self.already = 0

    def skip(self, items: list[tuple[str, str, str | None]]) -> None:
        self.skipped.extend(items)

    def add_already(self, n: int) -> None:
        self.already += n

    def snapshot(self) -> tuple[list[tuple[str, str, str | None]], int]:
        return self.skipped, self.already


def _select(batch: dict[str, np.ndarray], keep: list[int]) -> dict[str, np.ndarray]:
    return {k: v[keep] for k, v in batch.items()}


def _report_skips(tally: Any, items: list[tuple[str, str, str | None]]) -> None:
    if items:
        import ray

        ray.get(tally.skip.remote(items))


def _resolve_ids(batch: dict[str, np.ndarray], tally: Any, ids_policy: IdPolicy) -> dict[str, np.ndarray]:
    """Content-hash ids for rows without one; invalid ids and unreadable files are tallied as skipped."""
    keep, bad = [], []
    ids = batch["id"].astype(object)
    for i in range(len(ids)):
        data = batch["data"][i]
        rec = Record(ids[i] or None, bytes(data) if data else str(batch["path"][i]), {}, str(batch["origin"][i]))
        try:
            ids[i] = record_id(rec, ids_policy)
            keep.append(i)
        except ImageDecodeError as e:
            bad.append((rec.name, strip_name(str(e), str(rec.source)), rec.id))
    _report_skips(tally, bad)
    batch["id"] = ids
    return _select(batch, keep)


def _shard_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One tar shard → rows (samples without an image become ``error`` rows)."""
    out = []
    for rec in ShardSource(row["shard"]):
        out.append(_row(rec))
    return out


def _row(rec: Record) -> dict[str, Any]:
    try:
        md, err = json.dumps(jsonable(dict(rec.metadata))), ""
    except MetadataError as e:  # the store's metadata policy: the same reason as the local pipeline
        md, err = "{}", f"bad metadata: {e}"
    return {"id": rec.id or "", "path": rec.source if isinstance(rec.source, str) else "",
            "data": rec.source if isinstance(rec.source, bytes) else b"", "metadata": md, "origin": rec.name,
            "error": rec.error or err}


def _drop_errors(batch: dict[str, np.ndarray], tally: Any) -> dict[str, np.ndarray]:
    keep, bad = [], []
    for i, err in enumerate(batch["error"]):
        if err:
            bad.append((str(batch["origin"][i]), str(err), str(batch["id"][i]) or None))
        else:
            keep.append(i)
    _report_skips(tally, bad)
    return _select(batch, keep)


class _FilterExisting:
    """Drops ids already stored (one store, i.e. one Milvus client, per actor; the store's lookup and retries)."""

    def __init__(self, uri: str, name: str, token: str | None, connect_kwargs: dict[str, Any], tally: Any,
                 retry_timeout: float) -> None:
        from cir_milvus.storage.store import VectorStore

        self.store = VectorStore.open(uri, name, token=token, connect_kwargs=connect_kwargs,
                                      retry=RetryPolicy(timeout=retry_timeout))
        self.tally = tally

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        ids = [str(i) for i in batch["id"]]
        present = self.store.existing_ids(ids) if ids else set()
        if present:
            ray.get(self.tally.add_already.remote(len(present)))
        return _select(batch, [i for i, rid in enumerate(ids) if rid not in present])


def _decode(batch: dict[str, np.ndarray], cfg: dict[str, Any], max_pixels: int, allow_urls: bool,
            tally: Any) -> dict[str, np.ndarray]:
    """Decode + preprocess on CPU workers; adds ``pixels`` ``[N, 3, S, S]`` and drops unreadable rows."""
    items = [(i, bytes(batch["data"][i]) if batch["data"][i] else str(batch["path"][i]))
             for i in range(len(batch["id"]))]
    ok, pixels, bad = prepare_batch(items, cfg, max_pixels, allow_urls)
    _report_skips(tally, [(str(batch["origin"][i]), reason, str(batch["id"][i])) for i, reason in bad])
    out = _select(batch, ok)
    out.pop("data")
    out["pixels"] = pixels
    return out


class _Encode:
    """The encoder in an actor (one per GPU): pixels (or raw images for encoders without a pixel API) → vectors."""

    def __init__(self, factory: Callable[[], Any], pixel_mode: bool, max_pixels: int, allow_urls: bool,
                 tally: Any) -> None:
        self.encoder = factory()
        self.pixel_mode = pixel_mode
        self.max_pixels = max_pixels
        self.allow_urls = allow_urls
        self.tally = tally

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.pixel_mode:
            raw = self.encoder.encode_pixels(batch.pop("pixels"), normalize=False)
        else:
            items = [(i, bytes(batch["data"][i]) if batch["data"][i] else str(batch["path"][i]))
                     for i in range(len(batch["id"]))]
            ok, images, bad = prepare_batch(items, None, self.max_pixels, self.allow_urls)
            _report_skips(self.tally, [(str(batch["origin"][i]), reason, str(batch["id"][i])) for i, reason in bad])
            batch = _select(batch, ok)
            raw = (self.encoder.encode_images(images, normalize=False) if images
                   else np.zeros((0, int(self.encoder.dim)), dtype=np.float32))
        batch.pop("data", None)
        raw = np.asarray(raw, dtype=np.float32)  # [N, D]
        norms = np.linalg.norm(raw, axis=1)
        batch["vector"] = (raw / np.maximum(norms[:, None], 1e-12)).astype(np.float32)
        batch["norm"] = norms.astype(np.float32)
        return batch


def _write(store: Any, batch: dict[str, np.ndarray], policy: RetryPolicy | None = None) -> tuple[list[str], list[Any]]:
    """Encoder output → the store's one write path. Returns (ids written, [(index, Skipped)] refused)."""
    vecs = np.asarray(batch["vector"], dtype=np.float32)  # [N, D] normalised
    norms = np.asarray(batch["norm"], dtype=np.float32)  # [N]
    ids = [str(i) for i in batch["id"]]
    wr = store.upsert(ids, vecs * norms[:, None], sources=[str(p) or str(o) for p, o in zip(batch["path"],
                                                                                           batch["origin"])],
                      metadata=[json.loads(m) for m in batch["metadata"]], retry=policy)
    return [str(i) for i in wr.written], wr.skipped


class _Write:
    """Writes through a :class:`~cir_milvus.storage.store.VectorStore` opened by URI (one per actor); returns the
    ids written and the refusals."""

    def __init__(self, uri: str, name: str, token: str | None, connect_kwargs: dict[str, Any],
                 retry_timeout: float, tally: Any = None) -> None:
        from cir_milvus.storage.store import VectorStore

        self.store = VectorStore.open(uri, name, token=token, connect_kwargs=connect_kwargs,
                                      retry=RetryPolicy(timeout=retry_timeout))
        self.tally = tally

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        written, refused = _write(self.store, batch)
        if refused and self.tally is not None:
            _report_skips(self.tally, [(str(batch["origin"][i]), sk.reason, str(batch["id"][i]))
                                       for i, sk in refused])
        return {"id": np.asarray(written, dtype=object)}


# -- the driver -----------------------------------------------------------------------------------------------------


def ingest_ray(
    col: Any,
    source: Any,
    *,
    ray_address: str | None = None,
    batch_size: int = 64,
    num_encoders: int | None = None,
    num_gpus_per_encoder: float | None = None,
    num_writers: int = 1,
    num_cpus_per_encoder: float | None = None,
    num_cpus_per_decoder: float | None = None,
    encoder_factory: Callable[[], Any] | None = None,
    write: str = "auto",
    skip_existing: bool = True,
    skip_report: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry_timeout: float = 300.0,
    allow_urls: bool = False,
    max_pixels: int = MAX_PIXELS,
    root: str | os.PathLike[str] | None = None,
    token: str | None = None,
    connect_kwargs: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest with Ray Data (see the module docstring). Same arguments and report as :func:`~cir_milvus.ingest.ingest`.

    Args:
        col: the collection (its URI, name and encoder recipe are used; the driver needs no GPU).
        source: as for :func:`~cir_milvus.ingest.ingest` (tar shards are read by Ray tasks, one per shard).
        ray_address: ``ray.init(address=...)``: ``"auto"`` for a running cluster, ``"ray://head:10001"``, or
            ``"local"`` for a fresh local instance. Ignored when Ray is already initialised.
        num_encoders: encoder actors (default: one per GPU in the cluster, else 1).
        num_gpus_per_encoder: GPUs per encoder actor (default 1 when the cluster has GPUs, else 0).
        num_writers: writer / "already stored?" actors (each holds one Milvus client; 0.25 CPU each).
        num_cpus_per_encoder, num_cpus_per_decoder: CPUs reserved per encoder actor / decode task (default 1 each;
            0.5 and 0.25 on clusters with fewer than 4 CPUs, so that every stage can be scheduled at once).
        encoder_factory: a picklable callable building the encoder in each actor (default: torch / onnx encoders
            are rebuilt from the recipe inside the actor, other encoders are pickled from the driver).
        write: ``"workers"`` (actors upsert by URI; servers only), ``"driver"`` (vectors return to the driver, which
            upserts; works with Milvus Lite) or ``"auto"``.
        token, connect_kwargs: credentials / TLS options for the workers' Milvus clients (never logged).

    Raises:
        BackendUnavailableError: Ray is not installed.
        ConfigError: ``write="workers"`` with a Milvus Lite file, or a FakeEncoder collection without a factory.
    """
    ray = require("ray", extra="ray", purpose="scale-out ingestion")
    if write not in ("auto", "workers", "driver"):
        raise ConfigError(f"write must be 'auto', 'workers' or 'driver', got {write!r}")
    is_lite = bool(getattr(col.capabilities, "is_lite", False))
    if write == "auto":
        write = "driver" if is_lite else "workers"
    if write == "workers" and is_lite:
        raise ConfigError("a Milvus Lite file can only be written by the process that opened it; use write='driver' "
                          "or a Milvus server URI")
    if not ray.is_initialized():
        ray.init(address=None if ray_address in (None, "local") else ray_address, include_dashboard=False,
                 log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    if encoder_factory is not None:
        factory: Callable[[], Any] = encoder_factory
    elif col.encoder.recipe.get("backend") in ("torch", "onnx"):
        # weights load in the actor, on its GPU, found by checksum: the driver's paths, then its folders
        from cir_milvus.artifacts import search_dirs
        from cir_milvus.storage.recipe import lite_base_dir

        base = lite_base_dir(col.uri)
        dirs = [str(d) for d in search_dirs(col.search_path)] + [os.getcwd()]
        factory = RecipeEncoderFactory(col.encoder.recipe, base_dir=str(base) if base else None, search_path=dirs)
    else:
        factory = _Shipped(col.encoder)  # small test / plugin encoders travel pickled
    encoder = col.encoder
    pixel_mode = hasattr(encoder, "encode_pixels") and getattr(encoder, "preprocess_config", None) is not None
    cfg = encoder.preprocess_config.to_dict() if pixel_mode else None
    gpus = float(ray.cluster_resources().get("GPU", 0))
    gpu_each = num_gpus_per_encoder if num_gpus_per_encoder is not None else (1.0 if gpus >= 1 else 0.0)
    n_enc = num_encoders or (max(1, int(gpus // gpu_each)) if gpu_each else 1)
    small = float(ray.cluster_resources().get("CPU", 0)) < 4  # every stage must fit at once, or the stream stalls
    enc_cpus = num_cpus_per_encoder if num_cpus_per_encoder is not None else (0.5 if small else 1.0)
    task_cpus = num_cpus_per_decoder if num_cpus_per_decoder is not None else (0.25 if small else 1.0)
    conn = dict(connect_kwargs or {})

    report = IngestReport()
    skips = _SkipLog(report, skip_report)
    tally = ray.remote(num_cpus=0)(_Tally).remote()
    start = time.perf_counter()
    src = open_source(source, allow_urls=allow_urls, root=root)
    try:
        if isinstance(src, ShardSource):
            report.seen = -1  # counted below from the tally and the outputs
            ds = ray.data.from_items([{"shard": s} for s in src.shards]).flat_map(_shard_rows, num_cpus=task_cpus)
        else:
            rows = [_row(rec) for rec in src]
            report.seen = len(rows)
            if write == "driver":  # ids and "already stored?" here: the workers cannot reach a Lite file
                rows = _driver_prefilter(col, rows, report, skips, skip_existing, retry_timeout)
            ds = ray.data.from_items(rows) if rows else None
        if ds is not None:
            ds = ds.map_batches(_drop_errors, batch_size=batch_size, batch_format="numpy", fn_kwargs={"tally": tally},
                                num_cpus=task_cpus)
            if write == "workers":
                ds = ds.map_batches(_resolve_ids, batch_size=batch_size, batch_format="numpy",
                                    fn_kwargs={"tally": tally, "ids_policy": col.store.id_policy},
                                    num_cpus=task_cpus)
                if skip_existing:
                    ds = ds.map_batches(_FilterExisting, batch_size=batch_size, batch_format="numpy",
                                        concurrency=num_writers, num_cpus=0.25,
                                        fn_constructor_kwargs={"uri": col.uri, "name": col.name, "token": token,
                                                               "connect_kwargs": conn, "tally": tally,
                                                               "retry_timeout": retry_timeout})
            if pixel_mode:
                ds = ds.map_batches(_decode, batch_size=batch_size, batch_format="numpy", num_cpus=task_cpus,
                                    fn_kwargs={"cfg": cfg, "max_pixels": max_pixels, "allow_urls": allow_urls,
                                               "tally": tally})
            ds = ds.map_batches(_Encode, batch_size=batch_size, batch_format="numpy", concurrency=n_enc,
                                num_gpus=gpu_each, num_cpus=enc_cpus,
                                fn_constructor_kwargs={"factory": factory, "pixel_mode": pixel_mode,
                                                       "max_pixels": max_pixels, "allow_urls": allow_urls,
                                                       "tally": tally})
            if write == "workers":
                ds = ds.map_batches(_Write, batch_size=batch_size, batch_format="numpy", concurrency=num_writers,
                                    num_cpus=0.25,
                                    fn_constructor_kwargs={"uri": col.uri, "name": col.name, "token": token,
                                                           "connect_kwargs": conn, "retry_timeout": retry_timeout,
                                                           "tally": tally})
            _consume(ds, col, write, report, retry_timeout, skips)
        skipped, already = ray.get(tally.snapshot.remote())
        for name, reason, rid in skipped:
            skips.add(name, reason, rid)
        report.already_stored += already
        if report.seen < 0:
            report.seen = report.stored + report.duplicates + report.already_stored + len(report.skipped)
        if report.stored:
            seal(col.store, RetryPolicy(timeout=retry_timeout))
    finally:
        skips.close()
        report.seconds = time.perf_counter() - start
    log.info("%s", report.summary())
    return report


def _driver_prefilter(col: Any, rows: list[dict[str, Any]], report: IngestReport, skips: _SkipLog,
                      skip_existing: bool, retry_timeout: float) -> list[dict[str, Any]]:
    """Ids, duplicates and "already stored?" in the driver (Lite mode)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        if row["error"]:
            out.append(row)  # tallied by _drop_errors
            continue
        rec = Record(row["id"] or None, row["data"] or row["path"], {}, row["origin"])
        try:
            rid = record_id(rec, col.store)
        except ImageDecodeError as e:
            skips.add(rec.name, strip_name(str(e), str(rec.source)), rec.id)
            continue
        if rid in seen:
            report.duplicates += 1
            continue
        seen.add(rid)
        out.append({**row, "id": rid})
    if skip_existing:
        todo = [r for r in out if not r["error"]]
        present: set[str] = set()
        for s in range(0, len(todo), 1000):
            ids = [r["id"] for r in todo[s : s + 1000]]
            present |= col.store.existing_ids(ids, retry=RetryPolicy(timeout=retry_timeout))
        report.already_stored += len(present)
        out = [r for r in out if r["error"] or r["id"] not in present]
    return out


def _consume(ds: Any, col: Any, write: str, report: IngestReport, retry_timeout: float, skips: _SkipLog) -> None:
    written: set[str] = set()
    policy = RetryPolicy(timeout=retry_timeout)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids = [str(i) for i in batch["id"]]
        if write == "driver" and ids:
            report.encoded += len(ids)
            ids, refused = _write(col.store, batch, policy)
            for i, sk in refused:
                skips.add(str(batch["origin"][i]), sk.reason, str(batch["id"][i]))
        else:
            report.encoded += len(ids)
        for rid in ids:
            if rid in written:
                report.duplicates += 1
            else:
                written.add(rid)
    report.stored = len(written)
