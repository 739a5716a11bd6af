"""The FastAPI application: ``/search``, ``/search/batch``, ``/images``, ``/add``, ``/info``, ``/healthz`` and the page.

Build it with :func:`create_app` over open collections; ``cir-milvus serve`` (:mod:`cir_milvus.serve.cli`) opens the
collections and runs it with uvicorn. Safety model:

- clients never send paths or filter text: images are served by id from the operator's image roots
  (:class:`~cir_milvus.serve.paths.ImageRoots`), filters are operator templates filled with typed values
  (:class:`~cir_milvus.serve.policy.FilterPolicy`);
- every request body is capped (``max_upload_bytes``), decoded images go through the pixel cap of
  :func:`cir_milvus.images.load_image`, every request has a deadline (``request_timeout_s`` → 504);
- an optional Bearer token guards everything but the static page; ``/add`` is off unless ``allow_add`` (which
  requires a token);
- errors are JSON ``{"error": {"type", "message"}}``: the library's messages for bad requests (4xx), a generic
  message for storage and internal failures (details go to the server log only);
- each collection's encoder is driven by one thread (:class:`~cir_milvus.serve.batcher.EncoderWorker`), which
  batches concurrent queries into one encoder pass.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cir_milvus.errors import (
    BackendUnavailableError,
    CIRError,
    CollectionNotFoundError,
    ConfigError,
    ImageDecodeError,
    StorageError,
)
from cir_milvus.images import MAX_PIXELS, content_id, load_image
from cir_milvus.serve.batcher import ComposeJob, EncoderWorker
from cir_milvus.serve.paths import ImageRoots
from cir_milvus.serve.policy import FilterPolicy

__all__ = ["SearchQuery", "create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
PUBLIC_PATHS = ("/", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
PSEUDO_KINDS = ("lincir", "pic2word", "searle")
IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
                 "BMP": "image/bmp", "TIFF": "image/tiff"}
THUMB_MIN, THUMB_MAX = 16, 1024
GROUP_OVERFETCH = 8


# ------------------------------------------------------------------------------------------------------------------
# request / response models
class SearchQuery(BaseModel):
    """One composed query. Exactly one reference: ``image_b64`` (or an uploaded ``image`` file) or ``ref_id``,
    unless the composer needs no image (``text``)."""

    model_config = ConfigDict(extra="forbid")

    collection: str | None = Field(None, description="collection name (default: the first one served)")
    text: str = Field("", description="modification text")
    image_b64: str | None = Field(None, description="reference image file bytes, base64")
    ref_id: str | None = Field(None, max_length=512, description="id of a stored image to use as the reference")
    composer: str | None = Field(None, description="composer (default: the collection's)")
    alpha: float | None = Field(None, ge=0.0, le=1.0, description="composer weight of the text side")
    k: int = Field(10, ge=1, description="number of hits")
    filter: str | None = Field(None, description="name of a filter template the server offers (see /info)")
    filter_params: dict[str, Any] | None = Field(None, description="values of that template's {placeholders}")
    where: dict[str, Any] | None = Field(None, description="metadata field → value (or list of values) to match")
    group_by: str | None = Field(None, description="metadata field: at most one hit per value")
    exclude_reference: bool = Field(True, description="drop the reference image itself from the hits")


class SearchBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: list[SearchQuery] = Field(..., min_length=1)


class HitOut(BaseModel):
    id: str
    score: float
    metadata: dict[str, Any]
    image_url: str | None = None
    thumbnail_url: str | None = None


class SearchResult(BaseModel):
    collection: str
    composer: str
    hits: list[HitOut]
    took_ms: float


class BatchResult(BaseModel):
    results: list[SearchResult]


# ------------------------------------------------------------------------------------------------------------------
# errors
class RequestError(CIRError):
    """A request the service refuses, with its HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "RequestError") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def error_response(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=dict(headers or {}))


def _status_of(e: CIRError) -> tuple[int, str]:
    if isinstance(e, RequestError):
        return e.status, str(e)
    if isinstance(e, CollectionNotFoundError):
        return 404, "no such collection on this server"
    if isinstance(e, StorageError):
        return 503, "the vector database failed to answer; try again (details are in the server log)"
    if isinstance(e, BackendUnavailableError):
        return 501, str(e)
    return 400, str(e)  # ConfigError, ImageDecodeError, ...: the library's own message says what to fix


