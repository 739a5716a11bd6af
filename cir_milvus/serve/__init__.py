"""``cir-milvus serve``: an HTTP API and a web page over composed-retrieval collections (extra ``[serve]``).

Importing this package needs neither FastAPI nor torch; :func:`create_app` needs FastAPI (``pip install
'cir_milvus[serve]'``). With an ONNX bundle (``--model bundle:DIR``) the service runs without torch.

Example:
    >>> from cir_milvus import CIRCollection  # doctest: +SKIP
    >>> from cir_milvus.serve import create_app, run  # doctest: +SKIP
    >>> col = CIRCollection.open("./cir.db", "images")  # doctest: +SKIP
    >>> app = create_app({"images": col}, image_roots=["./photos"], filter_fields=["colour"])  # doctest: +SKIP
    >>> run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cir_milvus.serve.paths import ImageRoots
from cir_milvus.serve.policy import FilterPolicy

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["FilterPolicy", "ImageRoots", "create_app", "run"]


def create_app(collections: Any, **kwargs: Any) -> FastAPI:
    """Build the FastAPI application; see :func:`cir_milvus.serve.app.create_app` for the options.

    Raises:
        BackendUnavailableError: FastAPI is not installed (``pip install 'cir_milvus[serve]'``).
    """
    from cir_milvus._optional import require

    require("fastapi", extra="serve", purpose="cir-milvus serve")
    require("python_multipart", extra="serve", purpose="file uploads in cir-milvus serve")
    from cir_milvus.serve.app import create_app as _create_app

    return _create_app(collections, **kwargs)


def run(app: Any, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until interrupted (binds 127.0.0.1 unless told otherwise); silent and slow
    connections are closed (see :mod:`cir_milvus.serve.server`).

    Raises:
        BackendUnavailableError: uvicorn is not installed (``pip install 'cir_milvus[serve]'``).
    """
    from cir_milvus.serve.server import run as _run

    _run(app, host=host, port=port, log_level=log_level)
