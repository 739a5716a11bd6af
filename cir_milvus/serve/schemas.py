"""The service's request and response bodies (pydantic models; FastAPI documents them in ``/openapi.json``).

A query carries the fields :meth:`cir_milvus.CIRCollection.search` takes (``text``, a reference, ``composer``,
``alpha``, ``k``, ``group_by``, ``exclude_reference``), except that filters are named operator templates plus
values (``filter``, ``filter_params``) or equality on the operator's fields (``where``): clients never send filter
text, and nothing is accepted that the library would refuse.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Alpha = Annotated[float, Field(ge=0.0, le=1.0)]
StoredId = Annotated[str, Field(max_length=512)]

__all__ = ["BatchResult", "ErrorBody", "ErrorDetail", "HitOut", "SearchBatch", "SearchQuery", "SearchResult"]


class SearchQuery(BaseModel):
    """One composed query: the arguments of :meth:`cir_milvus.CIRCollection.search`. One reference (``image_b64``,
    an uploaded ``image`` file, or ``ref_id``) or several (``images_b64`` / several uploaded files, ``ref_ids``,
    with ``weights``), unless the composer needs no image (``text``). The rules of several references, ``negative``,
    ``like``/``unlike``, a list of alphas and ``dedupe`` are the library's (``docs/queries.md``)."""

    model_config = ConfigDict(extra="forbid")

    collection: str | None = Field(None, description="collection name (default: the first one served)")
    text: str = Field("", description="modification text")
    image_b64: str | None = Field(None, description="reference image file bytes, base64")
    ref_id: str | None = Field(None, max_length=512, description="id of a stored image to use as the reference")
    images_b64: list[str] | None = Field(None, description="several reference images (file bytes, base64), "
                                                           "combined on the sphere")
    ref_ids: list[StoredId] | None = Field(None, description="several stored references (after images_b64)")
    weights: list[float] | None = Field(None, description="one weight per reference (images first, then ids)")
    negative: str | list[str] | None = Field(None, description="text(s) the results should move away from")
    like: list[StoredId] | None = Field(None, description="stored ids to move towards (more like this)")
    unlike: list[StoredId] | None = Field(None, description="stored ids to move away from (less like this)")
    composer: str | None = Field(None, description="composer (default: the collection's)")
    alpha: Alpha | list[Alpha] | None = Field(None, description="composer weight of the text side; a list runs one "
                                                                "query per alpha, fused by reciprocal rank")
    dedupe: float | None = Field(None, description="drop a hit whose cosine to a better hit reaches this, in (0, 1]")
    k: int = Field(10, ge=1, description="number of hits")
    filter: str | None = Field(None, description="name of a filter template the server offers (see /info)")
    filter_params: dict[str, Any] | None = Field(None, description="values of that template's {placeholders}")
    where: dict[str, Any] | None = Field(None, description="metadata field → value (or list of values) to match")
    group_by: str | None = Field(None, description="a typed field of the collection (see /info): at most one hit "
                                                   "per value, as CIRCollection.search(group_by=...)")
    exclude_reference: bool = Field(True, description="drop the reference image itself from the hits")
    targets: list[Literal["image", "text", "bm25"]] | None = Field(
        None, description="mixed galleries: the fields to match, e.g. [\"image\", \"text\"] (see /info item_text)")
    ranker: Literal["rrf", "weighted"] | None = Field(None, description="how several targets are fused (default rrf)")
    ranker_weights: list[float] | None = Field(None, description="ranker weighted: one weight in [0, 1] per target")


# the multipart form of /search: the same fields, the image as a file, objects as JSON text
FORM_FIELDS: dict[str, dict[str, Any]] = {
    "image": {"type": "string", "format": "binary"}, "text": {"type": "string"},
    "collection": {"type": "string"}, "ref_id": {"type": "string"}, "composer": {"type": "string"},
    "alpha": {"type": "string", "description": "a number, or a JSON list of numbers"}, "k": {"type": "integer"},
    "filter": {"type": "string"}, "negative": {"type": "string"}, "dedupe": {"type": "number"},
    "ref_ids": {"type": "string", "description": "JSON list"}, "weights": {"type": "string", "description": "JSON list"},
    "like": {"type": "string", "description": "JSON list"}, "unlike": {"type": "string", "description": "JSON list"},
    "filter_params": {"type": "string", "description": "JSON object"},
    "where": {"type": "string", "description": "JSON object"}, "group_by": {"type": "string"},
    "exclude_reference": {"type": "boolean"}, "targets": {"type": "string", "description": "JSON list"},
    "ranker": {"type": "string"}, "ranker_weights": {"type": "string", "description": "JSON list"}}


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
