"""``cir-milvus info``: recipe, count and index of a collection, read without building a model (no torch)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cir_milvus.cli.options import add_connection_args, add_json, check_uri, redact, rounded
from cir_milvus.errors import CollectionNotFoundError, ConfigError

__all__ = ["add_parser", "cmd_info", "describe_composer", "format_info", "missing_collection_in_cli_words",
           "read_collection_info"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="recipe, count and index of a collection (reads no model)")
    add_connection_args(p)
    add_json(p, "everything")
    p.set_defaults(func=cmd_info)


def read_collection_info(uri: str, name: str, token: str | None = None, timeout: float | None = None
                         ) -> dict[str, Any]:
    """Recipe, count and index of a collection, read without building an encoder (no torch, no model files).

    Returns:
        ``{"name", "uri" (redacted), "backend", "server_version", "count", "index", "recipe"}``.

    Raises:
        CollectionNotFoundError: no such collection (the message lists the existing ones).
        ConfigError: the collection was not created by cir_milvus.
        StorageError: Milvus cannot be reached.
    """
    from cir_milvus.storage.store import VectorStore

    with missing_collection_in_cli_words(uri, name, token, timeout):
        with VectorStore.open(uri, name, token=token, timeout=timeout) as store:
            info = store.info()
    if info.get("recipe") is None:
        raise ConfigError(f"collection {name!r} at {info['uri']} was not created by cir_milvus (it has no recipe), so "
                          "the command line cannot query it; ingest the images into a new --collection with "
                          "`cir-milvus ingest`")
    return info


@contextlib.contextmanager
def missing_collection_in_cli_words(uri: str, name: str, token: str | None, timeout: float | None) -> Iterator[None]:
    """Re-raise the library's :class:`CollectionNotFoundError` (which suggests Python calls) with the commands that
    fix it on the command line.

    Raises:
        CollectionNotFoundError: no collection ``name`` at ``uri`` (the message lists the existing ones).
    """
    try:
        yield
    except CollectionNotFoundError as e:
        existing = ", ".join(_collection_names(uri, token, timeout)) or "none"
        raise CollectionNotFoundError(
            f"no collection {name!r} at {redact(uri)}; existing: {existing}. Pick one with --collection NAME, or "
            f"create {name!r} with `cir-milvus ingest DIR --uri {redact(uri)} --collection {name} --model ...`"
        ) from e


def _collection_names(uri: str, token: str | None, timeout: float | None) -> list[str]:
    """The collections at ``uri`` (for a message)."""
    import cir_milvus

    return cir_milvus.connect(uri, token=token, timeout=timeout).list_collections()


def _random_weights(encoder_recipe: dict[str, Any]) -> bool:
    return bool(encoder_recipe.get("random_weights")) or (
        encoder_recipe.get("backend") == "torch" and encoder_recipe.get("pretrained") is None)


def _describe_weights(e: dict[str, Any]) -> str:
    if _random_weights(e):
        return "RANDOM (untrained weights, created with --random-weights: hits are meaningless)"
    sha = e.get("weights_sha256")
    return f"{e.get('pretrained')}" + (f" (sha256 {sha[:12]})" if sha else "")


def describe_composer(c: dict[str, Any]) -> str:
    """A recipe's composer as one short phrase: ``slerp (alpha=0.8)``, ``lincir (head=lincir:phi.pt)``."""
    params = dict(c.get("params") or {})
    head = params.pop("head", None)
    parts = [f"{k}={v}" for k, v in sorted(params.items()) if v is not None]
    if isinstance(head, dict):
        parts.append(f"head={head.get('kind', '?')}:{Path(str(head.get('source') or 'in-memory')).name}")
    elif head is not None:
        parts.append(f"head={head}")
    return f"{c.get('name')}" + (f" ({', '.join(parts)})" if parts else "")


def format_info(info: dict[str, Any]) -> str:
    """The human ``cir-milvus info`` table."""
    r = info["recipe"]
    e = r["encoder"]
    idx = r.get("index", {})
    state = info.get("index", {}).get("state") or info.get("index", {}).get("index_state")
    rows = [
        ("collection", f"{info['name']} at {info['uri']} ({info['backend']} {info['server_version']})"),
        ("images", f"{info['count']:,}"),
        ("model", f"{e.get('model')} ({e.get('backend')} backend, dim {e.get('dim')})"),
        ("weights", _describe_weights(e)),
    ]
    if e.get("location"):
        rows.append(("bundle", str(e["location"])))
    pre = e.get("preprocess") or {}
    if pre:
        rows.append(("preprocess", f"{pre.get('mode', 'clip')} {pre.get('size', '')}".strip()))
    if e.get("text_weights"):
        rows.append(("text tower", str(e["text_weights"])))
    rows += [
        ("composer", describe_composer(r["composer"])),
        ("index", f"{idx.get('type')} {json.dumps(idx.get('params', {}))}, metric {r.get('metric')}"
                  + (f", {state}" if state else "")),
        ("created by", f"cir_milvus {r.get('package_version') or '?'}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_info(args: argparse.Namespace) -> int:
    check_uri(args.uri, must_exist=True)
    info = read_collection_info(args.uri, args.collection, args.token, args.timeout)
    if args.json:
        print(json.dumps(rounded(info), indent=2, default=str))
    else:
        print(format_info(info))
    return 0