# ------------------------------------------------------------------------------------------------------------------
# ASGI middleware: auth, body cap, deadline
class _BodyTooLarge(Exception):
    pass


class LimitsMiddleware:
    """Bearer token, request-body cap and per-request deadline, for every HTTP request."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int, timeout_s: float) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self.timeout_s = timeout_s

    def _authorised(self, scope: Scope) -> bool:
        if not self.token:
            return True
        path = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return True
        for k, v in scope.get("headers", []):
            if k == b"authorization":
                scheme, _, given = v.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("method") != "OPTIONS" and not self._authorised(scope):
            await error_response(401, "Unauthorized", "missing or wrong API token: send 'Authorization: Bearer "
                                 "<token>'", {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_body:
                    await self._too_large(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge()
            return msg

        started = False

        async def tracked_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await asyncio.wait_for(self.app(scope, limited_receive, tracked_send), self.timeout_s)
        except _BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send)
        except asyncio.TimeoutError:
            log.warning("request %s %s passed its %.1f s deadline", scope.get("method"), scope.get("path"),
                        self.timeout_s)
            if not started:
                await error_response(504, "Timeout", f"the request took longer than {self.timeout_s:g} s; try "
                                     "again or ask for fewer hits")(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, "PayloadTooLarge", f"the request body exceeds {self.max_body:,} bytes; send a "
                             "smaller image (the server's upload cap)")(scope, receive, send)


# ------------------------------------------------------------------------------------------------------------------
# per-collection state
class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


@dataclass
class ComposerInfo:
    """What a client can do with one composer on one collection."""

    name: str
    params: dict[str, Any]  # call overrides (a head), never from clients
    takes_alpha: bool
    default_alpha: float | None
    needs_image: bool
    needs_text: bool

    def public(self) -> dict[str, Any]:
        return {"alpha": self.takes_alpha, "default_alpha": self.default_alpha, "needs_image": self.needs_image,
                "needs_text": self.needs_text}


@dataclass
class Served:
    """A collection as the service holds it."""

    name: str
    collection: Any
    worker: EncoderWorker
    composers: dict[str, ComposerInfo]
    default_composer: str
    roots: ImageRoots
    policy: FilterPolicy
    sources: _LRU = field(default_factory=lambda: _LRU(100_000))
    thumbs: _LRU = field(default_factory=lambda: _LRU(2_048))


def _load_heads(collection: Any, heads: Mapping[str, Any] | None) -> dict[str, Any]:
    """Projection heads by kind: the operator's, then a bundle's own, then the demo model's shipped ones."""
    out: dict[str, Any] = {}
    for kind, src in (heads or {}).items():
        if kind not in PSEUDO_KINDS:
            raise ConfigError(f"heads: unknown kind {kind!r}; use one of {list(PSEUDO_KINDS)}")
        if isinstance(src, (str, os.PathLike)):
            from cir_milvus.heads import load_head

            src = load_head(kind, src)
        out[kind] = src
    for bh in (getattr(collection.encoder, "heads", None) or {}).values():
        out.setdefault(getattr(bh, "kind", ""), bh)
    enc = collection.recipe.encoder
    from cir_milvus.models.demo import DATA_DIR, DEMO_MODEL, DEMO_WEIGHTS

    if enc.get("model") == DEMO_MODEL and enc.get("pretrained") == DEMO_WEIGHTS and enc.get("backend") == "torch":
        for kind in PSEUDO_KINDS:
            path = DATA_DIR / f"{DEMO_MODEL}.{kind}.safetensors"
            if kind not in out and path.is_file():
                from cir_milvus.heads import load_head

                out[kind] = load_head(kind, path)
    out.pop("", None)
    return out


