"""``cir-milvus search``: a composed query (reference image or stored id + text) and its top hits."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cir_milvus.cli.composing import composer_request, parse_params, resolve_bundle_head
from cir_milvus.cli.info import read_collection_info
from cir_milvus.cli.models import open_collection
from cir_milvus.cli.options import (
    add_composer_args,
    add_connection_args,
    add_json,
    add_model_args,
    check_file,
    check_k,
    check_uri,
    out,
    rounded,
)
from cir_milvus.errors import ConfigError

__all__ = ["add_parser", "check_search_inputs", "cmd_search"]

SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="composed search: reference image (or --ref-id) + text",
                       description="Compose a query from a reference image (a file, or a stored id) and a "
                                   "modification text, and print the top hits. --composer text searches by text "
                                   "alone; --composer image by the image alone.")
    add_connection_args(p)
    p.add_argument("--image", type=Path, default=None, help="reference image file")
    p.add_argument("--ref-id", default=None, help="id of a stored image to use as the reference (instead of --image)")
    p.add_argument("--text", default=None, help="modification text, e.g. 'make it red' (not with --composer image)")
    add_model_args(p, creating=False)
    p.add_argument("-k", "--k", type=int, default=10, help="number of hits (default 10)")
    add_composer_args(p, "composer for this query (default: the collection's recipe)")
    p.add_argument("--filter", default=None, help='Milvus filter template, e.g. \'metadata["brand"] == {b}\'')
    p.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                   help="filter template value (JSON, or a bare string), repeatable")
    p.add_argument("--grid", type=Path, default=None, help="write a contact sheet PNG of the reference and hits")
    p.add_argument("--image-root", type=Path, default=None,
                   help="folder to find hit images in for --grid when their stored paths no longer resolve")
    add_json(p, "hits")
    p.set_defaults(func=cmd_search)


def check_search_inputs(args: argparse.Namespace) -> None:
    """Every conflicting, missing or out-of-range search input, before any model loads.

    Raises:
        ConfigError: the first problem found, with the fix.
    """
    if args.image is not None and args.ref_id is not None:
        raise ConfigError("pass either --image PATH or --ref-id ID as the reference, not both")
    check_file(args.image, "--image")
    if args.composer == "text":
        if args.image is not None or args.ref_id is not None:
            raise ConfigError("--composer text searches by the text alone; drop --image/--ref-id")
    elif args.image is None and args.ref_id is None:
        raise ConfigError("search needs a reference: --image PATH or --ref-id ID (or --composer text for a "
                          "text-only search)")
    if args.composer == "image":
        if args.text:
            raise ConfigError("--composer image searches by the image alone; drop --text")
    elif not (args.text or "").strip():
        raise ConfigError("search needs --text 'the modification' (or --composer image for an image-only search)")
    check_k(args.k)
    if args.grid is not None and args.grid.suffix.lower() not in SHEET_SUFFIXES:
        raise ConfigError(f"--grid {args.grid} needs an image file name ending in .png")
    check_uri(args.uri, must_exist=True)


def cmd_search(args: argparse.Namespace) -> int:
    check_search_inputs(args)
    composer, params = composer_request(args)
    filter_params = parse_params(args.param) or None
    info = read_collection_info(args.uri, args.collection, args.token, args.timeout)
    col = open_collection(args, info["recipe"]["encoder"])
    try:
        resolve_bundle_head(col.encoder, composer, params)
        hits = col.search(str(args.image) if args.image else None, args.text, k=args.k, composer=composer,
                          ref_id=args.ref_id, filter=args.filter, filter_params=filter_params, **params)
        if args.json:
            print(json.dumps([rounded({"id": h.id, "score": h.score, "metadata": h.metadata, "source": h.source})
                              for h in hits], indent=2))
        elif not hits:
            why = "the collection is empty" if info["count"] == 0 else (
                "no stored image matches the filter" if args.filter else "nothing but the reference is stored")
            print(f"no hits ({why})")
        else:
            print(f"{'#':>3}  {'score':>7}  {'id':<34} source")
            for i, h in enumerate(hits, 1):
                print(f"{i:>3}  {h.score:>7.4f}  {h.id:<34} {h.source}")
        if args.grid:
            path = _write_grid(args, col, hits)
            out(args, f"contact sheet: {path}")
    finally:
        col.close()
    return 0


def _write_grid(args: argparse.Namespace, col: Any, hits: Sequence[Any]) -> Path:
    import numpy as np

    from cir_milvus.viz import SheetRow, contact_sheet, load_tile

    roots = [args.image_root] if args.image_root else []
    if args.image is not None:
        ref: Any = load_tile(str(args.image), label="reference")
    elif args.ref_id is not None:
        ref = load_tile("", roots=roots, label=args.ref_id)
        vec = col.get_vectors([args.ref_id]).get(args.ref_id)
        if vec is not None:  # the stored reference is its own nearest neighbour: that hit carries its source
            for h in col.search_vectors(vec / max(float(np.linalg.norm(vec)), 1e-12), k=5)[0]:
                if h.id == args.ref_id:
                    ref = load_tile(h.source, roots=roots, label=h.id, metadata=h.metadata)
                    break
    else:
        ref = None
    tiles = [(load_tile(h.source, roots=roots, label=h.id, metadata=h.metadata), f"{h.id}\n{h.score:.3f}", None)
             for h in hits]
    text = args.text or "(image only)"
    return contact_sheet([SheetRow(ref, text, tiles)], args.grid)
