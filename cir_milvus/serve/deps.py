"""FastAPI dependencies: what a route needs, taken from the app's state (``Depends(service)``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cir_milvus.serve.state import Served, ServiceState

__all__ = ["Service", "served_collection", "service"]


def service(request: Request) -> ServiceState:
    """The running service (set by :func:`cir_milvus.serve.app.create_app`)."""
    state: ServiceState = request.app.state.service
    return state


Service = Annotated[ServiceState, Depends(service)]


def served_collection(collection: str, svc: Service) -> Served:
    """The collection named in the path (404 when it is not served)."""
    return svc.pick(collection)
