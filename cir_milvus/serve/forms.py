"""Reading a search request's body: JSON, or a multipart form with the reference image as a file."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cir_milvus.serve.errors import RequestError
from cir_milvus.serve.middleware import BodyTooLarge
from cir_milvus.serve.schemas import SearchQuery

__all__ = ["MAX_REFERENCES", "json_field", "read_form", "read_search", "text_field"]

MAX_REFERENCES = 8


async def read_form(request: Request, max_files: int) -> Any:
    """The multipart form (400 for a malformed one; the body cap's 413 passes through)."""
    try:
        return await request.form(max_files=max_files, max_fields=64)
    except BodyTooLarge:
        raise
    except StarletteHTTPException as e:  # python-multipart refusals (too many files/fields, malformed)
        raise RequestError(400, f"malformed multipart form: {e.detail}", "ConfigError") from None
    except Exception as e:  # noqa: BLE001 - any parser failure is the client's malformed body
        raise RequestError(400, f"malformed multipart form ({type(e).__name__})", "ConfigError") from None


def text_field(form: Any, name: str) -> str | None:
    v = form.get(name)
    if v is None or hasattr(v, "read"):
        return None
    return str(v)


def json_field(form: Any, name: str, kind: type) -> Any:
    raw = text_field(form, name)
    if raw is None or raw == "":
        return None
    try:
        v = json.loads(raw)
    except json.JSONDecodeError:
        raise RequestError(400, f"form field {name!r} must be JSON", "ConfigError") from None
    if not isinstance(v, kind):
        raise RequestError(400, f"form field {name!r} must be a JSON {kind.__name__}", "ConfigError")
    return v


async def _search_form(form: Any) -> tuple[dict[str, Any], list[bytes]]:
    payload: dict[str, Any] = {}
    for key in ("collection", "text", "ref_id", "composer", "k", "filter", "group_by", "exclude_reference", "negative",
                "dedupe", "ranker"):
        v = text_field(form, key)
        if v not in (None, ""):
            payload[key] = v
    alpha = text_field(form, "alpha")
    if alpha not in (None, ""):
        payload["alpha"] = json_field(form, "alpha", list) if alpha.lstrip().startswith("[") else alpha
    for key, kind in (("filter_params", dict), ("where", dict), ("ref_ids", list), ("weights", list),
                      ("like", list), ("unlike", list), ("targets", list), ("ranker_weights", list)):
        v = json_field(form, key, kind)
        if v is not None:
            payload[key] = v
    unknown = sorted(set(form.keys()) - set(SearchQuery.model_fields) - {"image"})
    if unknown:
        raise RequestError(400, f"unknown form field(s) {unknown}", "ConfigError")
    uploads = []
    for upload in form.getlist("image"):
        if hasattr(upload, "read"):
            data = await upload.read()
            if not data:
                raise RequestError(400, "the uploaded image is empty (0 bytes)", "ConfigError")
            uploads.append(data)
    return payload, uploads


async def read_search(request: Request) -> tuple[SearchQuery, list[bytes]]:
    """The query and the uploaded reference images' bytes (none without an upload; several references when several
    files are uploaded as ``image``).

    Raises:
        RequestError: 400 for malformed JSON or forms, 415 for another content type.
        RequestValidationError: fields of the wrong type or range (422).
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: list[bytes] = []
    if ctype == "application/json":
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(400, "the body is not valid JSON", "ConfigError") from None
        if not isinstance(payload, dict):
            raise RequestError(400, "the JSON body must be an object", "ConfigError")
    elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await read_form(request, max_files=MAX_REFERENCES)
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
