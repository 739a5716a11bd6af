"""Scale-out ingestion on Ray Data: the same stages as :mod:`cir_milvus.ingest.pipeline`, spread over a cluster.

::

    records ─► ids (pass 1) ─► admit ─────────────► decode + preprocess ─► encoder actors ─► writer actors ─► Milvus
    (driver,   (tasks: hash     (driver: metadata,   (tasks, CPU; tar        (GPU: num_gpus=1   (upsert by URI,
     or shard   file bytes;      dedupe, "already    shards read again       each)              retries/backoff)
     tasks)     tar keys)        stored?")           for admitted samples)

- **Admission happens in the driver, in input order, for every source and both write modes**: Ray tasks compute the
  ids (content hashes of files named by path; a tar shard's sample keys and metadata, read by one task per shard),
  only ``(position, id, name, error)`` (and a tar sample's metadata) come back, and the driver runs
  :meth:`RecordStage.admit` over them as the local pipeline does: metadata (the store's policy: a sample whose
  ``key.json`` is over the JSON limit or does not fit a typed field is skipped as ``bad_metadata``, never encoded),
  dedupe (the first occurrence in input order is stored, later ones count as ``duplicates``), "already stored?"
  (one lookup per :data:`ADMIT_CHUNK` inputs). Only admitted rows are decoded and encoded. The driver's memory
  grows with the input count: each input's record for lists, folders and iterables; for tar shards one
  ``(position, id, name)`` per sample, each sample's metadata (its ``key.json`` parsed, plus the caption and shard
  name, as JSON text: usually well under a kilobyte, at most the store's 64 KB limit for the ones admitted) until its
  chunk is admitted, and the admitted samples' metadata until pass 2 starts; plus the set of ids seen, the same set
  the local pipeline holds. Tar shards are read twice (keys, then the admitted samples' bytes), and decoding
  starts once every input is admitted: the id pass (hashing files, reading shards) is not overlapped with it.
- ``RayOptions(write="workers")`` (the default for server URIs): writer actors connect to the Milvus server by URI
  and upsert; only ids come back to the driver, which counts them.
- ``RayOptions(write="driver")`` (the default for Milvus Lite, whose file cannot be opened from other processes):
  the vectors come back to the driver, which upserts them.

Counts, kinds and ``ids`` match the local pipeline's: every row carries its admission position, so the report's
``ids`` are in input order although rows come back in any order. Skips of the decode, encode and write stages reach
the driver through a small tally actor.

Needs ``pip install 'cir_milvus[ray]'``. See ``docs/ingestion.md`` for a cluster run and throughput estimates.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus._optional import require
from cir_milvus.collection.decode import prepare_batch, skip_kind_of
from cir_milvus.collection.mixed import check_item_texts, encode_item_texts
from cir_milvus.collection.report import IngestReport, SkipLog
from cir_milvus.collection.stage import Batch, Record, RecordStage, Rows, hashes_file, record_id, seal, write_rows
from cir_milvus.errors import ConfigError, ImageDecodeError
from cir_milvus.images import strip_name
from cir_milvus.ingest.options import IngestOptions, RayOptions
from cir_milvus.ingest.sources import ShardSource, open_source, warn_textless
from cir_milvus.storage.policy import IdPolicy
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.store import Id
from cir_milvus.types import SkipKind

__all__ = ["RayOptions", "RecipeEncoderFactory", "ingest_ray"]

log = logging.getLogger(__name__)

Skip = tuple[str, str, Any, str]
"""``(name, reason, id, kind value)`` of a row a Ray stage dropped."""
SHARD_BITS = 32
"""In the id pass, a tar sample's input position is ``shard index << SHARD_BITS | sample index``."""
ADMIT_CHUNK = 1000
"""Inputs the driver admits at once (one "already stored?" lookup each)."""


