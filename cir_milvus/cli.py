"""``cir-milvus``: a thin command line over the library.

Subcommands: ``demo``, ``ingest``, ``search``, ``info``, ``set-default``, ``eval``, ``serve``, ``export``, ``parity``
(the last two when the export extra is installed). Every failure we can explain ends as one ``error: ...`` line on
stderr with exit code 2 (130 after Ctrl-C), never a traceback.

Start-up stays light: this module imports neither torch nor pymilvus; ``info`` reads the collection's recipe without
building a model, and ``search``/``ingest`` with ``--model bundle:DIR`` (or a collection whose recipe names a
bundle) run on onnxruntime alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cir_milvus.errors import BackendUnavailableError, CIRError, ConfigError
from cir_milvus.preprocess import DECODE_MODES, recorded_decode

__all__ = ["DEMO_HEADS", "build_parser", "main", "read_collection_info", "resolve_head"]

log = logging.getLogger(__name__)

DEMO_MODEL = "cir-demo-tiny"
DEMO_WEIGHTS = "cir-demo"
DEMO_HEADS: dict[str, str] = {"demo-lincir": "lincir", "demo-pic2word": "pic2word", "demo-searle": "searle"}
"""Short ``--head`` names of the projection heads shipped for the demo model (name → composer)."""
PSEUDO_COMPOSERS = ("pic2word", "searle", "lincir", "combined")
ENV_URI, ENV_TOKEN = "MILVUS_URI", "MILVUS_TOKEN"


# -- small helpers -------------------------------------------------------------------------------------------------


def _redact(uri: str) -> str:
    from cir_milvus.storage.client import redact_uri

    return redact_uri(uri)


def _round(x: Any, digits: int = 6) -> Any:
    """JSON-friendly copy with floats rounded to ``digits`` significant digits (``56.00000000000001`` → ``56.0``)."""
    if isinstance(x, float):
        if not math.isfinite(x) or x == 0.0:
            return x
        return round(x, max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))
    if isinstance(x, dict):
        return {k: _round(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v, digits) for v in x]
    return x


def _out(args: argparse.Namespace, text: str) -> None:
    """A progress / summary line (suppressed by ``-q``); results are printed unconditionally."""
    if getattr(args, "verbosity", 0) >= 0:
        print(text)


def resolve_head(head: str | None, composer: str | None) -> tuple[Any, str | None]:
    """``--head`` → ``(head source, composer)``.

    Accepts the short names of the shipped demo heads (``demo-lincir``, ``demo-pic2word``, ``demo-searle``; they
    also pick the composer when ``--composer`` is not given), a local file or folder, an ``hf-hub:org/repo/file``
    id, or the name of a head inside the ONNX bundle that serves the collection (resolved once the encoder is
    known, see :func:`_bundle_head`).

    Raises:
        ConfigError: a demo head name with a different pseudo-token composer, or a head for a composer that takes
            none.
    """
    if head is None:
        return None, composer
    if head in DEMO_HEADS:
        kind = DEMO_HEADS[head]
        if composer not in (None, kind, "combined"):
            raise ConfigError(f"--head {head} is a {kind} head; use it with --composer {kind} (or combined), "
                              f"not {composer}")
        from cir_milvus.models.demo import DATA_DIR

        path = DATA_DIR / f"{DEMO_MODEL}.{kind}.safetensors"
        if not path.is_file():
            raise ConfigError(f"the demo head {head} is not installed at {path}; reinstall cir_milvus")
        return str(path), composer or kind
    if composer is not None and composer not in PSEUDO_COMPOSERS:
        raise ConfigError(f"--head is for the pseudo-token composers ({', '.join(PSEUDO_COMPOSERS)}); "
                          f"--composer {composer} takes no head")
    return head, composer


def _bundle_head(encoder: Any, head: Any) -> Any:
    """A head name that the serving ONNX bundle carries → that bundle head (no torch needed)."""
    heads = getattr(encoder, "heads", None)
    if isinstance(head, str) and isinstance(heads, dict) and head in heads:
        return heads[head]
    if isinstance(head, str) and isinstance(heads, dict) and not head.startswith("hf-hub:") \
            and not Path(head).exists():
        names = ", ".join(sorted(heads)) or "none"
        raise ConfigError(f"--head {head!r} is neither a file nor a head of the bundle (bundle heads: {names})")
    return head


def _resolve_bundle_head(encoder: Any, composer: str | None, params: dict[str, Any]) -> None:
    if "head" in params:
        params["head"] = _bundle_head(encoder, params["head"])
        kind = getattr(params["head"], "kind", None)
        if composer == "combined" and "base" not in params and kind:
            params["base"] = kind


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param needs NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# -- reading a collection without a model ------------------------------------------------------------------------


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

    with VectorStore.open(uri, name, token=token, timeout=timeout) as store:
        info = store.info()
    if info.get("recipe") is None:
        raise ConfigError(f"collection {name!r} at {info['uri']} was not created by cir_milvus (it has no recipe); "
                          "attach it from Python with VectorStore.open(..., schema=..., recipe=...)")
    return info


def _collection_exists(uri: str, name: str, token: str | None, timeout: float | None = None) -> bool:
    from cir_milvus.storage.client import connect, disconnect, milvus_errors

    client = connect(uri, token=token, timeout=timeout)
    try:
        with milvus_errors(f"check collection {name!r}"):
            return bool(client.has_collection(name))
    finally:
        disconnect(client, uri)


def _random_weights(encoder_recipe: dict[str, Any]) -> bool:
    return bool(encoder_recipe.get("random_weights")) or (
        encoder_recipe.get("backend") == "torch" and encoder_recipe.get("pretrained") is None)


def _describe_weights(e: dict[str, Any]) -> str:
    if _random_weights(e):
        return "RANDOM (untrained weights, created with --random-weights: hits are meaningless)"
    sha = e.get("weights_sha256")
    return f"{e.get('pretrained')}" + (f" (sha256 {sha[:12]})" if sha else "")


def _describe_composer(c: dict[str, Any]) -> str:
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
        ("composer", _describe_composer(r["composer"])),
        ("index", f"{idx.get('type')} {json.dumps(idx.get('params', {}))}, metric {r.get('metric')}"
                  + (f", {state}" if state else "")),
        ("created by", f"cir_milvus {r.get('package_version') or '?'}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# -- parser ----------------------------------------------------------------------------------------------------------


def _add_collection_args(p: argparse.ArgumentParser, collection_help: str = "collection name (default: images)",
                         collection_default: str = "images", device: bool = True) -> None:
    p.add_argument("--uri", default=None,
                   help=f"Milvus Lite file or http(s)://host:19530 (default: ${ENV_URI}, else ./cir.db)")
    p.add_argument("--collection", default=collection_default, help=collection_help)
    p.add_argument("--token", default=None,
                   help=f"user:password or API key for a Milvus server (default: ${ENV_TOKEN})")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for a Milvus server to accept the connection (default 10)")
    if device:
        p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def _add_model_args(p: argparse.ArgumentParser, creating: bool = True) -> None:
    when = ("needed to create a collection; an existing collection rebuilds its model from its recipe"
            if creating else "default: the model recorded in the collection's recipe")
    p.add_argument("--model", default=None,
                   help=f"open_clip name (ViT-B-32), hf-hub:org/repo, bundle:DIR (ONNX, no torch) or {DEMO_MODEL} "
                        f"(the shipped demo model); {when}")
    p.add_argument("--pretrained", default=None,
                   help=f"weights for an open_clip --model: a tag (openai, laion2b_s34b_b79k...), a local "
                        f"checkpoint file, or {DEMO_WEIGHTS} (default for --model {DEMO_MODEL})")
    if creating:
        p.add_argument("--random-weights", action="store_true",
                       help="allow an open_clip --model without --pretrained (random, untrained weights; recorded "
                            "in the recipe and shown by `info`); for tests only")
    p.add_argument("--text-weights", default=None,
                   help="tuned text tower (RTD checkpoint or `cir_milvus.train rtd` output) swapped in for queries; "
                        "the stored gallery stays valid")
    p.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16"),
                   help="torch encoder arithmetic (default fp16 on CUDA, fp32 on CPU); bf16 runs on the AMX / "
                        "AVX-512 BF16 units of recent x86 CPUs (measured change of the embeddings: README, "
                        "'Ingest speed'); ONNX bundles fix theirs at export")
    if creating:
        p.add_argument("--decode", default=None, choices=DECODE_MODES,
                       help="how much full-resolution JPEG work decoding may skip, recorded in the recipe so "
                            "queries decode like the gallery: exact (the reference transform), reduce (Pillow "
                            "reducing_gap; the default where it applies: clip/targetpad preprocessing with "
                            "shortest-side resize, else exact), draft (JPEG DCT-domain scaling); an existing "
                            "collection keeps its recorded mode; measured speed and embedding change: README, "
                            "'Ingest speed'")


def _add_composer_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--composer", default=None,
                   help=f"{what}: slerp, pic2word, searle, lincir, combined (slerp + a pseudo-token head), "
                        "image (image only), text (text only), sum")
    p.add_argument("--alpha", type=float, default=None,
                   help="weight of the text in slerp / combined, 0..1 (1 = text only; default: the recipe's)")
    p.add_argument("--head", default=None,
                   help="projection head for pic2word/searle/lincir/combined: a file, hf-hub:org/repo/file, the "
                        f"name of a head in the serving ONNX bundle, or {', '.join(DEMO_HEADS)} (the demo model's)")
    p.add_argument("--template", default=None,
                   help="prompt template of a pseudo-token composer, with the placeholder and {} for the text")
    p.add_argument("--base", default=None, choices=("pic2word", "searle", "lincir"),
                   help="the pseudo-token method inside --composer combined (default: the kind of a demo or "
                        "bundle head)")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from cir_milvus import __version__

        extras = []
        from cir_milvus._optional import available

        for mod in ("torch", "open_clip", "onnxruntime", "pymilvus", "milvus_lite"):
            if available(mod):
                extras.append(mod)
        print(f"cir-milvus {__version__} (Python {sys.version.split()[0]}; installed: {', '.join(extras)})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``cir-milvus`` argument parser (every flag has help text)."""
    parser = argparse.ArgumentParser(
        prog="cir-milvus", description="Zero-shot composed image retrieval on Milvus.",
        epilog=f"Environment: {ENV_URI} and {ENV_TOKEN} are used when --uri / --token are not given.")
    parser.add_argument("--version", action=_VersionAction, help="print the version and installed backends")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="count", default=0,
                      help="log more: -v our progress messages, -vv debug including third-party libraries")
    loud.add_argument("-q", "--quiet", action="store_true", help="print results and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -v / -q also after the subcommand (`cir-milvus info -v`); SUPPRESS keeps the top-level values otherwise
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="log more: -v our progress messages, -vv debug including third-party libraries")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="print results and errors only")
    _orig_add_parser = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return _orig_add_parser(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("demo", help="offline end-to-end demo on the synthetic world (Milvus Lite)",
                       description="Render the synthetic world, ingest it with the shipped demo model, tune and score "
                                   "every composer, write a contact sheet and a recall-against-alpha plot.")
    p.add_argument("--workdir", default="cir-demo", help="output folder (default ./cir-demo)")
    p.add_argument("--queries", type=int, default=400, help="test queries (default 400)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.set_defaults(func=cmd_demo)

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
    _add_collection_args(p)
    _add_model_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder batch (default 64)")
    p.add_argument("--workers", type=int, default=None,
                   help="decode processes (default: one per CPU, at most 32, at low priority; 0 = decode in-process)")
    _add_composer_args(p, "default composer stored in the recipe of a NEW collection (change an existing one "
                          "with `cir-milvus set-default`)")
    p.add_argument("--skip-report", type=Path, default=None,
                   help="write skipped inputs and reasons here as JSON Lines")
    p.add_argument("--summary-json", type=Path, default=None, help="write the run's counts here as JSON")
    p.add_argument("--allow-urls", action="store_true", help="fetch http(s):// images named by --list")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray-address", default=None,
                   help="run on Ray Data: 'auto' (running cluster), 'ray://head:10001' or 'local' (needs [ray])")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="composed search: reference image (or --ref-id) + text",
                       description="Compose a query from a reference image (a file, or a stored id) and a "
                                   "modification text, and print the top hits. --composer text searches by text "
                                   "alone; --composer image by the image alone.")
    _add_collection_args(p)
    p.add_argument("--image", type=Path, default=None, help="reference image file")
    p.add_argument("--ref-id", default=None, help="id of a stored image to use as the reference (instead of --image)")
    p.add_argument("--text", default=None, help="modification text, e.g. 'make it red' (not with --composer image)")
    _add_model_args(p, creating=False)
    p.add_argument("-k", "--k", type=int, default=10, help="number of hits (default 10)")
    _add_composer_args(p, "composer for this query (default: the collection's recipe)")
    p.add_argument("--filter", default=None, help='Milvus filter template, e.g. \'metadata["brand"] == {b}\'')
    p.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                   help="filter template value (JSON, or a bare string), repeatable")
    p.add_argument("--grid", type=Path, default=None, help="write a contact sheet PNG of the reference and hits")
    p.add_argument("--image-root", type=Path, default=None,
                   help="folder to find hit images in for --grid when their stored paths no longer resolve")
    p.add_argument("--json", action="store_true", help="print hits as JSON (scores rounded to 6 decimals)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="recipe, count and index of a collection (reads no model)")
    _add_collection_args(p, device=False)
    p.add_argument("--json", action="store_true", help="print everything as JSON instead of a table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("set-default", help="change the default composer / alpha / head stored in a collection",
                       description="Only the query side changes: the stored image vectors stay valid.")
    _add_collection_args(p)
    _add_model_args(p, creating=False)
    _add_composer_args(p, "the new default composer (required)")
    p.set_defaults(func=cmd_set_default)

    from cir_milvus.eval.cli import add_eval_parser

    add_eval_parser(sub, _add_collection_args, _add_model_args)

    from cir_milvus.serve.cli import add_serve_parser

    add_serve_parser(sub)

    try:
        from cir_milvus_export.cli import add_export_parsers
    except ImportError:
        pass
    else:
        add_export_parsers(sub)
    return parser


# -- model choice ------------------------------------------------------------------------------------------------


def creation_model(args: argparse.Namespace) -> tuple[str, str | None]:
    """``(model, pretrained)`` for a NEW collection; refuses implicit and random weights.

    Raises:
        ConfigError: no ``--model``; an open_clip model without ``--pretrained`` (unless ``--random-weights``);
            ``--random-weights`` together with ``--pretrained``.
    """
    model, pretrained = args.model, args.pretrained
    random_ok = bool(getattr(args, "random_weights", False))
    if model is None:
        raise ConfigError(
            f"creating collection {args.collection!r} needs a model: --model {DEMO_MODEL} (the shipped demo model), "
            "--model ViT-B-32 --pretrained openai (an open_clip name and weights tag or checkpoint file), "
            "--model hf-hub:org/repo, or --model bundle:DIR (an exported ONNX bundle)")
    if random_ok and pretrained is not None:
        raise ConfigError("--random-weights and --pretrained contradict each other; pass one")
    if model == DEMO_MODEL:
        return model, pretrained if pretrained is not None or random_ok else DEMO_WEIGHTS
    if model.startswith(("bundle:", "hf-hub:", "local-dir:")) or model == "fake":
        if pretrained is not None and not model.startswith("local-dir:"):
            raise ConfigError(f"--pretrained is for open_clip model names; {model} carries its own weights")
        return model, pretrained
    if pretrained is None and not random_ok:
        raise ConfigError(
            f"--model {model} needs --pretrained: an open_clip tag (e.g. openai, laion2b_s34b_b79k) or a local "
            "checkpoint file; pass --random-weights to build a collection of untrained vectors on purpose")
    return model, pretrained


def _uri_token(args: argparse.Namespace) -> None:
    if args.uri is None:
        args.uri = os.environ.get(ENV_URI) or "./cir.db"
    env_uri = os.environ.get(ENV_URI, "")
    if env_uri and "://" not in env_uri and "pymilvus.settings" not in sys.modules:
        # pymilvus reads $MILVUS_URI at import as its default *server* address and refuses a Lite path later:
        # import it with the variable hidden
        os.environ.pop(ENV_URI)
        try:
            import pymilvus.settings  # noqa: F401
        finally:
            os.environ[ENV_URI] = env_uri
    if args.token is None:
        args.token = os.environ.get(ENV_TOKEN) or None


def _check_backend(encoder_recipe: dict[str, Any], model: str | None, name: str) -> None:
    """Refuse early, with the fix, when the recipe's backend cannot be built here (torch missing)."""
    from cir_milvus._optional import available

    if model is not None:
        if not model.startswith("bundle:") and model != "fake" and not (available("torch") and
                                                                       available("open_clip")):
            raise BackendUnavailableError(
                f"--model {model} needs torch and open_clip, which are not installed; pass --model bundle:DIR (an "
                "ONNX bundle exported with `cir-milvus export`) or pip install 'cir_milvus[torch]'")
        return
    if encoder_recipe.get("backend", "torch") == "torch" and not (available("torch") and available("open_clip")):
        m = encoder_recipe.get("model")
        raise BackendUnavailableError(
            f"collection {name!r} was built with the torch model {m} / {encoder_recipe.get('pretrained')}, and torch "
            f"is not installed here; serve it from an ONNX bundle of the same weights with --model bundle:DIR "
            f"(made by `cir-milvus export --model {m} --pretrained ... --out DIR` where torch is installed), "
            "or pip install 'cir_milvus[torch]'")


def _check_precision(precision: str | None, model: str | None) -> None:
    if precision is not None and model is not None and model.startswith("bundle:"):
        raise ConfigError(f"--precision {precision} is for torch encoders; an ONNX bundle fixes its precision at "
                          "export (cir-milvus export --precision fp32|int8): drop --precision")


def _open(args: argparse.Namespace, encoder_recipe: dict[str, Any]) -> Any:
    from cir_milvus.collection import CIRCollection

    _check_backend(encoder_recipe, args.model, args.collection)
    _check_precision(args.precision, args.model or ("bundle:" if encoder_recipe.get("backend") == "onnx" else None))
    pretrained = DEMO_WEIGHTS if args.model == DEMO_MODEL and args.pretrained is None else args.pretrained
    return CIRCollection.open(args.uri, args.collection, model=args.model, pretrained=pretrained,
                              token=args.token, device=args.device, precision=args.precision,
                              text_weights=args.text_weights, timeout=args.timeout)


# -- commands ----------------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from cir_milvus.demo import run_demo

    res = run_demo(args.workdir, n_queries=args.queries, device=args.device, progress=args.verbosity >= 0)
    return 0 if res.get("slerp_margin_pass") else 1


def _composer_request(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """``--composer/--alpha/--head/--template`` → ``(composer, params)`` (heads resolved, demo names expanded)."""
    head, composer = resolve_head(args.head, args.composer)
    if composer in PSEUDO_COMPOSERS and composer != "combined" and args.alpha is not None:
        raise ConfigError(f"--alpha weights the text in slerp/combined; --composer {composer} takes none")
    base = args.base
    if composer == "combined" and base is None and args.head in DEMO_HEADS:
        base = DEMO_HEADS[args.head]
    if base is not None and composer != "combined":
        raise ConfigError(f"--base is the pseudo-token method inside --composer combined, not {composer}")
    params = {k: v for k, v in (("alpha", args.alpha), ("head", head), ("template", args.template),
                                ("base", base)) if v is not None}
    return composer, params


def _same_default(stored: dict[str, Any], composer: str | None, params: dict[str, Any]) -> bool:
    if composer is not None and composer != stored.get("name"):
        return False
    have = stored.get("params") or {}
    for k, v in params.items():
        if k == "head":
            h = have.get("head")
            src = h.get("source") if isinstance(h, dict) else h
            if src is None or Path(str(src)).name != Path(str(v)).name:
                return False
        elif have.get(k) != v:
            return False
    return True


def cmd_ingest(args: argparse.Namespace) -> int:
    from cir_milvus.ingest import ingest, open_source

    given = [x for x in (args.dir, args.list_file, args.shards) if x is not None]
    if len(given) != 1:
        raise ConfigError("ingest needs exactly one of DIR, --list FILE or --shards SPEC")
    if args.dir is not None and not args.dir.is_dir():
        raise ConfigError(f"{args.dir} is not a folder; pass a folder of images, --list FILE or --shards SPEC")
    if args.list_file is not None and not args.list_file.is_file():
        raise ConfigError(f"--list {args.list_file} does not exist")
    composer, params = _composer_request(args)
    # stored sources are absolute, so contact sheets and re-runs find the files from any working directory
    spec: Any = str(args.dir.resolve()) if args.dir is not None else str(given[0])
    root = args.root.resolve() if args.root is not None else None
    if args.list_file is not None and root is None:
        root = args.list_file.resolve().parent
    exists = _collection_exists(args.uri, args.collection, args.token, args.timeout)
    if exists:
        if args.random_weights:
            raise ConfigError(f"--random-weights is for creating a collection; {args.collection!r} exists already")
        stored = read_collection_info(args.uri, args.collection, args.token, args.timeout)["recipe"]
        recorded = recorded_decode(stored["encoder"].get("preprocess"))
        if args.decode is not None and args.decode != recorded:
            raise ConfigError(
                f"collection {args.collection!r} decodes its images with --decode {recorded} (recorded in its recipe, "
                f"so queries and new images match the gallery); drop --decode {args.decode}, or ingest into a new "
                "--collection to use it")
        if (composer is not None or params) and not _same_default(stored["composer"], composer, params):
            raise ConfigError(
                f"collection {args.collection!r} exists with default composer {_describe_composer(stored['composer'])}"
                "; ingest does not change it. Change it with `cir-milvus set-default --composer ... --alpha ...`, "
                "or drop --composer/--alpha/--head from this ingest")
    else:
        model, pretrained = creation_model(args)
    source = open_source(spec, allow_urls=args.allow_urls, root=root)
    try:
        _out(args, f"{len(source)} images in {given[0]}")
    except TypeError:
        _out(args, f"ingesting {given[0]}")
    if exists:
        col = _open(args, stored["encoder"])
    else:
        from cir_milvus.collection import CIRCollection

        if pretrained is None and not model.startswith(("bundle:", "hf-hub:", "local-dir:")) and model != "fake":
            print(f"WARNING: creating {args.collection!r} with RANDOM weights for {model} (--random-weights): the "
                  "vectors are untrained and search results meaningless", file=sys.stderr)
        _check_backend({}, model, args.collection)
        _check_precision(args.precision, model)
        from cir_milvus.encoders.base import create_encoder

        kw = {k: v for k, v in (("text_weights", args.text_weights), ("precision", args.precision),
                                ("decode", args.decode)) if v is not None}
        encoder = create_encoder(model, pretrained, device=args.device, **kw)
        col = CIRCollection.create(args.uri, args.collection, encoder=encoder, token=args.token,
                                   composer=composer or "slerp", composer_params=params,
                                   timeout=args.timeout)
    try:
        try:
            report = ingest(col, source, batch_size=args.batch_size, workers=args.workers,
                            skip_report=args.skip_report, progress=not args.no_progress and args.verbosity >= 0,
                            allow_urls=args.allow_urls, ray_address=args.ray_address)
        except KeyboardInterrupt:
            try:
                held = f"now holds {len(col)} images"
            except CIRError:
                held = "keeps every batch stored before the interruption"
            print(f"interrupted: collection {args.collection!r} at {_redact(args.uri)} {held}; run the same "
                  "command again to resume (stored images are skipped, not re-encoded)", file=sys.stderr)
            return 130
        if args.verbosity < 1:  # with -v the ingest logs its skips and summary itself: once is enough
            _out(args, report.summary())
            for sk in report.skipped[:20]:
                _out(args, f"  skipped {sk.source}: {sk.reason}")
        if len(report.skipped) > 20 and args.verbosity < 1:
            _out(args, f"  ... and {len(report.skipped) - 20} more" + (f" (see {args.skip_report})"
                                                                          if args.skip_report else ""))
        if args.summary_json:
            args.summary_json.write_text(json.dumps(_round(report.to_dict()), indent=2))
        _out(args, f"collection {args.collection!r} at {_redact(args.uri)} holds {len(col)} images")
    finally:
        col.close()
    return 0


def _search_inputs(args: argparse.Namespace) -> None:
    """Every conflicting or missing search input, before any model loads."""
    if args.image is not None and args.ref_id is not None:
        raise ConfigError("pass either --image PATH or --ref-id ID as the reference, not both")
    if args.image is not None and not args.image.is_file():
        raise ConfigError(f"--image {args.image} does not exist (or is not a file)")
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
    if not 1 <= args.k <= 16384:
        raise ConfigError(f"-k must be between 1 and 16384, got {args.k}")
    if args.grid is not None and args.grid.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise ConfigError(f"--grid {args.grid} needs an image file name ending in .png")


def cmd_search(args: argparse.Namespace) -> int:
    _search_inputs(args)
    composer, params = _composer_request(args)
    filter_params = _parse_params(args.param) or None
    info = read_collection_info(args.uri, args.collection, args.token, args.timeout)
    col = _open(args, info["recipe"]["encoder"])
    try:
        _resolve_bundle_head(col.encoder, composer, params)
        hits = col.search(str(args.image) if args.image else None, args.text, k=args.k, composer=composer,
                          ref_id=args.ref_id, filter=args.filter, filter_params=filter_params, **params)
        if args.json:
            print(json.dumps([_round({"id": h.id, "score": h.score, "metadata": h.metadata, "source": h.source})
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
            _out(args, f"contact sheet: {path}")
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


def cmd_info(args: argparse.Namespace) -> int:
    info = read_collection_info(args.uri, args.collection, args.token, args.timeout)
    if args.json:
        print(json.dumps(_round(info), indent=2, default=str))
    else:
        print(format_info(info))
    return 0


def cmd_set_default(args: argparse.Namespace) -> int:
    composer, params = _composer_request(args)
    if composer is None:
        raise ConfigError("set-default needs --composer NAME (with --alpha / --head / --template as it takes)")
    info = read_collection_info(args.uri, args.collection, args.token, args.timeout)
    before = _describe_composer(info["recipe"]["composer"])
    col = _open(args, info["recipe"]["encoder"])
    try:
        _resolve_bundle_head(col.encoder, composer, params)
        col.set_default_composer(composer, **params)
        after = _describe_composer(col.recipe.composer)
    finally:
        col.close()
    _out(args, f"collection {args.collection!r}: default composer {before} -> {after}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cir_milvus.eval.cli import run_eval_command

    return run_eval_command(args)


# -- entry point -------------------------------------------------------------------------------------------------

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return _OBJECT_REPR.sub("the input", text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cir-milvus``; returns the exit code (0 ok, 1 a demo below its target, 2 an error, 130 Ctrl-C)."""
    from cir_milvus._logging import cli_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("-q and -v contradict each other; pass one")
    args.verbosity = -1 if args.quiet else args.verbose
    if hasattr(args, "uri") and hasattr(args, "token"):
        _uri_token(args)
    with cli_logging(args.verbosity):
        try:
            return int(args.func(args) or 0)
        except CIRError as e:
            msg = _one_line(e)
            if getattr(args, "uri", None):
                msg = msg.replace(args.uri, _redact(args.uri))
            print(f"error: {msg}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `cir-milvus search ... | head`
            return 0


if __name__ == "__main__":
    sys.exit(main())
