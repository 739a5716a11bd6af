"""Logging for the command line: our messages once, third-party noise off at the default level.

The library itself only creates loggers (``logging.getLogger(__name__)``); configuring handlers is the application's
job, and :func:`configure_cli_logging` is what ``cir-milvus`` does:

- ``cir_milvus.*`` records go to one stderr handler (no propagation, so nothing is printed twice): warnings by
  default, info with ``-v``, debug with ``-vv``, errors only with ``-q``.
- pymilvus, milvus_lite and gRPC log tracebacks for failures that we catch and report as one ``error:`` line
  (e.g. a locked Milvus Lite file): they are silenced unless ``-vv``.
- faiss loader lines, open_clip's root-logger info, urllib3/huggingface_hub retries: shown from ``-vv`` only.
- Python warnings are routed through logging (shown once per location, as usual).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = ["QUIET_LOGGERS", "cli_logging", "configure_cli_logging"]

QUIET_LOGGERS: tuple[str, ...] = (
    "pymilvus",
    "milvus_lite",
    "grpc",
    "faiss",
    "open_clip",
    "urllib3",
    "huggingface_hub",
    "filelock",
    "PIL",
    "matplotlib",
    "httpx",
    "onnxruntime",
    "ray",
)
"""Third-party loggers kept quiet below ``-vv`` (their failures reach the user as our own one-line errors)."""

_HANDLER_NAME = "cir_milvus.cli"


def configure_cli_logging(verbosity: int = 0) -> None:
    """Set up logging for one CLI run.

    Args:
        verbosity: ``-1`` (``-q``: errors only), ``0`` (default: our warnings), ``1`` (``-v``: our info),
            ``2`` or more (``-vv``: debug, third-party libraries included).
    """
    ours = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity < 2:
        # gRPC's C core prints to stderr directly; it reads these once, before its first channel
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        os.environ.setdefault("GLOG_minloglevel", "3")
    fmt = logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity >= 1 else "%(levelname)s: %(message)s")
    pkg = logging.getLogger("cir_milvus")
    for h in [h for h in pkg.handlers if h.get_name() == _HANDLER_NAME]:
        pkg.removeHandler(h)
    handler = logging.StreamHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(fmt)
    pkg.addHandler(handler)
    pkg.setLevel(ours)
    pkg.propagate = False

    root = logging.getLogger()
    for h in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(h)
    root_handler = logging.StreamHandler()
    root_handler.set_name(_HANDLER_NAME)
    root_handler.setFormatter(fmt)
    root.addHandler(root_handler)
    # open_clip logs on the root logger: info lines only with -vv; warnings (weights, config) stay visible
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.ERROR if verbosity < 0 else logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbosity >= 2 else logging.CRITICAL)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR if verbosity < 0 else logging.WARNING)


@contextlib.contextmanager
def cli_logging(verbosity: int = 0) -> Iterator[None]:
    """:func:`configure_cli_logging` for the duration of a ``with`` block, then the previous configuration back
    (``cir_milvus.cli.main`` runs in-process in tests and notebooks, which keep their own logging)."""
    names = ["cir_milvus", "py.warnings", *QUIET_LOGGERS]
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers))
             for n in names}
    root = logging.getLogger()
    root_saved = (root.level, list(root.handlers))
    env_saved = {k: os.environ.get(k) for k in ("GRPC_VERBOSITY", "GLOG_minloglevel")}
    try:
        configure_cli_logging(verbosity)
        yield
    finally:
        logging.captureWarnings(False)
        for n, (level, propagate, handlers) in saved.items():
            lg = logging.getLogger(n)
            lg.setLevel(level)
            lg.propagate = propagate
            lg.handlers[:] = handlers
        root.setLevel(root_saved[0])
        root.handlers[:] = root_saved[1]
        for k, v in env_saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