class RecipeEncoderFactory:
    """Builds the collection's encoder inside a Ray actor from its recipe (picklable; no model in the driver).

    Args:
        recipe: the collection's ``recipe.encoder`` dict.
        device: ``"cuda"``/``"cpu"``/``None`` (CUDA when the actor got a GPU).
        text_tower: the actors encode item texts too (mixed galleries), with the driver's text tower (a swapped
            ``text_weights`` one included, as the local pipeline does).
    """

    def __init__(self, recipe: Mapping[str, Any], device: str | None = None, *, base_dir: str | None = None,
                 search_path: Sequence[str] | None = None, text_tower: bool = False) -> None:
        if recipe.get("backend") == "fake":
            raise ConfigError("this collection uses a FakeEncoder; pass RayOptions(encoder_factory=functools."
                              "partial(FakeEncoder, dim=..., seed=...))")
        # images only: a swapped text tower is not needed (nor looked up) in the actors
        drop = () if text_tower else ("text_weights", "text_weights_sha256")
        self.recipe = {k: v for k, v in recipe.items() if k not in drop}
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
    """Skips from the decode, encode and write stages."""

    def __init__(self) -> None:
        self.skipped: list[Skip] = []

    def skip(self, items: list[Skip]) -> None:
        self.skipped.extend(items)

    def snapshot(self) -> list[Skip]:
        return self.skipped


def _select(batch: dict[str, np.ndarray], keep: list[int]) -> dict[str, np.ndarray]:
    return {k: v[keep] for k, v in batch.items()}


def _report_skips(tally: Any, items: list[Skip]) -> None:
    if items:
        import ray

        ray.get(tally.skip.remote(items))


def _decode_skips(batch: dict[str, np.ndarray], bad: list[tuple[int, SkipKind, str]]) -> list[Skip]:
    return [(str(batch["origin"][i]), reason, str(batch["id"][i]), kind.value) for i, kind, reason in bad]


def _content_ids(batch: dict[str, np.ndarray], ids_policy: IdPolicy) -> dict[str, np.ndarray]:
    """The record stage's id step for files named by path (pass 1, Ray tasks): the content hash, or why the file
    cannot be read (the skip reason and kind the local pipeline gives)."""
    ids, errors, kinds = [], [], []
    for path, origin in zip(batch["path"], batch["origin"]):
        rec = Record(None, str(path), {}, str(origin))
        try:
            ids.append(record_id(rec, ids_policy))
            errors.append("")
            kinds.append("")
        except ImageDecodeError as e:
            ids.append("")
            errors.append(strip_name(str(e), rec.name))
            kinds.append(skip_kind_of(e).value)
    return {"input": batch["input"], "id": np.asarray(ids, dtype=object),
            "error": np.asarray(errors, dtype=object), "kind": np.asarray(kinds, dtype=object)}


def _shard_ids(row: dict[str, Any], text_column: str | None = None) -> list[dict[str, Any]]:
    """Pass 1 over one tar shard: each sample's input position, id (its key), name, error and metadata (its
    ``key.json`` as the shard source reads it, as JSON text: admission checks it), no image bytes."""
    first = int(row["index"]) << SHARD_BITS
    return [{k: r[k] for k in ("input", "id", "origin", "error", "kind", "metadata")}
            for r in (_row(rec, first + k) for k, rec in
                      enumerate(ShardSource(row["shard"], text_column=text_column)))]


def _shard_rows(row: dict[str, Any], text_column: str | None = None) -> list[dict[str, Any]]:
    """Pass 2 over one tar shard: the admitted samples (``samples``: indexes in the shard) as rows at their
    admission positions (``inputs``), with the metadata admission prepared (``metadata``: JSON text)."""
    keep = {int(k): (int(j), str(m)) for k, j, m in zip(row["samples"], row["inputs"], row["metadata"])}
    return [{**_row(rec._replace(metadata=None), keep[k][0]), "metadata": keep[k][1]}  # admission's JSON, as is
            for k, rec in enumerate(ShardSource(row["shard"], text_column=text_column)) if k in keep]


def _row(rec: Record, position: int) -> dict[str, Any]:
    """A record as a dataset row (its metadata as JSON text: admission applies the store's metadata policy)."""
    src = os.fspath(rec.source) if isinstance(rec.source, os.PathLike) else rec.source
    return {"id": rec.id or "", "path": src if isinstance(src, str) else "",
            "data": src if isinstance(src, bytes) else b"", "metadata": json.dumps(dict(rec.metadata or {})),
            "origin": rec.name, "error": rec.error or "",
            "kind": rec.kind.value if rec.error else SkipKind.NO_IMAGE.value, "text": rec.text or "",
            "input": position}


def _items(batch: dict[str, np.ndarray]) -> list[tuple[int, Any]]:
    return [(i, bytes(batch["data"][i]) if batch["data"][i] else str(batch["path"][i]))
            for i in range(len(batch["id"]))]


