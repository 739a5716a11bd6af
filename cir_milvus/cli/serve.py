"""``cir-milvus serve``: open collections, build the HTTP app, run uvicorn.

``--token`` is Milvus's credential and ``--timeout`` the Milvus connect timeout, as in every command; the HTTP side has
its own names: ``--api-token`` (the bearer token clients send) and ``--request-timeout`` (each request's deadline).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from cir_milvus.cli.options import HEAD_SYNTAX, add_connection_args, add_device, add_json, check_uri, parse_head
from cir_milvus.errors import ConfigError

__all__ = ["add_parser", "build_app_from_args", "cmd_serve"]

log = logging.getLogger(__name__)
TOKEN_ENV = "CIR_SERVE_TOKEN"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``cir-milvus`` subcommands."""
    p = sub.add_parser(
        "serve", help="HTTP API + web page for composed search (needs cir_milvus[serve])",
        description="Serve /search, /search/batch, /images, /info, /healthz (and /add with --allow-add) plus a web "
                    "page at /. Binds 127.0.0.1 unless --host says otherwise.")
    add_connection_args(p, collection_default=None)
    p.add_argument("--collection", action="append", default=None, metavar="NAME",
                   help="collection to serve (repeatable; default: images). The first is the default one")
    p.add_argument("--model", default=None,
                   help="encoder instead of the recipe's, e.g. bundle:DIR (an ONNX bundle: no torch needed)")
    add_device(p)
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
    p.add_argument("--head", action="append", default=[], metavar=HEAD_SYNTAX,
                   help="projection head for the lincir|pic2word|searle composers, e.g. lincir=phi.safetensors "
                        "(repeatable; a bundle's own heads and the demo model's are found without it)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="origin allowed to call the API from a browser, e.g. https://app.example.com; repeatable")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest uploaded image (default 10 MB)")
    p.add_argument("--max-k", type=int, default=100, help="most hits per query (default 100)")
    p.add_argument("--request-timeout", type=float, default=30.0,
                   help="deadline of every HTTP request in seconds (default 30)")
    p.add_argument("--max-batch", type=int, default=32,
                   help="most concurrent queries composed in one encoder pass (1 = no batching; default 32)")
    p.add_argument("--no-docs", action="store_true", help="do not serve /docs and /openapi.json")
    add_json(p, "the address and collections served (one line)")
    p.set_defaults(func=cmd_serve)
    return p


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"{flag} needs NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


def _heads(items: Sequence[str]) -> dict[str, str]:
    """``--head`` items → ``{kind: source}``; every head needs a kind (given or implied by a demo name)."""
    heads: dict[str, str] = {}
    for item in items:
        spec = parse_head(item)
        if spec.kind is None:
            raise ConfigError(f"--head {item!r}: serve needs the head's kind, e.g. --head lincir={spec.source} "
                              f"({HEAD_SYNTAX})")
        heads[spec.kind] = spec.source
    return heads


def check_serve_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before a collection opens or a model loads.

    Raises:
        ConfigError: a bad URI, port, limit or flag pair.
        BackendUnavailableError: fastapi or uvicorn is missing (``pip install 'cir_milvus[serve]'``).
    """
    from cir_milvus._optional import require

    require("fastapi", purpose="cir-milvus serve")
    require("uvicorn", purpose="cir-milvus serve")
    check_uri(args.uri, must_exist=True)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    for flag, value in (("--max-k", args.max_k), ("--max-batch", args.max_batch),
                        ("--max-upload-mb", args.max_upload_mb), ("--request-timeout", args.request_timeout)):
        if not value > 0:
            raise ConfigError(f"{flag} must be positive, got {value}")
    _pairs(args.filter_template, "--filter-template")
    _heads(args.head)


def build_app_from_args(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """Open the collections named by ``args`` and build the app; returns ``(app, collections)``."""
    import cir_milvus
    from cir_milvus.cli.info import missing_collection_in_cli_words
    from cir_milvus.serve import create_app

    names = args.collection or ["images"]
    api_token = args.api_token or os.environ.get(TOKEN_ENV) or None
    filters, heads = _pairs(args.filter_template, "--filter-template"), _heads(args.head)
    opened: list[Any] = []
    db = cir_milvus.connect(args.uri, token=args.token, timeout=args.timeout)
    try:
        for name in dict.fromkeys(names):
            with missing_collection_in_cli_words(args.uri, name, args.token, args.timeout):
                opened.append(cir_milvus.CIRCollection.open(db, name, args.model,
                                                            encoder=cir_milvus.EncoderSpec(device=args.device)))
        app = create_app(
            {c.name: c for c in opened}, token=api_token, allow_add=args.allow_add,
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), cors_origins=args.cors_origin,
            image_roots=args.image_root, filters=filters,
            filter_fields=args.filter_field, heads=heads, max_k=args.max_k,
            request_timeout_s=args.request_timeout, max_batch=args.max_batch, docs=not args.no_docs)
    except BaseException:
        for c in opened:
            c.close()
        raise
    return app, opened


def cmd_serve(args: argparse.Namespace) -> int:
    from cir_milvus.serve import run

    check_serve_args(args)
    app, opened = build_app_from_args(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not (args.api_token or os.environ.get(TOKEN_ENV)):
        log.warning("serving on %s without an API token: anyone who can reach the port can search", args.host)
    url = f"http://{args.host}:{args.port}/"
    if args.json:
        print(json.dumps({"url": url, "collections": [c.name for c in opened], "docs": None if args.no_docs
                          else url + "docs"}), flush=True)
    else:
        print(f"serving {', '.join(c.name for c in opened)} on {url} (API docs: /docs)", flush=True)
    try:
        run(app, host=args.host, port=args.port, log_level="info" if args.verbosity >= 1 else "warning")
    finally:
        for c in opened:
            c.close()
    return 0
