"""The ``cir-milvus serve`` subcommand: open collections, build the app, run uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

from cir_milvus.errors import ConfigError

__all__ = ["add_serve_parser", "build_app_from_args", "cmd_serve"]

log = logging.getLogger(__name__)
TOKEN_ENV = "CIR_SERVE_TOKEN"
MILVUS_TOKEN_ENV = "MILVUS_TOKEN"


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"{flag} needs NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``cir-milvus`` subcommands."""
    p = sub.add_parser(
        "serve", help="HTTP API + web page for composed search (needs cir_milvus[serve])",
        description="Serve /search, /search/batch, /images, /info, /healthz (and /add with --allow-add) plus a web "
                    "page at /. Binds 127.0.0.1 unless --host says otherwise.")
    p.add_argument("--uri", default="./cir.db", help="Milvus Lite file (default ./cir.db) or http(s)://host:19530")
    p.add_argument("--collection", action="append", default=None, metavar="NAME",
                   help="collection to serve (repeatable; default: images). The first is the default one")
    p.add_argument("--token", default=None,
                   help=f"user:password or API key for a Milvus server (default: ${MILVUS_TOKEN_ENV})")
    p.add_argument("--model", default=None,
                   help="encoder instead of the recipe's, e.g. bundle:DIR (an ONNX bundle: no torch needed)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--api-token", default=None,
                   help=f"require 'Authorization: Bearer TOKEN' on every API call (or set ${TOKEN_ENV})")
    p.add_argument("--allow-add", action="store_true", help="enable POST /add (needs an API token)")
    p.add_argument("--image-root", action="append", default=[], metavar="DIR",
                   help="folder /images may serve files from (the folder you ingested from); repeatable. "
                        "Without one, hits carry no image URLs")
    p.add_argument("--filter-field", action="append", default=[], metavar="NAME",
                   help="metadata field clients may filter on (equality) and group by; repeatable")
    p.add_argument("--filter-template", action="append", default=[], metavar="NAME=EXPR",
                   help="named filter template clients fill with values, e.g. "
                        "'cheap=metadata[\"price\"] < {max_price}'; repeatable")
    p.add_argument("--head", action="append", default=[], metavar="KIND=PATH",
                   help="projection head for lincir|pic2word|searle (a bundle's and the demo's are found)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="origin allowed to call the API from a browser, e.g. https://app.example.com; repeatable")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest uploaded image (default 10 MB)")
    p.add_argument("--max-k", type=int, default=100, help="most hits per query (default 100)")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of every request in seconds (default 30)")
    p.add_argument("--max-batch", type=int, default=32,
                   help="most concurrent queries composed in one encoder pass (1 = no batching; default 32)")
    p.add_argument("--no-docs", action="store_true", help="do not serve /docs and /openapi.json")
    p.set_defaults(func=cmd_serve)
    return p


def build_app_from_args(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """Open the collections named by ``args`` and build the app; returns ``(app, collections)``."""
    from cir_milvus.collection import CIRCollection
    from cir_milvus.serve import create_app

    names = args.collection or ["images"]
    token = args.api_token or os.environ.get(TOKEN_ENV) or None
    filters, heads = _pairs(args.filter_template, "--filter-template"), _pairs(args.head, "--head")
    opened: list[Any] = []
    try:
        for name in dict.fromkeys(names):
            opened.append(CIRCollection.open(args.uri, name, model=args.model, device=args.device,
                                             token=args.token or os.environ.get(MILVUS_TOKEN_ENV) or None))
        app = create_app(
            {c.name: c for c in opened}, token=token, allow_add=args.allow_add,
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), cors_origins=args.cors_origin,
            image_roots=args.image_root, filters=filters,
            filter_fields=args.filter_field, heads=heads, max_k=args.max_k,
            request_timeout_s=args.timeout, max_batch=args.max_batch, docs=not args.no_docs)
    except BaseException:
        for c in opened:
            c.close()
        raise
    return app, opened


def cmd_serve(args: argparse.Namespace) -> int:
    from cir_milvus.serve import run

    app, opened = build_app_from_args(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not (args.api_token or os.environ.get(TOKEN_ENV)):
        log.warning("serving on %s without an API token: anyone who can reach the port can search", args.host)
    print(f"serving {', '.join(c.name for c in opened)} on http://{args.host}:{args.port}/ (API docs: /docs)",
          flush=True)
    try:
        run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning")
    finally:
        for c in opened:
            c.close()
    return 0