def _decode(batch: dict[str, np.ndarray], cfg: dict[str, Any], max_pixels: int, allow_urls: bool,
            tally: Any) -> dict[str, np.ndarray]:
    """The record stage's decode step on CPU workers; adds ``pixels`` ``[N, 3, S, S]`` and drops unreadable rows."""
    ok, pixels, bad = prepare_batch(_items(batch), cfg, max_pixels, allow_urls)
    _report_skips(tally, _decode_skips(batch, bad))
    out = _select(batch, ok)
    out.pop("data")
    out["pixels"] = pixels
    return out


class _Encode:
    """The encoder in an actor (one per GPU): pixels (or raw images for encoders without a pixel API) → vectors;
    with ``item_texts``, each row's text → ``text_vector`` (zeros for a row without text, whose ``text`` is ``""``)."""

    def __init__(self, factory: Callable[[], Any], pixel_mode: bool, max_pixels: int, allow_urls: bool,
                 tally: Any, item_texts: bool = False) -> None:
        self.encoder = factory()
        self.item_texts = item_texts
        self.pixel_mode = pixel_mode
        self.max_pixels = max_pixels
        self.allow_urls = allow_urls
        self.tally = tally

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.pixel_mode:
            raw = self.encoder.encode_pixels(batch.pop("pixels"), normalize=False)
        else:
            ok, images, bad = prepare_batch(_items(batch), None, self.max_pixels, self.allow_urls)
            _report_skips(self.tally, _decode_skips(batch, bad))
            batch = _select(batch, ok)
            raw = (self.encoder.encode_images(images, normalize=False) if images
                   else np.zeros((0, int(self.encoder.dim)), dtype=np.float32))
        batch.pop("data", None)
        raw = np.asarray(raw, dtype=np.float32)  # [N, D]
        norms = np.linalg.norm(raw, axis=1)
        batch["vector"] = (raw / np.maximum(norms[:, None], 1e-12)).astype(np.float32)
        batch["norm"] = norms.astype(np.float32)
        if self.item_texts:
            texts = [str(t) or None for t in batch["text"]]
            out = np.zeros_like(raw)  # [N, D]
            for i, v in enumerate(encode_item_texts(self.encoder, texts)):
                if v is not None:
                    out[i] = v
            batch["text_vector"] = out
        return batch


def _rows(batch: dict[str, np.ndarray]) -> Rows:
    """Encoder output as the record stage's rows (raw embeddings = unit vector × norm)."""
    vecs = np.asarray(batch["vector"], dtype=np.float32)  # [N, D] normalised
    norms = np.asarray(batch["norm"], dtype=np.float32)  # [N]
    ids: list[Id] = [str(i) for i in batch["id"]]
    n = len(ids)
    texts: list[str | None] = [str(t) or None for t in batch["text"]] if "text" in batch else [None] * n
    b = Batch(n, ids, [str(p) or str(o) for p, o in zip(batch["path"], batch["origin"])],
              [json.loads(m) for m in batch["metadata"]], [str(o) for o in batch["origin"]], [None] * n,
              [int(p) for p in batch["input"]], texts)
    text_vectors = None
    if "text_vector" in batch:  # item texts (mixed galleries): a row without text has none
        tv = np.asarray(batch["text_vector"], dtype=np.float32)  # [N, D]
        text_vectors = [tv[i] if t is not None else None for i, t in enumerate(texts)]
    return Rows(b, vecs * norms[:, None], text_vectors)


class _TallySkips:
    """The skip log of a writer actor: refusals collected for the tally actor."""

    def __init__(self) -> None:
        self.items: list[Skip] = []

    def add(self, name: str, reason: str, rid: Any = None, kind: SkipKind = SkipKind.OTHER) -> None:
        self.items.append((name, reason, rid, kind.value))


class _Write:
    """Writes through a :class:`~cir_milvus.storage.store.VectorStore` opened by URI (one per actor); returns the
    ids written and reports the refusals."""

    def __init__(self, uri: str, name: str, token: str | None, connect_kwargs: dict[str, Any],
                 retry_timeout: float, tally: Any = None) -> None:
        from cir_milvus.storage.store import VectorStore

        self.store = VectorStore.open(uri, name, token=token, connect_kwargs=connect_kwargs,
                                      retry=RetryPolicy(timeout=retry_timeout))
        self.tally = tally

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        skips, rows = _TallySkips(), _rows(batch)
        written = write_rows(self.store, rows, skips)
        if self.tally is not None:
            _report_skips(self.tally, skips.items)
        return {"id": np.asarray([str(rid) for _, rid in written], dtype=object),
                "input": np.asarray([rows.batch.inputs[i] for i, _ in written], dtype=np.int64),
                "with_text": np.asarray([rows.batch.texts[i] is not None for i, _ in written], dtype=bool)}


