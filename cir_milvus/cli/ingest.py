"""``cir-milvus ingest``: add images (a folder, ``--list`` or ``--shards``) to a collection, created if missing.

Every input is checked before a model loads or Milvus is touched. A new collection is created with create-or-open
(``exist_ok``), so two ingests that create the same collection at the same moment both store their images; a Lite
file that does not exist yet is created only once the model has loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cir_milvus.cli.composing import composer_request, same_default
from cir_milvus.cli.info import describe_composer, read_collection_info
from cir_milvus.cli.models import check_backend, check_precision, creation_model, open_collection
from cir_milvus.cli.options import (
    add_composer_args,
    add_connection_args,
    add_json,
    add_model_args,
    check_uri,
    is_lite,
    out,
    redact,
    rounded,
)
from cir_milvus.errors import CIRError, ConfigError

__all__ = ["add_parser", "cmd_ingest"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ingest", help="add images (a folder, --list or --shards) to a collection (created if missing)",
                       description="Parallel decode, batched encoding, background upserts. Re-running the same "
                                   "command resumes: ids already stored are neither decoded nor encoded again. "
                                   "Creating a collection needs --model (and --pretrained for open_clip models).")
    p.add_argument("dir", type=Path, nargs="?", default=None, help="a folder of images (searched recursively)")
    p.add_argument("--list", type=Path, default=None, dest="list_file", metavar="FILE",
                   help="a .csv/.tsv/.jsonl/.parquet list with a path column and optional id and metadata columns")
    p.add_argument("--shards", default=None, metavar="SPEC",
                   help="WebDataset tar shards as img2dataset writes them: 'data/{00000..00009}.tar' or a glob")
    p.add_argument("--root", type=Path, default=None, help="folder that relative paths of --list are relative to")
    add_connection_args(p)
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder batch (default 64)")
    p.add_argument("--workers", type=int, default=None,
                   help="decode processes (default: one per CPU, at most 32, at low priority; 0 = decode in-process)")
    add_composer_args(p, "default composer stored in the recipe of a NEW collection (change an existing one "
                         "with `cir-milvus set-default`)")
    p.add_argument("--skip-report", type=Path, default=None,
                   help="write skipped inputs and reasons here as JSON Lines")
    p.add_argument("--summary-json", type=Path, default=None, help="write the run's counts here as JSON")
    p.add_argument("--allow-urls", action="store_true", help="fetch http(s):// images named by --list")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--text-column", default=None, metavar="NAME",
                   help="item texts (mixed galleries): the --list column or metadata key holding each item's text "
                        "('caption' for WebDataset .txt); a NEW collection gets an item-text field")
    p.add_argument("--full-text", action="store_true",
                   help="with --text-column on a NEW collection: also BM25 full-text search over the item texts "
                        "(--targets bm25; Milvus Lite >= 3.0 or Milvus >= 2.5)")
    p.add_argument("--ray-address", default=None,
                   help="run on Ray Data: 'auto' (running cluster), 'ray://head:10001' or 'local' (needs [ray])")
    add_json(p, "the run's counts")
    p.set_defaults(func=cmd_ingest)


def _source_spec(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The one source (``DIR``, ``--list`` or ``--shards``) and the root of relative paths, checked.

    Raises:
        ConfigError: none or several sources, a missing folder or list file, a bad batch size or worker count.
    """
    given = [x for x in (args.dir, args.list_file, args.shards) if x is not None]
    if len(given) != 1:
        raise ConfigError("ingest needs exactly one of DIR, --list FILE or --shards SPEC")
    if args.dir is not None and not args.dir.is_dir():
        raise ConfigError(f"{args.dir} is not a folder; pass a folder of images, --list FILE or --shards SPEC")
    if args.list_file is not None and not args.list_file.is_file():
        raise ConfigError(f"--list {args.list_file} does not exist")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be 0 (decode in-process) or more, got {args.workers}")
    if args.ray_address is not None:
        from cir_milvus._optional import require

        require("ray", purpose="ingest --ray-address")
    # stored sources are absolute, so contact sheets and re-runs find the files from any working directory
    spec = str(args.dir.resolve()) if args.dir is not None else str(given[0])
    root = args.root.resolve() if args.root is not None else None
    if args.list_file is not None and root is None:
        root = args.list_file.resolve().parent
    return spec, root


def _exists(args: argparse.Namespace) -> bool:
    """Whether the collection exists; a Lite file that is not there yet is not created to find out."""
    if is_lite(args.uri) and not Path(args.uri).expanduser().exists():
        return False
    import cir_milvus

    return cir_milvus.connect(args.uri, token=args.token, timeout=args.timeout).has_collection(args.collection)


