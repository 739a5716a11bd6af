"""``cir-milvus set-default``: change the default composer / alpha / head stored in a collection's recipe."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cir_milvus.cli.composing import composer_request, resolve_bundle_head
from cir_milvus.cli.info import describe_composer, read_collection_info
from cir_milvus.cli.models import open_collection
from cir_milvus.cli.options import add_composer_args, add_connection_args, add_json, add_model_args, check_uri, out
from cir_milvus.errors import ConfigError

__all__ = ["add_parser", "cmd_set_default"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("set-default", help="change the default composer / alpha / head stored in a collection",
                       description="Only the query side changes: the stored image vectors stay valid.")
    add_connection_args(p)
    add_model_args(p, creating=False)
    add_composer_args(p, "the new default composer (required)")
    add_json(p, "the composer before and after")
    p.set_defaults(func=cmd_set_default)


def cmd_set_default(args: argparse.Namespace) -> int:
    composer, params = composer_request(args)
    if composer is None:
        raise ConfigError("set-default needs --composer NAME (with --alpha / --head / --template as it takes)")
    check_uri(args.uri, must_exist=True)
    info = read_collection_info(args.uri, args.collection, args.token, args.timeout)
    before = info["recipe"]["composer"]
    col = open_collection(args, info["recipe"]["encoder"])
    try:
        resolve_bundle_head(col.encoder, composer, params)
        col.set_default_composer(composer, **params)
        after = col.recipe.composer
    finally:
        col.close()
    if args.json:
        print(json.dumps({"collection": args.collection, "before": before, "after": after}, indent=2, default=str))
    out(args, f"collection {args.collection!r}: default composer {describe_composer(before)} -> "
              f"{describe_composer(after)}")
    return 0