# -- the driver -----------------------------------------------------------------------------------------------------


def _write_mode(col: Any, ray_opts: RayOptions) -> str:
    if ray_opts.write not in ("auto", "workers", "driver"):
        raise ConfigError(f"RayOptions.write must be 'auto', 'workers' or 'driver', got {ray_opts.write!r}")
    is_lite = bool(getattr(col.capabilities, "is_lite", False))
    if ray_opts.write == "workers" and is_lite:
        raise ConfigError("a Milvus Lite file can only be written by the process that opened it; use "
                          "RayOptions(write='driver') or a Milvus server URI")
    return ("driver" if is_lite else "workers") if ray_opts.write == "auto" else ray_opts.write


def _encoder_factory(col: Any, ray_opts: RayOptions, text_tower: bool) -> Callable[[], Any]:
    if ray_opts.encoder_factory is not None:
        return ray_opts.encoder_factory
    if col.encoder.recipe.get("backend") in ("torch", "onnx"):
        # weights load in the actor, on its GPU, found by checksum: the driver's paths, then its folders
        from cir_milvus.artifacts import search_dirs
        from cir_milvus.storage.recipe import lite_base_dir

        base = lite_base_dir(col.uri)
        dirs = [str(d) for d in search_dirs(col.search_path)] + [os.getcwd()]
        return RecipeEncoderFactory(col.encoder.recipe, base_dir=str(base) if base else None, search_path=dirs,
                                    text_tower=text_tower)
    return _Shipped(col.encoder)  # small test / plugin encoders travel pickled


