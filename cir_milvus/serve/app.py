"""The FastAPI application: :func:`create_app` puts the service's parts together.

Layout (FastAPI's "bigger applications"): :mod:`~cir_milvus.serve.schemas` (request/response models),
:mod:`~cir_milvus.serve.errors` (one mapping from exceptions to HTTP answers), :mod:`~cir_milvus.serve.middleware`
(token, body cap, deadline, in-flight cap), :mod:`~cir_milvus.serve.state` (what the service holds),
:mod:`~cir_milvus.serve.deps` (dependencies), and the routers :mod:`~cir_milvus.serve.routers.search`,
:mod:`~cir_milvus.serve.routers.images`, :mod:`~cir_milvus.serve.routers.admin`. Safety model:

- clients never send paths or filter text: images are served by id from the operator's image roots
  (:class:`~cir_milvus.serve.paths.ImageRoots`), filters are operator templates filled with typed values
  (:class:`~cir_milvus.serve.policy.FilterPolicy`);
- every request body is capped (``max_upload_bytes``), decoded images go through the pixel cap of
  :func:`cir_milvus.images.load_image`, every request has a deadline (``request_timeout_s`` → 504), and storage
  calls retry for ``storage_timeout_s`` at most (then 503 with ``Retry-After``);
- an optional Bearer token guards everything but the static page; ``/add`` is off unless ``allow_add`` (which
  requires a token);
- errors are JSON ``{"error": {"type", "message"}}``: the library's messages for bad requests (4xx), a generic
  message for storage and internal failures (details go to the server log only);
- each collection's encoder is driven by one thread (:class:`~cir_milvus.serve.batcher.EncoderWorker`), which
  batches concurrent queries into one encoder pass.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from cir_milvus.errors import ConfigError
from cir_milvus.images import MAX_PIXELS
from cir_milvus.serve.errors import install_error_handlers
from cir_milvus.serve.middleware import LimitsMiddleware
from cir_milvus.serve.policy import FilterPolicy
from cir_milvus.serve.routers import admin, images, search
from cir_milvus.serve.schemas import SearchQuery
from cir_milvus.serve.state import Limits, build_state

__all__ = ["SearchQuery", "create_app"]


def create_app(
    collections: Mapping[str, Any],
    *,
    token: str | None = None,
    allow_add: bool = False,
    max_upload_bytes: int = 10 * 1024 * 1024,
    cors_origins: Sequence[str] = (),
    image_roots: Sequence[str | os.PathLike[str]] | Mapping[str, Sequence[str | os.PathLike[str]]] = (),
    filters: Mapping[str, str] | None = None,
    filter_fields: Sequence[str] = (),
    heads: Mapping[str, Any] | None = None,
    max_k: int = 100,
    max_batch_queries: int = 64,
    max_text_chars: int = 1_000,
    max_pixels: int = MAX_PIXELS,
    request_timeout_s: float = 30.0,
    body_timeout_s: float = 20.0,
    storage_timeout_s: float | None = None,
    max_inflight: int = 256,
    max_batch: int = 32,
    max_wait_s: float = 0.0,
    docs: bool = True,
) -> FastAPI:
    """The HTTP service over open collections (it does not close them: the caller owns them).

    While the app runs, the collections' storage calls retry for ``storage_timeout_s`` at most (their own retry
    policy is restored when it stops).

    Args:
        collections: name → open :class:`~cir_milvus.CIRCollection`; the first is the default.
        token: API token; when set, every request but the static page needs ``Authorization: Bearer <token>``.
        allow_add: enable ``POST /add`` (requires ``token``).
        max_upload_bytes: cap of one uploaded image (the request body may be 4/3 of it plus 64 KiB, for base64).
        cors_origins: origins allowed to call the API from browsers (none by default: same origin only).
        image_roots: folders ``/images`` may serve from (the folders the collections were ingested from); a list for
            every collection or a mapping per collection. Empty: no image serving.
        filters: named filter templates clients may use by name, sending only values.
        filter_fields: metadata fields clients may filter on by equality.
        heads: projection heads by kind (``lincir``/``pic2word``/``searle`` → file or Head) for the pseudo-token
            composers; a bundle's own heads and the demo model's shipped heads are found without it.
        max_k: most hits per query.
        max_batch_queries: most queries in one ``/search/batch``.
        max_text_chars: longest modification text accepted.
        max_pixels: pixel cap of decoded uploads (decompression-bomb guard).
        request_timeout_s: deadline of every request (504 after it).
        body_timeout_s: time a request body has to arrive in full (408 after it, closing the connection); at most
            ``request_timeout_s``.
        storage_timeout_s: how long one storage call retries a Milvus outage before the request gets 503 (default:
            3 s, or a quarter of ``request_timeout_s`` when that is shorter).
        max_inflight: most requests handled at once (more get 503 with ``Retry-After``).
        max_batch: most concurrent queries composed in one encoder pass (1 disables batching).
        max_wait_s: how long the encoder thread waits to fill a batch (0: batch only what is already queued).
        docs: serve the OpenAPI document and its docs pages (``/openapi.json``, ``/docs``).

    Raises:
        ConfigError: no collections, ``allow_add`` without a token, a bad image root, filter name or head.
    """
    if not collections:
        raise ConfigError("create_app needs at least one collection")
    if allow_add and not token:
        raise ConfigError("allow_add=True needs an API token (token=... / --api-token): adding images must not be "
                          "open to anyone who can reach the port")
    if max_upload_bytes < 1024:
        raise ConfigError(f"max_upload_bytes must be at least 1024, got {max_upload_bytes}")
    if storage_timeout_s is None:
        storage_timeout_s = min(3.0, request_timeout_s / 4)
    if not 0 < storage_timeout_s < request_timeout_s:
        raise ConfigError(f"storage_timeout_s must be above 0 and below request_timeout_s={request_timeout_s:g} "
                          f"(a storage outage must answer 503 before the deadline's 504), got {storage_timeout_s:g}")
    limits = Limits(max_k=max_k, max_upload_bytes=max_upload_bytes, max_batch_queries=max_batch_queries,
                    max_text_chars=max_text_chars, max_pixels=max_pixels, request_timeout_s=request_timeout_s,
                    storage_timeout_s=storage_timeout_s)
    policy = FilterPolicy(templates=dict(filters or {}), fields=tuple(filter_fields))
    svc = build_state(collections, limits=limits, token=token, allow_add=allow_add, policy=policy,
                      image_roots=image_roots, heads=heads, max_batch=max_batch, max_wait_s=max_wait_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.start()
        try:
            yield
        finally:
            svc.close()

    from cir_milvus import __version__

    app = FastAPI(title="cir_milvus", version=__version__, lifespan=lifespan,
                  description="Composed image retrieval (reference image + modification text) over Milvus.",
                  docs_url="/docs" if docs else None, redoc_url=None, openapi_url="/openapi.json" if docs else None)
    app.state.service = svc
    app.add_middleware(LimitsMiddleware, token=token, max_body=limits.max_body, timeout_s=request_timeout_s,
                       max_inflight=max_inflight, body_timeout_s=min(body_timeout_s, request_timeout_s))
    if cors_origins:  # added last = outermost: preflights are answered before the token check
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    install_error_handlers(app)
    for r in (search.router, images.router, admin.router):
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=admin.STATIC_DIR), name="static")
    return app
