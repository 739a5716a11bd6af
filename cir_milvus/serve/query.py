"""How a search request becomes hits: checks, the reference, the filter, one encoder pass, the store's search.

:func:`answer` composes every query of a request on the collection's encoder thread (concurrent requests share
passes, see :mod:`cir_milvus.serve.batcher`) and searches through the store, whose ``group_by`` (native or
emulated) is the only de-duplication.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

from cir_milvus.errors import CIRError
from cir_milvus.images import content_id, load_image
from cir_milvus.serve.batcher import ComposeJob
from cir_milvus.serve.errors import RequestError, as_request_error
from cir_milvus.serve.schemas import HitOut, SearchQuery, SearchResult
from cir_milvus.serve.state import ComposerInfo, Limits, Served, ServiceState

__all__ = ["answer", "decode_upload", "source_name"]


@dataclass
class Prepared:
    """A checked query: where it goes, what the encoder thread composes, and the store search's arguments."""

    served: Served
    job: ComposeJob
    k: int
    filter: str
    filter_params: dict[str, Any]
    exclude: str | None
    group_by: str | None


async def decode_upload(data: bytes, limits: Limits) -> Any:
    """An uploaded image, decoded under the pixel cap (413 over the byte cap, 400 when it is not an image)."""
    if len(data) > limits.max_upload_bytes:
        raise RequestError(413, f"the image is {len(data):,} bytes; the server accepts at most "
                                f"{limits.max_upload_bytes:,}", "PayloadTooLarge")
    return await asyncio.to_thread(load_image, data, limits.max_pixels, name="the uploaded image")


def source_name(source: str | None) -> str | None:
    """The file name of a stored source, without its folders (those stay on the server)."""
    if not source:
        return None
    return source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or None


def _composer(s: Served, q: SearchQuery) -> ComposerInfo:
    cname = q.composer or s.default_composer
    info = s.composers.get(cname)
    if info is None:
        why = f" ({s.unavailable[cname]})" if cname in s.unavailable else ""
        raise RequestError(400, f"composer {cname!r} is not offered for {s.name!r}{why}; available: "
                                f"{', '.join(sorted(s.composers))}", "ConfigError")
    if q.alpha is not None and not info.takes_alpha:
        raise RequestError(400, f"composer {cname!r} takes no alpha; drop it or use one of "
                                f"{sorted(n for n, c in s.composers.items() if c.takes_alpha)}", "ConfigError")
    return info


def _check(q: SearchQuery, info: ComposerInfo, limits: Limits, upload: bytes | None) -> bytes | None:
    """The request's limits and reference rules; returns the reference image's bytes (upload or base64)."""
    if not 1 <= q.k <= limits.max_k:
        raise RequestError(400, f"k must be between 1 and {limits.max_k}, got {q.k}", "ConfigError")
    if len(q.text) > limits.max_text_chars:
        raise RequestError(400, f"text has {len(q.text)} characters; the server accepts at most "
                                f"{limits.max_text_chars}", "ConfigError")
    if info.needs_text and not q.text.strip():
        raise RequestError(400, f"composer {info.name!r} needs a modification text (text=...)", "ConfigError")
    if q.image_b64 is not None and upload is not None:
        raise RequestError(400, "send the image either as a file upload or as image_b64, not both", "ConfigError")
    image_bytes = upload
    if q.image_b64 is not None:
        if len(q.image_b64) > limits.max_upload_bytes * 4 // 3 + 4:
            raise RequestError(413, f"the image is larger than the server's cap of {limits.max_upload_bytes:,} "
                                    "bytes", "PayloadTooLarge")
        try:
            image_bytes = base64.b64decode(q.image_b64, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "image_b64 is not valid base64", "ConfigError") from None
    if info.needs_image and (image_bytes is not None) == (q.ref_id is not None):
        raise RequestError(400, f"composer {info.name!r} needs exactly one reference: an image (upload or "
                                "image_b64) or ref_id", "ConfigError")
    return image_bytes


async def prepare(svc: ServiceState, q: SearchQuery, upload: bytes | None) -> Prepared:
    """Check a query and decode its reference; nothing is composed or searched yet."""
    s = svc.pick(q.collection)
    info = _composer(s, q)
    image_bytes = _check(q, info, svc.limits, upload)
    expr, values = s.policy.render(q.filter, q.filter_params, q.where)
    image = await decode_upload(image_bytes, svc.limits) if image_bytes is not None and info.needs_image else None
    ref_id = q.ref_id if info.needs_image else None
    exclude = None
    if q.exclude_reference:
        if ref_id is not None:
            exclude = ref_id
        elif image_bytes is not None and image is not None:
            exclude = content_id(image_bytes)  # the same id an ingest of this file stored
    job = ComposeJob(text=q.text, composer=info.name, alpha=q.alpha, image=image, ref_id=ref_id, params=info.params)
    return Prepared(s, job, q.k, expr, values, exclude, q.group_by)


def image_urls(s: Served, hit_id: str) -> tuple[str | None, str | None]:
    if not s.roots:
        return None, None
    base = f"/images/{quote(s.name, safe='')}/{quote(hit_id, safe='')}"
    return base, base + "?size=256"


def run_search(p: Prepared, vec: np.ndarray) -> list[HitOut]:
    """The store's search for one composed query vector, as response hits."""
    s = p.served
    hits = s.store.search_vectors(vec, p.k, filter=p.filter or None, filter_params=p.filter_params or None,
                                  group_by=p.group_by, exclude_ids=[p.exclude])[0]
    out = []
    for h in hits:
        if h.source:
            s.sources.put(h.id, h.source)
        image_url, thumb_url = image_urls(s, h.id)
        out.append(HitOut(id=h.id, score=h.score if math.isfinite(h.score) else 0.0, metadata=h.metadata,
                          source_name=source_name(h.source), image_url=image_url, thumbnail_url=thumb_url))
    return out


async def answer(svc: ServiceState, queries: Sequence[tuple[SearchQuery, bytes | None]]) -> list[SearchResult]:
    """Every query's hits, in order. With several queries an error names the query (``queries[3]: ...``).

    Raises:
        CIRError: the first query that fails (its status and message through :mod:`cir_milvus.serve.errors`).
    """
    t0 = time.perf_counter()

    prepared: list[Prepared] = []
    for i, (q, data) in enumerate(queries):
        try:
            prepared.append(await prepare(svc, q, data))
        except CIRError as e:
            if len(queries) == 1:
                raise
            raise as_request_error(e, f"queries[{i}]: ") from e
    futures = [p.served.worker.submit(p.job) for p in prepared]
    results = []
    for i, (p, fut) in enumerate(zip(prepared, futures)):
        try:
            vec = await asyncio.wrap_future(fut)
            hits = await asyncio.to_thread(run_search, p, vec)
        except CIRError as e:
            for f in futures[i + 1:]:
                f.cancel()
            if len(queries) == 1:
                raise
            raise as_request_error(e, f"queries[{i}]: ") from e
        results.append(SearchResult(collection=p.served.name, composer=p.job.composer, hits=hits,
                                    took_ms=round((time.perf_counter() - t0) * 1000, 2)))
    return results
