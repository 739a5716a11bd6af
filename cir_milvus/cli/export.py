"""``cir-milvus export`` and ``cir-milvus parity``: the command line over ``cir_milvus_export`` (``export_bundle``,
``check_parity``); both need the ``export`` extra (onnx, onnxscript, torch), and a missing piece is named in one line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cir_milvus.cli.options import DEMO_HEADS, HEAD_SYNTAX, add_json, check_file, parse_head
from cir_milvus.errors import ConfigError

__all__ = ["add_parser", "parse_head_args", "run_export", "run_parity"]

PRECISIONS = ("fp32", "fp16", "int8")


def add_parser(subparsers: Any) -> None:
    """Add the ``export`` and ``parity`` subcommands to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "export", help="export an open_clip model (+ heads) to an ONNX bundle served without torch",
        description="Export image/text towers, the pseudo-token text graph, projection heads and fused query graphs "
                    "to ONNX, with tokenizer.json, preprocess.json, manifest.json and a parity report.",
    )
    p.add_argument("--model", required=True, help="open_clip model name (e.g. ViT-B-32) or cir-demo-tiny")
    p.add_argument("--pretrained", default=None,
                   help="open_clip tag, local checkpoint file, or cir-demo (default for --model cir-demo-tiny)")
    p.add_argument("--random-weights", action="store_true",
                   help="export untrained weights on purpose (an open_clip --model without --pretrained)")
    p.add_argument("--text-weights", default=None,
                   help="tuned text tower (RTD checkpoint or `cir_milvus.train rtd` output) exported in the text graphs")
    p.add_argument("--head", action="append", default=[], metavar=HEAD_SYNTAX,
                   help="projection head to export, e.g. searle=SEARLE_ViT-B32.pt, mine:lincir=phi.pt or "
                        f"{next(iter(DEMO_HEADS))} (repeatable; KIND is pic2word, searle or lincir)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default), fp16 (weights and compute, float32 I/O) or int8 (dynamic quantisation)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--parity-threshold", type=float, default=0.9999,
                   help="minimum cosine of every fp32 output against torch (default 0.9999)")
    p.add_argument("--preprocess", choices=("clip", "targetpad"), default="clip",
                   help="image preprocessing recorded in the bundle (default clip)")
    p.add_argument("--no-fused", action="store_true", help="skip the fused slerp / fused head graphs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")
    p.add_argument("--out", required=True, help="bundle folder to write")
    add_json(p, "the bundle folder and its parity report")
    p.set_defaults(func=run_export)

    q = subparsers.add_parser(
        "parity", help="compare an ONNX bundle with torch (cosine, max-abs, top-k agreement)",
        description="Run every graph of a bundle with onnxruntime on the seeded parity inputs and compare with the "
                    "torch outputs stored at export time (no torch needed), or recomputed with --torch.",
    )
    q.add_argument("bundle", help="bundle folder")
    q.add_argument("--torch", action="store_true",
                   help="rebuild the torch model from the manifest (model + pretrained) and recompute the reference")
    q.add_argument("--threshold", type=float, default=None,
                   help="exit 1 when the minimum cosine is below this (default 0.9999 for fp32, 0.999 fp16, 0.99 int8)")
    q.add_argument("--json", action="store_true", help="print the full report as JSON")
    q.set_defaults(func=run_parity)


