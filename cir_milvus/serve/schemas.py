"""The service's request and response bodies (pydantic models; FastAPI documents them in ``/openapi.json``).

A query carries the fields :meth:`cir_milvus.CIRCollection.search` takes (``text``, a reference, ``composer``,
``alpha``, ``k``, ``group_by``, ``exclude_reference``), except that filters are named operator templates plus
values (``filter``, ``filter_params``) or equality on the operator's fields (``where``): clients never send filter
text, and nothing is accepted that the library would refuse.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BatchResult", "ErrorBody", "ErrorDetail", "HitOut", "SearchBatch", "SearchQuery", "SearchResult"]


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
    group_by: str | None = Field(None, description="a typed field of the collection (see /info): at most one hit "
                                                   "per value, as CIRCollection.search(group_by=...)")
    exclude_reference: bool = Field(True, description="drop the reference image itself from the hits")


# the multipart form of /search: the same fields, the image as a file, objects as JSON text
FORM_FIELDS: dict[str, dict[str, Any]] = {
    "image": {"type": "string", "format": "binary"}, "text": {"type": "string"},
    "collection": {"type": "string"}, "ref_id": {"type": "string"}, "composer": {"type": "string"},
    "alpha": {"type": "number"}, "k": {"type": "integer"}, "filter": {"type": "string"},
    "filter_params": {"type": "string", "description": "JSON object"},
    "where": {"type": "string", "description": "JSON object"}, "group_by": {"type": "string"},
    "exclude_reference": {"type": "boolean"}}


class SearchBatch(BaseModel):
    """Many queries in one request (references as ``image_b64`` or ``ref_id``)."""

    model_config = ConfigDict(extra="forbid")

    queries: list[SearchQuery] = Field(..., min_length=1)


class HitOut(BaseModel):
    id: str
    score: float
    metadata: dict[str, Any]
    source_name: str | None = Field(None, description="the file name the image was stored from (no folders)")
    image_url: str | None = None
    thumbnail_url: str | None = None


class SearchResult(BaseModel):
    collection: str
    composer: str
    hits: list[HitOut]
    took_ms: float


class BatchResult(BaseModel):
    results: list[SearchResult]


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"type", "message"}}``."""

    error: ErrorDetail
