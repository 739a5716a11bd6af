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
    p = sub.add_parser("search", help="composed search: reference image(s) or stored id(s) + text",
                       description="Compose a query from reference images (files) and/or stored ids and a "
                                   "modification text, and print the top hits. Several references are combined on "
                                   "the sphere; --negative, --like/--unlike and a list of alphas refine the query "
                                   "(docs/queries.md). --composer text searches by text alone; --composer image by "
                                   "the image alone.")
    add_connection_args(p)
    p.add_argument("--image", type=Path, action="append", default=None, metavar="FILE",
                   help="reference image file; repeatable (several references: their weighted spherical mean)")
    p.add_argument("--ref-id", action="append", default=None, metavar="ID",
                   help="id of a stored image to use as a reference (its stored vector); repeatable, with or "
                        "without --image")
    p.add_argument("--weights", default=None, metavar="W1,W2,...",
                   help="one weight per reference, --image files first, then --ref-id ids (default equal)")
    p.add_argument("--text", default=None, help="modification text, e.g. 'make it red' (not with --composer image)")
    p.add_argument("--negative", action="append", default=None, metavar="TEXT",
                   help="a concept to move away from, e.g. 'with stripes' (repeatable)")
    p.add_argument("--like", action="append", default=None, metavar="ID",
                   help="a stored id the results should look like (relevance feedback; repeatable)")
    p.add_argument("--unlike", action="append", default=None, metavar="ID",
                   help="a stored id the results should not look like (repeatable)")
    p.add_argument("--dedupe", type=float, default=None, metavar="COS",
                   help="drop a hit whose cosine to a better hit reaches this, in (0, 1], e.g. 0.98")
    add_model_args(p, creating=False)
    p.add_argument("-k", "--k", type=int, default=10, help="number of hits (default 10)")
    p.add_argument("--targets", default=None, metavar="T1,T2",
                   help="fields to match (mixed galleries): image, text, bm25, e.g. image,text (default image)")
    p.add_argument("--ranker", choices=("rrf", "weighted"), default=None,
                   help="how several --targets are fused (default rrf)")
    p.add_argument("--ranker-weights", default=None, metavar="W1,W2",
                   help="with --ranker weighted: one weight in [0, 1] per target, e.g. 0.7,0.3")
    add_composer_args(p, "composer for this query (default: the collection's recipe)", alpha_list=True)
    p.add_argument("--filter", default=None, help='Milvus filter template, e.g. \'metadata["brand"] == {b}\'')
    p.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                   help="filter template value (JSON, or a bare string), repeatable")
    p.add_argument("--grid", type=Path, default=None, help="write a contact sheet PNG of the reference and hits")
    p.add_argument("--image-root", type=Path, default=None,
                   help="folder to find hit images in for --grid when their stored paths no longer resolve")
    add_json(p, "hits")
    p.set_defaults(func=cmd_search)


