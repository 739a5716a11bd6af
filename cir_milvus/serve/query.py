"""How a search request becomes hits: checks, the reference, the filter, one encoder pass, the store's search.

:func:`answer` takes two roads, which give the same hits for the same query:

- a plain query (one reference, one alpha) is composed on the collection's encoder thread, where concurrent
  queries share one encoder pass (:mod:`cir_milvus.serve.batcher`), and searched through the store, whose
  ``group_by`` (native or emulated) is the only grouping;
- a query with the library's other arguments (several references, ``negative``, ``like``/``unlike``, a list of
  alphas, ``dedupe``) is :meth:`CIRCollection.search <cir_milvus.CIRCollection.search>` itself, run on the encoder
  thread: the library checks and answers it, so the service accepts exactly what the library accepts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future
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
    library: dict[str, Any] | None = None  # the arguments of CIRCollection.search for a query off the plain road


EXTENDED = ("images_b64", "ref_ids", "weights", "negative", "like", "unlike", "dedupe", "targets", "ranker",
            "ranker_weights")
MAX_LIST = 64  # ids in like / unlike / ref_ids, negative texts


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


def _b64(value: str, limits: Limits) -> bytes:
    if len(value) > limits.max_upload_bytes * 4 // 3 + 4:
        raise RequestError(413, f"the image is larger than the server's cap of {limits.max_upload_bytes:,} "
                                "bytes", "PayloadTooLarge")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "image_b64 is not valid base64", "ConfigError") from None


def _check_limits(q: SearchQuery, limits: Limits) -> None:
    if not 1 <= q.k <= limits.max_k:
        raise RequestError(400, f"k must be between 1 and {limits.max_k}, got {q.k}", "ConfigError")
    if len(q.text) > limits.max_text_chars:
        raise RequestError(400, f"text has {len(q.text)} characters; the server accepts at most "
                                f"{limits.max_text_chars}", "ConfigError")
    negatives = [q.negative] if isinstance(q.negative, str) else q.negative or []
    if any(len(t) > limits.max_text_chars for t in negatives):
        raise RequestError(400, f"a negative text is longer than {limits.max_text_chars} characters", "ConfigError")
    for name in ("ref_ids", "like", "unlike", "negative", "images_b64", "weights"):
        v = getattr(q, name)
        if isinstance(v, list) and len(v) > MAX_LIST:
            raise RequestError(400, f"{name} has {len(v)} entries; the server accepts at most {MAX_LIST}",
                               "ConfigError")


def _check(q: SearchQuery, info: ComposerInfo, limits: Limits, upload: bytes | None) -> bytes | None:
    """The request's reference rules; returns the reference image's bytes (upload or base64)."""
    if info.needs_text and not q.text.strip():
        raise RequestError(400, f"composer {info.name!r} needs a modification text (text=...)", "ConfigError")
    if q.image_b64 is not None and upload is not None:
        raise RequestError(400, "send the image either as a file upload or as image_b64, not both", "ConfigError")
    image_bytes = upload if q.image_b64 is None else _b64(q.image_b64, limits)
    if info.needs_image and (image_bytes is not None) == (q.ref_id is not None):
        raise RequestError(400, f"composer {info.name!r} needs exactly one reference: an image (upload or "
                                "image_b64) or ref_id", "ConfigError")
    return image_bytes


async def _library_args(q: SearchQuery, info: ComposerInfo, limits: Limits, uploads: list[bytes]) -> dict[str, Any]:
    """:meth:`CIRCollection.search`'s reference and query arguments, the images checked under the service's caps
    (passed on as bytes, so that the library leaves the reference out of the hits by its content id)."""
    if q.image_b64 is not None and uploads:
        raise RequestError(400, "send the image either as a file upload or as image_b64, not both", "ConfigError")
    several = [*(uploads if len(uploads) > 1 else []), *(_b64(b, limits) for b in q.images_b64 or [])]
    one = uploads[0] if len(uploads) == 1 else _b64(q.image_b64, limits) if q.image_b64 is not None else None
    if len(several) + (one is not None) + len(q.ref_ids or []) > MAX_LIST:
        raise RequestError(400, f"more than {MAX_LIST} references", "ConfigError")
    for data in [*several, *([one] if one is not None else [])]:
        await decode_upload(data, limits)  # byte and pixel caps, and a clear 400 for what is not an image
    args: dict[str, Any] = {"image": one, "ref_id": q.ref_id, "images": several or None, "ref_ids": q.ref_ids,
                            "weights": q.weights, "negative": q.negative, "like": q.like, "unlike": q.unlike,
                            "dedupe": q.dedupe, "alpha": q.alpha, "composer": info.name,
                            "exclude_reference": q.exclude_reference, "targets": q.targets,
                            "ranker": q.ranker or "rrf", "ranker_weights": q.ranker_weights, **info.params}
    if not info.needs_image:
        args.update(image=None, ref_id=None, images=None, ref_ids=None, weights=None)
    return args


def _extended(q: SearchQuery, uploads: list[bytes]) -> bool:
    return len(uploads) > 1 or isinstance(q.alpha, list) or any(getattr(q, f) is not None for f in EXTENDED)


async def prepare(svc: ServiceState, q: SearchQuery, uploads: list[bytes]) -> Prepared:
    """Check a query and decode its reference; nothing is composed or searched yet."""
    s = svc.pick(q.collection)
    info = _composer(s, q)
    _check_limits(q, svc.limits)
    expr, values = s.policy.render(q.filter, q.filter_params, q.where)
    if _extended(q, uploads):
        if info.needs_text and not q.text.strip():
            raise RequestError(400, f"composer {info.name!r} needs a modification text (text=...)", "ConfigError")
        job = ComposeJob(text=q.text, composer=info.name)
        args = await _library_args(q, info, svc.limits, uploads)
        return Prepared(s, job, q.k, expr, values, None, q.group_by, args)
    alpha = q.alpha if not isinstance(q.alpha, list) else None
    image_bytes = _check(q, info, svc.limits, uploads[0] if uploads else None)
    image = await decode_upload(image_bytes, svc.limits) if image_bytes is not None and info.needs_image else None
    ref_id = q.ref_id if info.needs_image else None
    exclude = None
    if q.exclude_reference:
        if ref_id is not None:
            exclude = ref_id
        elif image_bytes is not None and image is not None:
            exclude = content_id(image_bytes)  # the same id an ingest of this file stored
    job = ComposeJob(text=q.text, composer=info.name, alpha=alpha, image=image, ref_id=ref_id, params=info.params)
    return Prepared(s, job, q.k, expr, values, exclude, q.group_by)


def image_urls(s: Served, hit_id: str) -> tuple[str | None, str | None]:
    if not s.roots:
        return None, None
    base = f"/images/{quote(s.name, safe='')}/{quote(hit_id, safe='')}"
    return base, base + "?size=256"


def run_search(p: Prepared, vec: np.ndarray) -> list[HitOut]:
    """The store's search for one composed query vector, as response hits."""
    hits = p.served.store.search_vectors(vec, p.k, filter=p.filter or None, filter_params=p.filter_params or None,
                                         group_by=p.group_by, exclude_ids=[p.exclude])[0]
    return hits_out(p.served, hits)


