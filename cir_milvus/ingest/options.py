"""Option groups of :func:`~cir_milvus.ingest.ingest` and :func:`~cir_milvus.ingest.ray_pipeline.ingest_ray`: the
knobs most jobs leave alone, each group one typed value."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cir_milvus.images import MAX_PIXELS

__all__ = ["IngestOptions", "RayOptions"]


@dataclass(frozen=True)
class IngestOptions:
    """The less common options of an ingest run (local or Ray).

    Attributes:
        prefetch: batches decoded ahead of the encoder (default ``2 × workers``, at least 2; local runs only).
        allow_urls: fetch ``http(s)://`` images named by a list (refused by default).
        max_pixels: decompression-bomb cap per image.
        root: folder that relative paths in a list file are relative to (default: the list's folder).
        mp_context: multiprocessing start method of the decode workers (``spawn`` is safe with gRPC threads).
        lookup_batches: encoder batches per "already stored?" call (one Milvus ``get`` for
            ``batch_size × lookup_batches`` ids; each read waits for this client's previous writes to be visible).
        text_column: the metadata key holding each item's text (a CSV / Parquet / JSONL column; ``"caption"`` for a
            WebDataset ``key.txt``), embedded into the item-text field of a collection created with ``item_text=True``
            (mixed galleries; null, a missing key or a blank string: an item without text; any other non-string value
            raises, naming the row). Read by the local and the Ray pipeline alike.
    """

    prefetch: int | None = None
    allow_urls: bool = False
    max_pixels: int = MAX_PIXELS
    root: str | os.PathLike[str] | None = None
    mp_context: str = "spawn"
    lookup_batches: int = 8
    text_column: str | None = None


@dataclass(frozen=True)
class RayOptions:
    """How :func:`~cir_milvus.ingest.ray_pipeline.ingest_ray` spreads the record stage over a Ray cluster.

    Attributes:
        address: ``ray.init(address=...)``: ``"auto"`` for a running cluster, ``"ray://head:10001"``, or ``"local"``
            (also ``None``) for a fresh local instance. Ignored when Ray is already initialised.
        num_encoders: encoder actors (default: one per GPU in the cluster, else 1).
        num_gpus_per_encoder: GPUs per encoder actor (default 1 when the cluster has GPUs, else 0).
        num_writers: writer / "already stored?" actors (each holds one Milvus client; 0.25 CPU each).
        num_cpus_per_encoder, num_cpus_per_decoder: CPUs reserved per encoder actor / decode task (default 1 each;
            0.5 and 0.25 on clusters with fewer than 4 CPUs, so that every stage can be scheduled at once).
        encoder_factory: a picklable callable building the encoder in each actor (default: torch / onnx encoders
            are rebuilt from the recipe inside the actor, other encoders are pickled from the driver).
        write: ``"workers"`` (actors upsert by URI; servers only), ``"driver"`` (vectors return to the driver,
            which upserts; works with Milvus Lite) or ``"auto"``.
        token, client_options: credentials / TLS options of the workers' Milvus clients (never logged).
    """

    address: str | None = None
    num_encoders: int | None = None
    num_gpus_per_encoder: float | None = None
    num_writers: int = 1
    num_cpus_per_encoder: float | None = None
    num_cpus_per_decoder: float | None = None
    encoder_factory: Callable[[], Any] | None = None
    write: Literal["auto", "workers", "driver"] = "auto"
    token: str | None = field(default=None, repr=False)
    client_options: Mapping[str, Any] = field(default_factory=dict)