def _numbers(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise ConfigError(f"{flag} takes comma-separated numbers such as 0.5,0.5; got {text!r}") from e


def _references(args: argparse.Namespace) -> dict[str, Any]:
    """``--image``/``--ref-id``/``--weights`` → the search's reference arguments (one, or several)."""
    images = [str(i) for i in args.image or []]
    ids = list(args.ref_id or [])
    weights = _numbers(args.weights, "--weights")
    if weights is not None:
        from cir_milvus.query.checks import check_weights

        if len(images) + len(ids) < 2:
            raise ConfigError("--weights weighs several references (--image and/or --ref-id, repeated); with one "
                              "reference leave it out")
        try:
            check_weights(weights, len(images) + len(ids))
        except ConfigError as e:
            raise ConfigError(f"--weights {args.weights}: {e}") from e
    if len(images) + len(ids) > 1:
        return {"images": images or None, "ref_ids": ids or None, "weights": weights}
    return {"image": images[0] if images else None, "ref_id": ids[0] if ids else None}


def _targets(args: argparse.Namespace) -> dict[str, Any]:
    """``--targets``/``--ranker``/``--ranker-weights`` → the search's target arguments (checked again against the
    collection's fields by the library)."""
    weights = _numbers(args.ranker_weights, "--ranker-weights")
    if args.targets is None:
        if args.ranker is not None or weights is not None:
            raise ConfigError("--ranker/--ranker-weights fuse several --targets; add e.g. --targets image,text")
        return {}
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if weights is not None and len(weights) != len(targets):
        raise ConfigError(f"--ranker-weights {args.ranker_weights} gives {len(weights)} weights for "
                          f"{len(targets)} --targets {args.targets}; give one per target")
    ranker = args.ranker or ("weighted" if weights is not None else "rrf")
    return {"targets": targets, "ranker": ranker, **({"ranker_weights": weights} if weights is not None else {})}


def check_search_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Every conflicting, missing or out-of-range search input, before any model loads; returns the query
    arguments (references, negatives, feedback, dedupe).

    Raises:
        ConfigError: the first problem found, with the fix.
    """
    for image in args.image or []:
        check_file(image, "--image")
    refs = bool(args.image or args.ref_id)
    if args.composer == "text":
        if refs:
            raise ConfigError("--composer text searches by the text alone; drop --image/--ref-id")
    elif not refs:
        raise ConfigError("search needs a reference: --image PATH or --ref-id ID (or --composer text for a "
                          "text-only search)")
    if args.composer == "image":
        if args.text:
            raise ConfigError("--composer image searches by the image alone; drop --text")
    elif not (args.text or "").strip():
        raise ConfigError("search needs --text 'the modification' (or --composer image for an image-only search)")
    check_k(args.k)
    if args.dedupe is not None:
        from cir_milvus.query.checks import check_threshold

        try:
            check_threshold(args.dedupe)
        except ConfigError as e:
            raise ConfigError(f"--dedupe {args.dedupe}: {e}") from e
    if any(not t.strip() for t in args.negative or []):
        raise ConfigError("--negative needs a text, e.g. --negative 'with stripes'")
    if args.grid is not None and args.grid.suffix.lower() not in SHEET_SUFFIXES:
        raise ConfigError(f"--grid {args.grid} needs an image file name ending in .png")
    query = {**_references(args), "negative": args.negative, "like": args.like, "unlike": args.unlike,
             "dedupe": args.dedupe, **_targets(args)}
    check_uri(args.uri, must_exist=True)
    return {k: v for k, v in query.items() if v is not None}


def cmd_search(args: argparse.Namespace) -> int:
    query = check_search_inputs(args)
    composer, params = composer_request(args)
    filter_params = parse_params(args.param) or None
    info = read_collection_info(args.uri, args.collection, args.token, args.timeout)
    col = open_collection(args, info["recipe"]["encoder"])
    try:
        resolve_bundle_head(col.encoder, composer, params)
        hits = col.search(text=args.text, k=args.k, composer=composer, filter=args.filter,
                          filter_params=filter_params, **query, **params)
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
    ref_id = args.ref_id[0] if args.ref_id else None
    if args.image:  # the first reference stands for the query
        ref: Any = load_tile(str(args.image[0]), label="reference")
    elif ref_id is not None:
        ref = load_tile("", roots=roots, label=ref_id)
        vec = col.get_vectors([ref_id]).get(ref_id)
        if vec is not None:  # the stored reference is its own nearest neighbour: that hit carries its source
            for h in col.search_vectors(vec / max(float(np.linalg.norm(vec)), 1e-12), k=5)[0]:
                if h.id == ref_id:
                    ref = load_tile(h.source, roots=roots, label=h.id, metadata=h.metadata)
                    break
    else:
        ref = None
    tiles = [(load_tile(h.source, roots=roots, label=h.id, metadata=h.metadata), f"{h.id}\n{h.score:.3f}", None)
             for h in hits]
    text = args.text or "(image only)"
    return contact_sheet([SheetRow(ref, text, tiles)], args.grid)