def library_search(p: Prepared) -> Any:
    """:meth:`CIRCollection.search` for a query off the plain road (on the encoder thread)."""
    assert p.library is not None
    return p.served.collection.search(text=p.job.text, k=p.k, filter=p.filter or None,
                                      filter_params=p.filter_params or None, group_by=p.group_by,
                                      **p.library)


def hits_out(s: Served, hits: Sequence[Any]) -> list[HitOut]:
    out = []
    for h in hits:
        if h.source:
            s.sources.put(h.id, h.source)
        image_url, thumb_url = image_urls(s, h.id)
        out.append(HitOut(id=h.id, score=h.score if math.isfinite(h.score) else 0.0, metadata=h.metadata,
                          source_name=source_name(h.source), image_url=image_url, thumbnail_url=thumb_url))
    return out


async def answer(svc: ServiceState, queries: Sequence[tuple[SearchQuery, list[bytes]]]) -> list[SearchResult]:
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
    svc.gate.check()  # Milvus did not answer a moment ago: 503 at once
    futures: list[Future[Any]] = [p.served.worker.submit(p.job) if p.library is None
                                  else p.served.worker.call(functools.partial(library_search, p)) for p in prepared]
    results = []
    for i, (p, fut) in enumerate(zip(prepared, futures)):
        try:
            got = await svc.gate.wait(fut, bounded=False)  # 503 at once if the gate closes meanwhile
            hits = (await svc.gate.run(run_search, p, got) if p.library is None
                    else hits_out(p.served, got))
        except CIRError as e:
            for f in futures[i + 1:]:
                f.cancel()
            if len(queries) == 1:
                raise
            raise as_request_error(e, f"queries[{i}]: ") from e
        results.append(SearchResult(collection=p.served.name, composer=p.job.composer, hits=hits,
                                    took_ms=round((time.perf_counter() - t0) * 1000, 2)))
    return results