def _resources(ray: Any, o: RayOptions) -> dict[str, Any]:
    """Encoder actors, GPUs and CPUs per stage for this cluster."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    gpu_each = o.num_gpus_per_encoder if o.num_gpus_per_encoder is not None else (1.0 if gpus >= 1 else 0.0)
    small = float(ray.cluster_resources().get("CPU", 0)) < 4  # every stage must fit at once, or the stream stalls
    return {"n_enc": o.num_encoders or (max(1, int(gpus // gpu_each)) if gpu_each else 1), "gpu_each": gpu_each,
            "enc_cpus": o.num_cpus_per_encoder if o.num_cpus_per_encoder is not None else (0.5 if small else 1.0),
            "task_cpus": o.num_cpus_per_decoder if o.num_cpus_per_decoder is not None else (0.25 if small else 1.0)}


class _RayRun:
    """One :func:`ingest_ray` run: the id pass, the driver's admission, the dataset of stages, and its consumption
    into the report."""

    def __init__(self, ray: Any, col: Any, stage: RecordStage, write: str, ray_opts: RayOptions,
                 opts: IngestOptions, retry_timeout: float) -> None:
        self.ray, self.col, self.stage, self.write, self.ray_opts, self.opts = ray, col, stage, write, ray_opts, opts
        self.res = _resources(ray, ray_opts)
        self.tally = ray.remote(num_cpus=0)(_Tally).remote()
        self.store_kwargs = {"uri": col.uri, "name": col.name, "token": ray_opts.token,
                             "connect_kwargs": dict(ray_opts.client_options), "retry_timeout": retry_timeout}

    def _batches(self, ds: Any) -> Iterable[dict[str, np.ndarray]]:
        return ds.iter_batches(batch_size=None, batch_format="numpy")  # type: ignore[no-any-return]

    def admitted_dataset(self, src: Any) -> Any:
        """The admitted rows as a Ray dataset: ids are computed on Ray (pass 1: content hashes of files, the keys of
        tar samples; only ids and names come back), the driver admits every input in input order
        (:meth:`RecordStage.admit`: metadata, dedupe keeping the first occurrence, "already stored?"), and only the
        admitted rows go on to decode and encode."""
        if isinstance(src, ShardSource):
            return self._shard_dataset(src)
        records = self._hash_ids(list(src))
        rows: list[dict[str, Any]] = []
        for s in range(0, len(records), ADMIT_CHUNK):
            b = self.stage.admit(records[s: s + ADMIT_CHUNK], s)
            rows += [_row(Record(rid, data, md, name, text=text), n) for rid, data, md, name, text, n in
                     zip(b.ids, b.data, b.metadata, b.names, b.texts, b.inputs)]
        return self.ray.data.from_items(rows) if rows else None

    def _hash_ids(self, records: list[Record]) -> list[Record]:
        """Records with their content-hash ids filled in by Ray tasks (or the reason a file cannot be read)."""
        todo = [{"input": n, "path": os.fspath(r.source), "origin": r.name} for n, r in enumerate(records)
                if r.error is None and hashes_file(r)]
        if not todo:
            return records
        ds = self.ray.data.from_items(todo).map_batches(
            _content_ids, batch_size=self.stage.batch_size, batch_format="numpy", num_cpus=self.res["task_cpus"],
            fn_kwargs={"ids_policy": self.col.store.id_policy})
        for batch in self._batches(ds):
            for n, rid, err, kind in zip(batch["input"], batch["id"], batch["error"], batch["kind"]):
                r = records[int(n)]
                records[int(n)] = r._replace(error=str(err), kind=SkipKind(str(kind))) if err else r._replace(
                    id=str(rid))
        return records

    def _shard_dataset(self, src: ShardSource) -> Any:
        """Tar shards: pass 1 reads every shard for its samples' keys and metadata, the driver admits them in input
        order (the metadata checks included), pass 2 reads each shard again for the admitted samples' bytes."""
        tasks = {"fn_kwargs": {"text_column": src.text_column}, "num_cpus": self.res["task_cpus"]}
        ids = self.ray.data.from_items([{"shard": s, "index": i} for i, s in enumerate(src.shards)]).flat_map(
            _shard_ids, **tasks)
        # (input position, id, name, error, kind, metadata JSON text) of every sample
        found: list[tuple[int, str, str, str, str, str]] = []
        for b in self._batches(ids):
            found += zip((int(p) for p in b["input"]), b["id"], b["origin"], b["error"], b["kind"], b["metadata"])
        found.sort(key=lambda f: f[0])
        keep: dict[int, tuple[list[int], list[int], list[str]]] = {}  # shard -> (samples, positions, metadata)
        for s in range(0, len(found), ADMIT_CHUNK):
            records = [Record(str(rid) or None, None if err else b"", json.loads(md), str(name), str(err) or None,
                              SkipKind(str(kind))) for _, rid, name, err, kind, md in found[s: s + ADMIT_CHUNK]]
            admitted = self.stage.admit(records, s)
            for n, md in zip(admitted.inputs, admitted.metadata):
                samples, inputs, metadata = keep.setdefault(found[n][0] >> SHARD_BITS, ([], [], []))
                samples.append(found[n][0] & ((1 << SHARD_BITS) - 1))
                inputs.append(n)
                metadata.append(json.dumps(md))
            found[s: s + ADMIT_CHUNK] = [f[:5] + ("",) for f in found[s: s + ADMIT_CHUNK]]  # admitted: drop its text
        items = [{"shard": src.shards[i], "samples": k, "inputs": n, "metadata": m}
                 for i, (k, n, m) in sorted(keep.items())]
        return self.ray.data.from_items(items).flat_map(_shard_rows, **tasks) if items else None

    def stages(self, ds: Any) -> Any:
        """decode → encode → (workers: write)."""
        bs, cpus, tally = self.stage.batch_size, self.res["task_cpus"], self.tally
        cfg = self.stage.pixels
        if cfg is not None:
            ds = ds.map_batches(_decode, batch_size=bs, batch_format="numpy", num_cpus=cpus,
                                fn_kwargs={"cfg": cfg.to_dict(), "max_pixels": self.opts.max_pixels,
                                           "allow_urls": self.opts.allow_urls, "tally": tally})
        ds = ds.map_batches(_Encode, batch_size=bs, batch_format="numpy", concurrency=self.res["n_enc"],
                            num_gpus=self.res["gpu_each"], num_cpus=self.res["enc_cpus"],
                            fn_constructor_kwargs={"factory": _encoder_factory(self.col, self.ray_opts,
                                                                               self.stage.item_texts),
                                                   "pixel_mode": cfg is not None, "max_pixels": self.opts.max_pixels,
                                                   "allow_urls": self.opts.allow_urls, "tally": tally,
                                                   "item_texts": self.stage.item_texts})
        if self.write == "workers":
            ds = ds.map_batches(_Write, batch_size=bs, batch_format="numpy", concurrency=self.ray_opts.num_writers,
                                num_cpus=0.25, fn_constructor_kwargs={**self.store_kwargs, "tally": tally})
        return ds

    def consume(self, ds: Any) -> None:
        """Count (and in driver mode, write through :meth:`RecordStage.write`) what comes back: admission made every
        id distinct."""
        for batch in self._batches(ds):
            if self.write == "driver":
                if len(batch["id"]):
                    rows = _rows(batch)
                    self.stage.count(encoded=len(rows.batch.ids))
                    self.stage.write(rows)
                continue
            placed = [(int(p), str(i)) for p, i in zip(batch["input"], batch["id"])]
            self.stage.count(encoded=len(placed))
            self.stage.written(placed, int(np.count_nonzero(batch.get("with_text", ()))))

    def tally_into(self, skips: SkipLog, start: float) -> None:
        """The skips the stages tallied; then the local pipeline's closing rule (a repeat of a skipped input is not
        stored either)."""
        for name, reason, rid, kind in self.ray.get(self.tally.snapshot.remote()):
            skips.add(name, reason, rid, SkipKind(kind))
        self.stage.finish(start)


