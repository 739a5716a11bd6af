"""``cir-milvus``: a thin command line over the library.

Subcommands: ``demo``, ``ingest DIR``, ``search``, ``info``, ``eval``, ``serve``, ``export``, ``parity``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cir_milvus.errors import CIRError


def _add_collection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uri", default="./cir.db", help="Milvus Lite file (default ./cir.db) or http(s)://host:19530")
    p.add_argument("--collection", default="images", help="collection name (default: images)")
    p.add_argument("--token", default=None, help="user:password or API key for a Milvus server")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="open_clip name, hf-hub:org/repo, bundle:DIR or cir-demo-tiny (default when creating: "
                        "cir-demo-tiny)")
    p.add_argument("--pretrained", default=None, help="open_clip tag, checkpoint file, or cir-demo")
    p.add_argument("--text-weights", default=None,
                   help="tuned text tower (RTD checkpoint or `cir_milvus.train rtd` output) swapped in for queries; "
                        "the stored gallery stays valid")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cir-milvus", description="Zero-shot composed image retrieval on Milvus.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="offline end-to-end demo on the synthetic world (Milvus Lite)")
    p.add_argument("--workdir", default="cir-demo", help="output folder (default ./cir-demo)")
    p.add_argument("--queries", type=int, default=400, help="test queries (default 400)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ingest", help="add images (a folder, --list or --shards) to a collection (created if missing)",
                       description="Parallel decode, batched encoding, background upserts. Re-running the same "
                                   "command resumes: ids already stored are neither decoded nor encoded again.")
    p.add_argument("dir", type=Path, nargs="?", default=None, help="a folder of images (searched recursively)")
    p.add_argument("--list", type=Path, default=None, dest="list_file", metavar="FILE",
                   help="a .csv/.tsv/.jsonl/.parquet list with a path column and optional id and metadata columns")
    p.add_argument("--shards", default=None, metavar="SPEC",
                   help="WebDataset tar shards as img2dataset writes them: 'data/{00000..00009}.tar' or a glob")
    p.add_argument("--root", type=Path, default=None, help="folder that relative paths of --list are relative to")
    _add_collection_args(p)
    _add_model_args(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None,
                   help="decode processes (default: CPU count - 1, at most 8; 0 = decode in-process)")
    p.add_argument("--composer", default="slerp", help="default composer stored in the recipe")
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--skip-report", type=Path, default=None,
                   help="write skipped inputs and reasons here as JSON Lines")
    p.add_argument("--summary-json", type=Path, default=None, help="write the run's counts here as JSON")
    p.add_argument("--allow-urls", action="store_true", help="fetch http(s):// images named by --list")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray-address", default=None,
                   help="run on Ray Data: 'auto' (running cluster), 'ray://head:10001' or 'local' (needs [ray])")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="composed search: reference image (or --ref-id) + text")
    _add_collection_args(p)
    p.add_argument("--image", type=Path, default=None)
    p.add_argument("--ref-id", default=None, help="id of a stored image to use as the reference")
    p.add_argument("--text", required=True)
    p.add_argument("--text-weights", default=None,
                   help="tuned text tower (RTD) for this query; the collection's gallery stays valid")
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--composer", default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--filter", default=None, help='Milvus filter template, e.g. \'metadata["brand"] == {b}\'')
    p.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                   help="filter template value (JSON, or a bare string), repeatable")
    p.add_argument("--grid", type=Path, default=None, help="write a contact sheet PNG of the reference and hits")
    p.add_argument("--json", action="store_true", help="print hits as JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="recipe, count and index of a collection")
    _add_collection_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="score a composer on CIRR / FashionIQ / CIRCO / the synthetic world")
    p.add_argument("dataset", choices=["cirr", "fashioniq", "circo", "synthetic"])
    p.add_argument("--root", type=Path, required=True, help="data set root folder")
    p.add_argument("--split", default="val")
    _add_collection_args(p)
    _add_model_args(p)
    p.add_argument("--composer", default="slerp")
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--head", default=None, help="projection head file / hf-hub id for pic2word|searle|lincir")
    p.add_argument("--template", default=None, help="prompt template override for pseudo-token composers")
    p.add_argument("--sweep", default=None, help="comma-separated alphas to sweep (reports the best)")
    p.add_argument("--write-default", action="store_true", help="store the best swept alpha in the recipe")
    p.add_argument("--output", type=Path, default=None, help="write results JSON here")
    p.add_argument("--submission", type=Path, default=None, help="write test-server submission file(s) here")
    p.set_defaults(func=cmd_eval)

    from cir_milvus.serve.cli import add_serve_parser

    add_serve_parser(sub)

    try:
        from cir_milvus_export.cli import add_export_parsers
    except ImportError:
        pass
    else:
        add_export_parsers(sub)
    return parser


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise CIRError(f"--param needs NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    from cir_milvus.demo import run_demo

    res = run_demo(args.workdir, n_queries=args.queries, device=args.device)
    return 0 if res.get("slerp_margin_pass") else 1


def _open_or_create(args: argparse.Namespace, create: bool) -> Any:
    from cir_milvus.storage.client import connect, disconnect
    from cir_milvus.storage.collection import CIRCollection

    client = connect(args.uri, token=args.token)
    exists = client.has_collection(args.collection)
    disconnect(client, args.uri)
    model = getattr(args, "model", None)
    pretrained = getattr(args, "pretrained", None)
    if exists or not create:
        return CIRCollection.open(args.uri, args.collection, model=model, pretrained=pretrained, token=args.token,
                                  device=args.device, text_weights=getattr(args, "text_weights", None))
    if model is None:
        model, pretrained = "cir-demo-tiny", pretrained or "cir-demo"
    text_weights = getattr(args, "text_weights", None)
    encoder = None
    if text_weights:
        from cir_milvus.encoders.base import create_encoder

        encoder = create_encoder(model, pretrained, device=args.device, text_weights=text_weights)
    return CIRCollection.create(args.uri, args.collection, model=None if encoder else model,
                                pretrained=None if encoder else pretrained, encoder=encoder, token=args.token,
                                device=args.device, composer=getattr(args, "composer", None) or "slerp",
                                alpha=getattr(args, "alpha", None))


def cmd_ingest(args: argparse.Namespace) -> int:
    from cir_milvus.ingest import ingest, open_source

    given = [x for x in (args.dir, args.list_file, args.shards) if x is not None]
    if len(given) != 1:
        raise CIRError("ingest needs exactly one of DIR, --list FILE or --shards SPEC")
    if args.dir is not None and not args.dir.is_dir():
        raise CIRError(f"{args.dir} is not a folder")
    source = open_source(str(given[0]), allow_urls=args.allow_urls, root=args.root)
    try:
        print(f"{len(source)} images in {given[0]}")
    except TypeError:
        print(f"ingesting {given[0]}")
    col = _open_or_create(args, create=True)
    try:
        report = ingest(col, source, batch_size=args.batch_size, workers=args.workers, skip_report=args.skip_report,
                        progress=not args.no_progress, allow_urls=args.allow_urls, ray_address=args.ray_address)
        print(report.summary())
        for sk in report.skipped[:20]:
            print(f"  skipped {sk.source}: {sk.reason}")
        if len(report.skipped) > 20:
            print(f"  ... and {len(report.skipped) - 20} more" + (f" (see {args.skip_report})" if args.skip_report
                                                                  else ""))
        if args.summary_json:
            args.summary_json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"collection {args.collection!r} at {args.uri} holds {len(col)} images")
    finally:
        col.close()
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if args.image is None and args.ref_id is None:
        raise CIRError("search needs --image PATH or --ref-id ID")
    col = _open_or_create(args, create=False)
    hits = col.search(str(args.image) if args.image else None, args.text, k=args.k, composer=args.composer,
                      alpha=args.alpha, ref_id=args.ref_id, filter=args.filter,
                      filter_params=_parse_params(args.param) or None)
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], indent=2))
    else:
        print(f"{'#':>3}  {'score':>7}  {'id':<34} source")
        for i, h in enumerate(hits, 1):
            print(f"{i:>3}  {h.score:>7.4f}  {h.id:<34} {h.source}")
    if args.grid:
        from PIL import Image

        from cir_milvus.images import load_image
        from cir_milvus.viz import SheetRow, contact_sheet

        ref = load_image(str(args.image)) if args.image else _stored_image(col, args.ref_id)
        thumbs = [(load_image(h.source) if h.source and Path(h.source).is_file() else Image.new("RGB", (8, 8)),
                   f"{h.score:.3f}", None) for h in hits]
        print(f"contact sheet: {contact_sheet([SheetRow(ref, args.text, thumbs)], args.grid)}")
    col.close()
    return 0


def _stored_image(col: Any, ref_id: str) -> Any:
    from PIL import Image

    from cir_milvus.images import load_image

    with_source = col.get([ref_id], output_fields=["source"])
    src = with_source[0].get("source") if with_source else ""
    return load_image(src) if src and Path(src).is_file() else Image.new("RGB", (8, 8))


def cmd_info(args: argparse.Namespace) -> int:
    col = _open_or_create(args, create=False)
    print(json.dumps(col.info(), indent=2, default=str))
    col.close()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cir_milvus.eval.cli import run_eval_command

    return run_eval_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except CIRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