def _composers(collection: Any, heads: Mapping[str, Any]) -> tuple[dict[str, ComposerInfo], str]:
    """Every composer this collection can run (built once here; the ones that cannot be built are left out)."""
    from cir_milvus.composers import list_composers

    default = collection.recipe.composer["name"]
    any_head = next((heads[k] for k in PSEUDO_KINDS if k in heads), None)
    out: dict[str, ComposerInfo] = {}
    for name in list_composers():
        params: dict[str, Any] = {}
        if name in PSEUDO_KINDS and name in heads:
            params = {"head": heads[name]}
        elif name == "combined" and any_head is not None and name != default:
            params = {"head": any_head}
        try:
            comp = collection.composer(name, **params)
        except CIRError as e:
            log.info("composer %r is not offered for %r: %s", name, collection.name, e)
            continue
        alpha = comp.params.get("alpha")
        out[name] = ComposerInfo(name, params, "alpha" in comp.params,
                                 float(alpha) if isinstance(alpha, (int, float)) else None,
                                 bool(comp.needs_image), bool(comp.needs_text))
    if default not in out:
        raise ConfigError(f"the default composer {default!r} of collection {collection.name!r} cannot be built")
    return out, default


# ------------------------------------------------------------------------------------------------------------------
# the application
@dataclass(frozen=True)
class Limits:
    max_k: int = 100
    max_upload_bytes: int = 10 * 1024 * 1024
    max_batch_queries: int = 64
    max_add_images: int = 64
    max_text_chars: int = 1_000
    max_pixels: int = MAX_PIXELS
    request_timeout_s: float = 30.0

    @property
    def max_body(self) -> int:
        # base64 in JSON grows the image by 4/3; a little room for the other fields
        return self.max_upload_bytes * 4 // 3 + 64 * 1024


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
    max_batch: int = 32,
    max_wait_s: float = 0.0,
    docs: bool = True,
) -> FastAPI:
    """The HTTP service over open collections (it does not close them: the caller owns them).

    Args:
        collections: name → open :class:`~cir_milvus.CIRCollection`; the first is the default.
        token: API token; when set, every request but the static page needs ``Authorization: Bearer <token>``.
        allow_add: enable ``POST /add`` (requires ``token``).
        max_upload_bytes: cap of one uploaded image (the request body may be 4/3 of it plus 64 KiB, for base64).
        cors_origins: origins allowed to call the API from browsers (none by default: same origin only).
        image_roots: folders ``/images`` may serve from (the folders the collections were ingested from); a list for
            every collection or a mapping per collection. Empty: no image serving.
        filters: named filter templates clients may use by name, sending only values.
        filter_fields: metadata fields clients may filter on by equality and group by.
        heads: projection heads by kind (``lincir``/``pic2word``/``searle`` → file or Head) for the pseudo-token
            composers; a bundle's own heads and the demo model's shipped heads are found without it.
        max_k: most hits per query.
        max_batch_queries: most queries in one ``/search/batch``.
        max_text_chars: longest modification text accepted.
        max_pixels: pixel cap of decoded uploads (decompression-bomb guard).
        request_timeout_s: deadline of every request (504 after it).
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
    limits = Limits(max_k=max_k, max_upload_bytes=max_upload_bytes, max_batch_queries=max_batch_queries,
                    max_text_chars=max_text_chars, max_pixels=max_pixels, request_timeout_s=request_timeout_s)
    policy = FilterPolicy(templates=dict(filters or {}), fields=tuple(filter_fields))
    served: dict[str, Served] = {}
    for name, col in collections.items():
        roots_for = image_roots.get(name, ()) if isinstance(image_roots, Mapping) else image_roots
        comps, default = _composers(col, _load_heads(col, heads))
        served[name] = Served(name, col, EncoderWorker(col, max_batch=max_batch, max_wait_s=max_wait_s, name=name),
                              comps, default, ImageRoots(roots_for), policy)
    default_name = next(iter(served))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        for s in served.values():
            s.worker.close()

    from cir_milvus import __version__

    app = FastAPI(title="cir_milvus", version=__version__, lifespan=lifespan,
                  description="Composed image retrieval (reference image + modification text) over Milvus.",
                  docs_url="/docs" if docs else None, redoc_url=None, openapi_url="/openapi.json" if docs else None)
    app.state.served = served
    app.state.limits = limits
    app.add_middleware(LimitsMiddleware, token=token, max_body=limits.max_body, timeout_s=request_timeout_s)
    if cors_origins:  # added last = outermost: preflights are answered before the token check
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)

    # -- errors ----------------------------------------------------------------------------------------------------
    @app.exception_handler(CIRError)
    async def _cir_error(request: Request, e: CIRError) -> JSONResponse:
        status, message = _status_of(e)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, e, exc_info=e)
        return error_response(status, e.kind if isinstance(e, RequestError) else type(e).__name__, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(e.status_code, "HTTPError", str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(422, "ValidationError", _describe_validation(e.errors()))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return error_response(500, "InternalError", "internal error (details are in the server log)")

    # -- helpers ---------------------------------------------------------------------------------------------------
    def pick(name: str | None) -> Served:
        s = served.get(name or default_name)
        if s is None:
            raise RequestError(404, f"no collection {name!r} on this server; served: {', '.join(served)}",
                               "CollectionNotFound")
        return s

    async def decode(data: bytes) -> Any:
        if len(data) > limits.max_upload_bytes:
            raise RequestError(413, f"the image is {len(data):,} bytes; the server accepts at most "
                                    f"{limits.max_upload_bytes:,}", "PayloadTooLarge")
        return await asyncio.to_thread(load_image, data, limits.max_pixels, name="the uploaded image")

    def hit_urls(s: Served, hit_id: str) -> tuple[str | None, str | None]:
        if not s.roots:
            return None, None
        base = f"/images/{quote(s.name, safe='')}/{quote(hit_id, safe='')}"
        return base, base + "?size=256"

    async def prepare(q: SearchQuery, image_bytes: bytes | None) -> tuple[Served, ComposeJob, dict[str, Any]]:
        s = pick(q.collection)
        cname = q.composer or s.default_composer
        info = s.composers.get(cname)
        if info is None:
            raise RequestError(400, f"composer {cname!r} is not offered for {s.name!r}; available: "
                                    f"{', '.join(sorted(s.composers))}", "ConfigError")
        if q.alpha is not None and not info.takes_alpha:
            raise RequestError(400, f"composer {cname!r} takes no alpha; drop it or use one of "
                                    f"{sorted(n for n, c in s.composers.items() if c.takes_alpha)}", "ConfigError")
        if not 1 <= q.k <= limits.max_k:
            raise RequestError(400, f"k must be between 1 and {limits.max_k}, got {q.k}", "ConfigError")
        if len(q.text) > limits.max_text_chars:
            raise RequestError(400, f"text has {len(q.text)} characters; the server accepts at most "
                                    f"{limits.max_text_chars}", "ConfigError")
        if info.needs_text and not q.text.strip():
            raise RequestError(400, f"composer {cname!r} needs a modification text (text=...)", "ConfigError")
        if q.image_b64 is not None and image_bytes is not None:
            raise RequestError(400, "send the image either as a file upload or as image_b64, not both", "ConfigError")
        if q.image_b64 is not None:
            if len(q.image_b64) > limits.max_upload_bytes * 4 // 3 + 4:
                raise RequestError(413, f"the image is larger than the server's cap of {limits.max_upload_bytes:,} "
                                        "bytes", "PayloadTooLarge")
            try:
                image_bytes = base64.b64decode(q.image_b64, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, "image_b64 is not valid base64", "ConfigError") from None
        has_image = image_bytes is not None
        if info.needs_image and has_image == (q.ref_id is not None):
            raise RequestError(400, f"composer {cname!r} needs exactly one reference: an image (upload or "
                                    "image_b64) or ref_id", "ConfigError")
        if q.group_by is not None:
            s.policy.check_field(q.group_by, "group_by")
        expr, values = s.policy.render(q.filter, q.filter_params, q.where)
        image = await decode(image_bytes) if image_bytes is not None and info.needs_image else None
        ref_id = q.ref_id if info.needs_image else None
        exclude = None
        if q.exclude_reference:
            if ref_id is not None:
                exclude = ref_id
            elif image_bytes is not None and image is not None:
                exclude = content_id(image_bytes)  # the same id an ingest of this file stored
        job = ComposeJob(text=q.text, composer=cname, alpha=q.alpha, image=image, ref_id=ref_id, params=info.params)
        search = {"k": q.k, "filter": expr, "filter_params": values, "exclude": exclude, "group_by": q.group_by}
        return s, job, search

    def run_search(s: Served, vec: np.ndarray, spec: dict[str, Any]) -> list[HitOut]:
        k, group_by = spec["k"], spec["group_by"]
        fetch = min(k * GROUP_OVERFETCH, 16_384) if group_by else k
        hits = s.collection.search_vectors(vec, k=fetch, filter=spec["filter"] or None,
                                           filter_params=spec["filter_params"] or None,
                                           exclude_ids=[spec["exclude"]])[0]
        if group_by:  # one hit per value of the field (the best one), in score order
            seen: set[str] = set()
            kept = []
            for h in hits:
                key = json.dumps(h.metadata.get(group_by), sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    kept.append(h)
            hits = kept
        out = []
        for h in hits[:k]:
            if h.source:
                s.sources.put(h.id, h.source)
            image_url, thumb_url = hit_urls(s, h.id)
            out.append(HitOut(id=h.id, score=h.score if math.isfinite(h.score) else 0.0, metadata=h.metadata,
                              image_url=image_url, thumbnail_url=thumb_url))
        return out

    async def answer(queries: Sequence[tuple[SearchQuery, bytes | None]]) -> list[SearchResult]:
        t0 = time.perf_counter()
        prepared = []
        for i, (q, data) in enumerate(queries):
            try:
                prepared.append(await prepare(q, data))
            except CIRError as e:
                if len(queries) == 1:
                    raise
                status, message = _status_of(e)
                raise RequestError(status, f"queries[{i}]: {message}", type(e).__name__) from e
        futures = [s.worker.submit(job) for s, job, _ in prepared]
        results = []
        for i, ((s, job, spec), fut) in enumerate(zip(prepared, futures)):
            try:
                vec = await asyncio.wrap_future(fut)
            except CIRError as e:
                for f in futures[i + 1:]:
                    f.cancel()
                if len(queries) == 1:
                    raise
                status, message = _status_of(e)
                raise RequestError(status, f"queries[{i}]: {message}", type(e).__name__) from e
            hits = await asyncio.to_thread(run_search, s, vec, spec)
            results.append(SearchResult(collection=s.name, composer=job.composer, hits=hits,
                                        took_ms=round((time.perf_counter() - t0) * 1000, 2)))
        return results

    # -- routes ----------------------------------------------------------------------------------------------------
    search_doc = {"requestBody": {"content": {
        "application/json": {"schema": SearchQuery.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "format": "binary"}, "text": {"type": "string"},
            "collection": {"type": "string"}, "ref_id": {"type": "string"}, "composer": {"type": "string"},
            "alpha": {"type": "number"}, "k": {"type": "integer"}, "filter": {"type": "string"},
            "filter_params": {"type": "string", "description": "JSON object"},
            "where": {"type": "string", "description": "JSON object"}, "group_by": {"type": "string"},
            "exclude_reference": {"type": "boolean"}}}}}}}

    @app.post("/search", response_model=SearchResult, openapi_extra=search_doc, tags=["search"])
    async def search(request: Request) -> SearchResult:
        """Composed search: a reference (uploaded file, base64 bytes or a stored ``ref_id``) plus a text."""
        q, data = await _read_search(request, limits)
        return (await answer([(q, data)]))[0]

    @app.post("/search/batch", response_model=BatchResult, tags=["search"])
    async def search_batch(body: SearchBatch) -> BatchResult:
        """Many queries in one request (references as ``image_b64`` or ``ref_id``); composed in shared encoder
        passes."""
        if len(body.queries) > limits.max_batch_queries:
            raise RequestError(400, f"{len(body.queries)} queries; the server accepts at most "
                                    f"{limits.max_batch_queries} per batch", "ConfigError")
        return BatchResult(results=await answer([(q, None) for q in body.queries]))

    @app.get("/images/{collection}/{item_id:path}", tags=["images"],
             responses={200: {"content": {"image/*": {}}}, 304: {}, 404: {}})
    async def image(request: Request, collection: str, item_id: str,
                    size: int | None = Query(None, ge=THUMB_MIN, le=THUMB_MAX,
                                             description="thumbnail: longest side in pixels")) -> Response:
        """The stored image of a hit (by id), from the operator's image roots only; ``size`` for a thumbnail."""
        s = pick(collection)
        missing = RequestError(404, f"no image to serve for this id in {s.name!r}", "NotFound")
        if not s.roots or not item_id or len(item_id) > 512:
            raise missing
        source = s.sources.get(item_id)
        if source is None:
            source = await asyncio.to_thread(_lookup_source, s.collection, item_id)
            if source is None:
                raise missing
            s.sources.put(item_id, source)
        real = await asyncio.to_thread(s.roots.resolve, source)
        if real is None:
            raise missing
        st = real.stat()
        etag = '"' + hashlib.sha256(f"{real}|{st.st_mtime_ns}|{st.st_size}|{size}".encode()).hexdigest()[:24] + '"'
        headers = {"ETag": etag, "Cache-Control": f"{'private' if token else 'public'}, max-age=3600",
                   "X-Content-Type-Options": "nosniff"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        body, media = await asyncio.to_thread(_render_image, s, real, etag, size, limits.max_pixels)
        if body is None:
            raise missing
        return Response(body, media_type=media, headers=headers)

    @app.post("/add", tags=["write"], openapi_extra={"requestBody": {"content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": {
            "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "collection": {"type": "string"}, "ids": {"type": "string", "description": "JSON list"},
            "metadata": {"type": "string", "description": "JSON list of objects"}}}}}}})
    async def add(request: Request) -> dict[str, Any]:
        """Add uploaded images (off unless the server runs with ``--allow-add``; needs the API token)."""
        if not allow_add:
            raise RequestError(403, "adding images is disabled on this server (start it with --allow-add and an "
                                    "API token)", "Forbidden")
        form = await _form(request, max_files=limits.max_add_images)
        try:
            s = pick(_text_field(form, "collection"))
            files = [f for f in form.getlist("images") if hasattr(f, "read")]
            data = [await f.read() for f in files]
            ids = _json_field(form, "ids", list)
            metadata = _json_field(form, "metadata", list)
        finally:
            await form.close()
        if not data:
            raise RequestError(400, "send one or more files in the multipart field 'images'", "ConfigError")
        for d in data:
            if len(d) > limits.max_upload_bytes:
                raise RequestError(413, f"an image is {len(d):,} bytes; the cap is {limits.max_upload_bytes:,}",
                                   "PayloadTooLarge")
        if ids is not None and (len(ids) != len(data) or not all(isinstance(i, str) for i in ids)):
            raise RequestError(400, f"ids must be a JSON list of {len(data)} strings", "ConfigError")
        if metadata is not None and (len(metadata) != len(data) or not all(isinstance(m, dict) for m in metadata)):
            raise RequestError(400, f"metadata must be a JSON list of {len(data)} objects", "ConfigError")
        # decode here (pixel cap) so that the encoder thread gets only valid images
        images = [await decode(d) for d in data]
        col = s.collection
        res = await asyncio.wrap_future(s.worker.call(lambda: col.add(images, ids=ids, metadata=metadata)))
        return {"collection": s.name, "ids": list(res), "skipped": [sk.reason for sk in res.skipped]}

    @app.get("/info", tags=["meta"])
    async def info() -> dict[str, Any]:
        """The collections served, their composers, filters and the server's limits."""
        out = []
        for s in served.values():
            enc = s.collection.recipe.encoder
            out.append({
                "name": s.name, "count": await asyncio.to_thread(len, s.collection), "dim": int(s.collection.encoder.dim),
                "model": enc.get("model"), "pretrained": enc.get("pretrained"), "backend": enc.get("backend"),
                "default_composer": s.default_composer,
                "composers": {n: c.public() for n, c in sorted(s.composers.items())},
                "filters": s.policy.describe(), "images": bool(s.roots), "add": allow_add,
            })
        return {"version": __version__, "collections": out, "auth": bool(token),
                "limits": {"max_k": limits.max_k, "max_upload_bytes": limits.max_upload_bytes,
                           "max_batch_queries": limits.max_batch_queries, "max_text_chars": limits.max_text_chars,
                           "request_timeout_s": limits.request_timeout_s}}

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers and every encoder thread is alive."""
        alive = all(s.worker.alive for s in served.values())
        if not alive:
            raise RequestError(503, "an encoder thread stopped; restart the server", "Unavailable")
        return {"status": "ok", "collections": list(served)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


# ------------------------------------------------------------------------------------------------------------------
# request parsing
def _describe_validation(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _form(request: Request, max_files: int) -> Any:
    try:
        return await request.form(max_files=max_files, max_fields=64)
    except StarletteHTTPException as e:  # python-multipart refusals (too many files/fields, malformed)
        raise RequestError(400, f"malformed multipart form: {e.detail}", "ConfigError") from None
    except _BodyTooLarge:
        raise
    except Exception as e:  # noqa: BLE001 - any parser failure is the client's malformed body
        raise RequestError(400, f"malformed multipart form ({type(e).__name__})", "ConfigError") from None


def _text_field(form: Any, name: str) -> str | None:
    v = form.get(name)
    if v is None or hasattr(v, "read"):
        return None
    return str(v)


def _json_field(form: Any, name: str, kind: type) -> Any:
    raw = _text_field(form, name)
    if raw is None or raw == "":
        return None
    try:
        v = json.loads(raw)
    except json.JSONDecodeError:
        raise RequestError(400, f"form field {name!r} must be JSON", "ConfigError") from None
    if not isinstance(v, kind):
        raise RequestError(400, f"form field {name!r} must be a JSON {kind.__name__}", "ConfigError")
    return v


async def _search_form(form: Any) -> tuple[dict[str, Any], bytes | None]:
    payload: dict[str, Any] = {}
    for key in ("collection", "text", "ref_id", "composer", "alpha", "k", "filter", "group_by", "exclude_reference"):
        v = _text_field(form, key)
        if v not in (None, ""):
            payload[key] = v
    for key in ("filter_params", "where"):
        v = _json_field(form, key, dict)
        if v is not None:
            payload[key] = v
    unknown = sorted(set(form.keys()) - set(SearchQuery.model_fields) - {"image"})
    if unknown:
        raise RequestError(400, f"unknown form field(s) {unknown}", "ConfigError")
    data = None
    upload = form.get("image")
    if upload is not None and hasattr(upload, "read"):
        data = await upload.read()
        if not data:
            raise RequestError(400, "the uploaded image is empty (0 bytes)", "ConfigError")
    return payload, data


async def _read_search(request: Request, limits: Limits) -> tuple[SearchQuery, bytes | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: bytes | None = None
    if ctype == "application/json":
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(400, "the body is not valid JSON", "ConfigError") from None
        if not isinstance(payload, dict):
            raise RequestError(400, "the JSON body must be an object", "ConfigError")
    elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await _form(request, max_files=1)
        try:
            payload, data = await _search_form(form)
        finally:
            await form.close()  # uploaded parts are spooled temporary files
    else:
        raise RequestError(415, "send application/json or multipart/form-data", "UnsupportedMediaType")
    try:
        return SearchQuery.model_validate(payload), data
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


def _lookup_source(collection: Any, item_id: str) -> str | None:
    """The stored ``source`` of an id (``None`` when the id is not stored or is not a valid id)."""
    try:
        rows = collection.store.get([item_id])
    except ConfigError:  # not an id this collection could hold (wrong type, too long)
        return None
    return str(rows[0].get("source") or "") if rows else None


def _render_image(s: Served, real: Path, etag: str, size: int | None, max_pixels: int) -> tuple[bytes | None, str]:
    from PIL import Image

    if size is None:
        data = real.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or ""
        except Exception:  # noqa: BLE001 - not an image: never served
            return None, ""
        media = IMAGE_FORMATS.get(fmt)
        return (data, media) if media else (None, "")
    cached = s.thumbs.get(etag)
    if cached is not None:
        return cached, "image/jpeg"
    try:
        img = load_image(real, max_pixels)
    except ImageDecodeError:
        return None, ""
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    body = buf.getvalue()
    s.thumbs.put(etag, body)
    return body, "image/jpeg"
