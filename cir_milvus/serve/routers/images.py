"""``GET /images/{collection}/{id}``: a hit's stored image (or a thumbnail), from the operator's image roots only."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from cir_milvus.errors import ConfigError, ImageDecodeError
from cir_milvus.images import load_image
from cir_milvus.serve.deps import Service, served_collection
from cir_milvus.serve.errors import RequestError
from cir_milvus.serve.state import Served

__all__ = ["router"]

router = APIRouter(tags=["images"])

IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
                 "BMP": "image/bmp", "TIFF": "image/tiff"}
THUMB_MIN, THUMB_MAX = 16, 1024


def lookup_source(s: Served, item_id: str) -> str | None:
    """The stored ``source`` of an id (``None`` when the id is not stored or is not a valid id).

    Raises:
        StorageError: the store could not answer (503: never taken for "not stored").
    """
    try:
        rows = s.store.get([item_id])
    except ConfigError:  # not an id this collection could hold (wrong type, too long)
        return None
    return str(rows[0].get("source") or "") if rows else None


def render(s: Served, real: Path, etag: str, size: int | None, max_pixels: int) -> tuple[bytes | None, str]:
    """The file's bytes (a recognised image format only) or a JPEG thumbnail (cached by ETag)."""
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


@router.get("/images/{collection}/{item_id:path}", responses={200: {"content": {"image/*": {}}}, 304: {}, 404: {}})
async def image(request: Request, item_id: str, svc: Service, s: Annotated[Served, Depends(served_collection)],
                size: int | None = Query(None, ge=THUMB_MIN, le=THUMB_MAX,
                                         description="thumbnail: longest side in pixels")) -> Response:
    """The stored image of a hit (by id), from the operator's image roots only; ``size`` for a thumbnail."""
    missing = RequestError(404, f"no image to serve for this id in {s.name!r}", "NotFound")
    if not s.roots or not item_id or len(item_id) > 512:
        raise missing
    source = s.sources.get(item_id)
    if source is None:
        source = await svc.gate.run(lookup_source, s, item_id)
        if source is None:
            raise missing
        s.sources.put(item_id, source)
    real = await asyncio.to_thread(s.roots.resolve, source)
    if real is None:
        raise missing
    st = real.stat()
    etag = '"' + hashlib.sha256(f"{real}|{st.st_mtime_ns}|{st.st_size}|{size}".encode()).hexdigest()[:24] + '"'
    headers = {"ETag": etag, "Cache-Control": f"{'private' if svc.token else 'public'}, max-age=3600",
               "X-Content-Type-Options": "nosniff"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    body, media = await asyncio.to_thread(render, s, real, etag, size, svc.limits.max_pixels)
    if body is None:
        raise missing
    return Response(body, media_type=media, headers=headers)


