"""``POST /add``, ``GET /info``, ``GET /healthz`` (liveness), ``GET /readyz`` (readiness), the page and its icon."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from cir_milvus.encoders.capabilities import HasExecutionProviders
from cir_milvus.errors import StorageError
from cir_milvus.serve.deps import Service
from cir_milvus.serve.errors import RequestError
from cir_milvus.serve.forms import json_field, read_form, text_field
from cir_milvus.serve.query import decode_upload
from cir_milvus.serve.state import Served

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter()

ADD_BODY = {"requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
    "collection": {"type": "string"}, "ids": {"type": "string", "description": "JSON list"},
    "metadata": {"type": "string", "description": "JSON list of objects"},
    "texts": {"type": "string", "description": "JSON list: one item text (or null) per image (item_text collections)"}
}}}}}}


@router.post("/add", tags=["write"], openapi_extra=ADD_BODY)
async def add(request: Request, svc: Service) -> dict[str, Any]:
    """Add uploaded images (off unless the server runs with ``--allow-add``; needs the API token)."""
    if not svc.allow_add:
        raise RequestError(403, "adding images is disabled on this server (start it with --allow-add and an "
                                "API token)", "Forbidden")
    limits = svc.limits
    form = await read_form(request, max_files=limits.max_add_images)
    try:
        s = svc.pick(text_field(form, "collection"))
        data = [await f.read() for f in form.getlist("images") if hasattr(f, "read")]
        ids = json_field(form, "ids", list)
        metadata = json_field(form, "metadata", list)
        texts = json_field(form, "texts", list)
    finally:
        await form.close()
    if not data:
        raise RequestError(400, "send one or more files in the multipart field 'images'", "ConfigError")
    if ids is not None and (len(ids) != len(data) or not all(isinstance(i, str) for i in ids)):
        raise RequestError(400, f"ids must be a JSON list of {len(data)} strings", "ConfigError")
    if metadata is not None and (len(metadata) != len(data) or not all(isinstance(m, dict) for m in metadata)):
        raise RequestError(400, f"metadata must be a JSON list of {len(data)} objects", "ConfigError")
    if texts is not None and (len(texts) != len(data) or not all(t is None or isinstance(t, str) for t in texts)):
        raise RequestError(400, f"texts must be a JSON list of {len(data)} strings or nulls, one per image",
                           "ConfigError")
    # decode here (byte and pixel caps) so that the encoder thread gets only valid images
    images = [await decode_upload(d, limits) for d in data]
    col = s.collection
    svc.gate.check()  # Milvus did not answer a moment ago: 503 at once
    # the add encodes as well as stores, so its wait is not bounded by the storage budget (as a search's encoding);
    # it answers 503 at once if the gate closes meanwhile, and a transient failure of its own closes the gate
    res = await svc.gate.wait(s.worker.call(lambda: col.add(images, ids=ids, metadata=metadata, texts=texts)),
                              bounded=False)
    return {"collection": s.name, "ids": list(res), "skipped": [sk.reason for sk in res.skipped]}


def runtime(s: Served) -> dict[str, Any]:
    """The encoder actually serving (not the one the recipe was built with): backend, device, ONNX provider."""
    enc = s.collection.encoder
    backend = str(enc.recipe.get("backend", "unknown"))
    out: dict[str, Any] = {"backend": "onnxruntime" if backend == "onnx" else backend, "device": str(enc.device)}
    if isinstance(enc, HasExecutionProviders) and enc.providers:  # onnxruntime execution providers, best first
        first = enc.providers[0]
        out["provider"] = str(first[0] if isinstance(first, (tuple, list)) else first)
    return out


@router.get("/info", tags=["meta"])
async def info(svc: Service) -> dict[str, Any]:
    """The collections served, their composers (and the ones unavailable, with why), filters and limits."""
    from cir_milvus import __version__

    out = []
    for s in svc.served.values():
        enc = s.collection.recipe.encoder
        out.append({
            "name": s.name, "count": await svc.gate.run(s.store.count), "dim": int(s.store.dim),
            "model": enc.get("model"), "pretrained": enc.get("pretrained"),
            "backend": s.collection.encoder.recipe.get("backend"), "runtime": runtime(s),
            "default_composer": s.default_composer,
            "composers": {n: c.public() for n, c in sorted(s.composers.items())},
            "unavailable_composers": dict(sorted(s.unavailable.items())),
            "group_by": sorted(k for k, t in s.store.fields.scalars.items() if t not in ("float", "double")),
            "filters": s.policy.describe(), "images": bool(s.roots), "add": svc.allow_add,
            "targets": ["image", *(["text"] if s.store.fields.text_vector_field else []),
                        *(["bm25"] if s.store.fields.text_sparse_field else [])],
        })
    return {"version": __version__, "collections": out, "auth": bool(svc.token), "limits": svc.limits.public()}


@router.get("/healthz", tags=["meta"])
async def healthz(svc: Service) -> dict[str, Any]:
    """Liveness: the process answers and every encoder thread is alive (Milvus is not asked: see ``/readyz``)."""
    if not all(s.worker.alive for s in svc.served.values()):
        raise RequestError(503, "an encoder thread stopped; restart the server", "Unavailable")
    return {"status": "ok", "collections": list(svc.served)}


@router.get("/readyz", tags=["meta"])
async def readyz(svc: Service) -> dict[str, Any]:
    """Readiness: every encoder thread is alive and Milvus answers for every collection (503 otherwise, so that a
    load balancer takes the instance out until it does)."""
    await healthz(svc)
    for s in svc.served.values():
        try:
            await asyncio.wait_for(asyncio.to_thread(s.store.count), svc.limits.storage_timeout_s + 1)
        except (StorageError, asyncio.TimeoutError) as e:
            raise RequestError(503, f"Milvus does not answer for collection {s.name!r}; retry later",
                               "Unavailable") from e
    svc.gate.reopen()  # Milvus answers: requests need not wait for the gate's own probe
    return {"status": "ready", "collections": list(svc.served)}


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})