def _check_existing(args: argparse.Namespace, composer: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """The stored recipe of the existing collection, after refusing options that would change it."""
    from cir_milvus.preprocess import recorded_decode

    if args.random_weights:
        raise ConfigError(f"--random-weights is for creating a collection; {args.collection!r} exists already")
    stored: dict[str, Any] = read_collection_info(args.uri, args.collection, args.token, args.timeout)["recipe"]
    recorded = recorded_decode(stored["encoder"].get("preprocess"))
    if args.decode is not None and args.decode != recorded:
        raise ConfigError(
            f"collection {args.collection!r} decodes its images with --decode {recorded} (recorded in its recipe, "
            f"so queries and new images match the gallery); drop --decode {args.decode}, or ingest into a new "
            "--collection to use it")
    if (composer is not None or params) and not same_default(stored["composer"], composer, params):
        raise ConfigError(
            f"collection {args.collection!r} exists with default composer {describe_composer(stored['composer'])}"
            "; ingest does not change it. Change it with `cir-milvus set-default --composer ... --alpha ...`, "
            "or drop --composer/--alpha/--head from this ingest")
    return stored


def _create(args: argparse.Namespace, model: str, pretrained: str | None, composer: str | None,
            params: dict[str, Any]) -> Any:
    """Build the encoder, then create the collection (or open it, when another process has just created it)."""
    import cir_milvus
    from cir_milvus.encoders.base import create_encoder

    if pretrained is None and not model.startswith(("bundle:", "hf-hub:", "local-dir:")) and model != "fake":
        print(f"WARNING: creating {args.collection!r} with RANDOM weights for {model} (--random-weights): the "
              "vectors are untrained and search results meaningless", file=sys.stderr)
    kw = {k: v for k, v in (("text_weights", args.text_weights), ("precision", args.precision),
                            ("decode", args.decode)) if v is not None}
    encoder = create_encoder(model, pretrained, device=args.device, **kw)
    db = cir_milvus.connect(args.uri, token=args.token, timeout=args.timeout)
    return db.create_collection(args.collection, encoder=encoder,
                                composer=cir_milvus.ComposerSpec(composer or "slerp", params=params), if_exists="open",
                                item_text=False if args.text_column is None else "full_text" if args.full_text else True)


def cmd_ingest(args: argparse.Namespace) -> int:
    spec, root = _source_spec(args)
    composer, params = composer_request(args)
    check_uri(args.uri)
    exists = _exists(args)
    if exists:
        stored = _check_existing(args, composer, params)
        check_backend(stored["encoder"], args.model, args.collection)
    else:
        model, pretrained = creation_model(args)
        check_backend({}, model, args.collection)
        check_precision(args.precision, model)
    from cir_milvus.ingest import open_source

    source = open_source(spec, allow_urls=args.allow_urls, root=root, text_column=args.text_column)  # checked here
    try:
        out(args, f"{len(source)} images in {args.dir or args.list_file or args.shards}")
    except TypeError:
        out(args, f"ingesting {args.dir or args.list_file or args.shards}")
    col = open_collection(args, stored["encoder"]) if exists else _create(args, model, pretrained, composer, params)
    try:
        return _run(args, col, source)
    finally:
        col.close()


def _run(args: argparse.Namespace, col: Any, source: Any) -> int:
    from cir_milvus.ingest import IngestOptions, RayOptions, ingest

    try:
        report = ingest(col, source, batch_size=args.batch_size, workers=args.workers, skip_report=args.skip_report,
                        progress=not args.no_progress and args.verbosity >= 0 and not args.json,
                        options=IngestOptions(allow_urls=args.allow_urls, text_column=args.text_column),
                        ray=RayOptions(address=args.ray_address) if args.ray_address else None)
    except KeyboardInterrupt:
        try:
            held = f"now holds {len(col)} images"
        except CIRError:
            held = "keeps every batch stored before the interruption"
        print(f"interrupted: collection {args.collection!r} at {redact(args.uri)} {held}; run the same "
              "command again to resume (stored images are skipped, not re-encoded)", file=sys.stderr)
        return 130
    summary = rounded(report.to_dict())
    if args.json:
        print(json.dumps({**summary, "collection": args.collection, "count": len(col)}, indent=2, default=str))
    elif args.verbosity < 1:  # with -v the ingest logs its skips and summary itself: once is enough
        out(args, report.summary())
        for sk in report.skipped[:20]:
            out(args, f"  skipped {sk.source}: {sk.reason}")
        if len(report.skipped) > 20:
            out(args, f"  ... and {len(report.skipped) - 20} more"
                + (f" (see {args.skip_report})" if args.skip_report else ""))
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2))
    out(args, f"collection {args.collection!r} at {redact(args.uri)} holds {len(col)} images")
    return 0
