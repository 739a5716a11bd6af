"""``POST /search`` (JSON or a multipart form with the reference image as a file) and ``POST /search/batch``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from cir_milvus.serve.deps import Service
from cir_milvus.serve.errors import RequestError
from cir_milvus.serve.forms import read_search
from cir_milvus.serve.query import answer
from cir_milvus.serve.schemas import FORM_FIELDS, BatchResult, ErrorBody, SearchBatch, SearchQuery, SearchResult

__all__ = ["router"]

ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 413: {"model": ErrorBody},
          422: {"model": ErrorBody}, 503: {"model": ErrorBody}, 504: {"model": ErrorBody}}
router = APIRouter(tags=["search"], responses=ERRORS)  # type: ignore[arg-type]

SEARCH_BODY = {"requestBody": {"content": {
    "application/json": {"schema": SearchQuery.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "properties": FORM_FIELDS}}}}}


@router.post("/search", response_model=SearchResult, openapi_extra=SEARCH_BODY)
async def search(request: Request, svc: Service) -> SearchResult:
    """Composed search: a reference (uploaded file, base64 bytes or a stored ``ref_id``) plus a text."""
    q, data = await read_search(request)
    return (await answer(svc, [(q, data)]))[0]


@router.post("/search/batch", response_model=BatchResult)
async def search_batch(body: SearchBatch, svc: Service) -> BatchResult:
    """Many queries in one request (references as ``image_b64`` or ``ref_id``); composed in shared encoder
    passes."""
    if len(body.queries) > svc.limits.max_batch_queries:
        raise RequestError(400, f"{len(body.queries)} queries; the server accepts at most "
                                f"{svc.limits.max_batch_queries} per batch", "ConfigError")
    return BatchResult(results=await answer(svc, [(q, []) for q in body.queries]))