def ingest_ray(
    col: Any,
    source: Any,
    *,
    batch_size: int = 64,
    skip_existing: bool = True,
    skip_report: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry_timeout: float = 300.0,
    options: IngestOptions | None = None,
    ray: RayOptions | None = None,
) -> IngestReport:
    """Ingest with Ray Data (see the module docstring): the record stage over a cluster, the same report as
    :func:`~cir_milvus.ingest.ingest` and ``add()``.

    Args:
        col: the collection (its URI, name and encoder recipe are used; the driver needs no GPU).
        source: as for :func:`~cir_milvus.ingest.ingest` (tar shards are read by Ray tasks, one per shard).
        batch_size, skip_existing, skip_report, progress, retry_timeout, options: as for
            :func:`~cir_milvus.ingest.ingest` (``options.prefetch`` is the local pipeline's and unused here).
        ray: the cluster and its stages (:class:`RayOptions`: address, actors, GPUs, CPUs, the encoder factory,
            who writes, the workers' credentials).

    Raises:
        BackendUnavailableError: Ray is not installed.
        ConfigError: ``write="workers"`` with a Milvus Lite file, or a FakeEncoder collection without a factory;
            ``options.text_column`` errors as for :func:`~cir_milvus.ingest.ingest` (the driver reads a list file
            whole before the stages run, so a bad text value there stops the run before anything is stored).
    """
    ray_mod = require("ray", extra="ray", purpose="scale-out ingestion")
    ray_opts, opts = ray or RayOptions(), options or IngestOptions()
    write = _write_mode(col, ray_opts)
    check_item_texts([] if opts.text_column else None, 0, col.store.fields.text_vector_field is not None, col.name)
    src = open_source(source, allow_urls=opts.allow_urls, root=opts.root, text_column=opts.text_column)
    if not ray_mod.is_initialized():
        ray_mod.init(address=None if ray_opts.address in (None, "local") else ray_opts.address,
                     include_dashboard=False, log_to_driver=False)
    ray_mod.data.DataContext.get_current().enable_progress_bars = progress
    report = IngestReport()
    skips = SkipLog(report, skip_report)
    stage = RecordStage(col.store, col.encoder, skips, skip_existing=skip_existing,
                        retry=RetryPolicy(timeout=retry_timeout), batch_size=batch_size, max_pixels=opts.max_pixels,
                        allow_urls=opts.allow_urls, item_texts=opts.text_column is not None)
    run = _RayRun(ray_mod, col, stage, write, ray_opts, opts, retry_timeout)
    start = time.perf_counter()
    try:
        ds = run.admitted_dataset(src)
        if ds is not None:
            run.consume(run.stages(ds))
        run.tally_into(skips, start)
        if report.stored:
            seal(col.store, RetryPolicy(timeout=retry_timeout))
    finally:
        skips.close()
        report.seconds = time.perf_counter() - start
    log.info("%s", report.summary())
    warn_textless(report, opts.text_column)
    return report