def parse_head_args(specs: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``["searle=a.pt", "mine:lincir=b.pt"]`` → ``{"searle": ("searle", "a.pt"), "mine": ("lincir", "b.pt")}``.

    Uses the one ``--head`` syntax (:func:`cir_milvus.cli.options.parse_head`); a demo head name brings its kind.

    Raises:
        ConfigError: an item without a kind, or a duplicate name.
    """
    heads: dict[str, tuple[str, str]] = {}
    for item in specs:
        spec = parse_head(item)
        if spec.kind is None:
            raise ConfigError(f"--head {item!r}: export needs the head's kind, KIND=PATH (e.g. "
                              f"searle=SEARLE_ViT-B32.pt; {HEAD_SYNTAX})")
        name = spec.name or spec.kind
        if name in heads:
            raise ConfigError(f"--head name {name!r} given twice; name them: --head a:{spec.kind}=... "
                              f"--head b:{spec.kind}=...")
        source = spec.source
        if source in DEMO_HEADS:
            from cir_milvus.models.demo import demo_head_path

            source = str(demo_head_path(spec.kind))
        heads[name] = (spec.kind, source)
    return heads


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``cir-milvus export``."""
    from cir_milvus._optional import require

    head_args = parse_head_args(args.head)
    for _, source in head_args.values():
        if not source.startswith("hf-hub:"):
            check_file(source, "--head")
    if args.pretrained is None and args.model == "cir-demo-tiny" and not args.random_weights:
        args.pretrained = "cir-demo"
    if args.pretrained is None and not args.random_weights and not args.model.startswith(("hf-hub:", "local-dir:")):
        raise ConfigError(f"--model {args.model} needs --pretrained (an open_clip tag such as openai, or a checkpoint "
                          "file); pass --random-weights to export untrained weights on purpose")
    for module in ("torch", "open_clip", "onnx", "onnxruntime"):
        require(module, purpose="cir-milvus export")
    from cir_milvus_export.onnx_export import export_bundle
    from cir_milvus_export.parity import format_report

    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.heads import load_head

    encoder = TorchEncoder(args.model, args.pretrained, device="cpu", precision="fp32", preprocess=args.preprocess,
                           text_weights=args.text_weights)
    heads = {name: load_head(kind, path, embed_dim=encoder.dim, token_dim=encoder.token_width())
             for name, (kind, path) in head_args.items()}
    out = export_bundle(encoder, args.out, heads=heads, precision=args.precision, opset=args.opset,
                        parity_threshold=args.parity_threshold, fused=not args.no_fused, overwrite=args.overwrite)
    parity = json.loads((out / "parity.json").read_text())
    if args.json:
        print(json.dumps({"bundle": str(out), "parity": parity}, indent=2, sort_keys=True))
        return 0
    print(f"bundle written to {out}")
    for key in ("fp32", args.precision) if args.precision != "fp32" else ("fp32",):
        print(format_report(parity[key]))
    return 0


def run_parity(args: argparse.Namespace) -> int:
    """Handler of ``cir-milvus parity``; exit 1 when the bundle is below the threshold."""
    from cir_milvus._optional import require

    if not Path(args.bundle).is_dir():
        raise ConfigError(f"{args.bundle} is not a bundle folder; make one with `cir-milvus export ... --out DIR`")
    require("onnxruntime", purpose="cir-milvus parity")
    from cir_milvus_export.parity import check_parity, format_report

    from cir_milvus.bundle import load_manifest

    manifest = load_manifest(args.bundle)
    encoder = None
    if args.torch:
        from cir_milvus.encoders.torch import TorchEncoder

        src = manifest["source"]
        if src.get("pretrained") is None:
            raise ConfigError(f"the bundle was exported from random weights ({src['model']}, pretrained=None); only "
                              "the stored reference can check it (drop --torch)")
        encoder = TorchEncoder(src["model"], src["pretrained"], device="cpu", precision="fp32",
                               text_weights=src.get("text_weights"))
    report = check_parity(args.bundle, encoder)
    precision = report["precision"]
    threshold = args.threshold if args.threshold is not None else {"fp16": 0.999, "int8": 0.99}.get(precision, 0.9999)
    report["threshold"] = threshold
    report["passed"] = report["min_cosine"] >= threshold
    print(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) if args.json else format_report(report))
    if not report["passed"]:
        print(f"parity FAILED: min cosine {report['min_cosine']:.6f} < {threshold}", file=sys.stderr)
        return 1
    return 0
