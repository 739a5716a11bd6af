"""The options every ``cir-milvus`` command shares, with one meaning each, and the cheap checks run on them.

Connection: ``--uri`` (a Milvus Lite ``.db`` path or ``http(s)://host:port``), ``--token`` (Milvus's credentials),
``--timeout`` (seconds to wait for Milvus to accept the connection; every command). Output: ``--json`` (machine-readable
output; every command that prints results), ``-v``/``-q``. Queries: ``--composer``, ``--alpha``, ``--head``
(:func:`parse_head`: one syntax everywhere), ``--template``, ``--base``, ``-k``.

The cheap checks (:func:`check_uri`, :func:`check_composer`, :func:`check_alpha`, :func:`check_k`,
:func:`check_file`) read no model and open no collection: every command runs them before anything slow.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cir_milvus.errors import ConfigError

__all__ = [
    "DEMO_HEADS",
    "DEMO_MODEL",
    "DEMO_WEIGHTS",
    "ENV_TOKEN",
    "ENV_URI",
    "HeadSpec",
    "add_composer_args",
    "add_connection_args",
    "add_json",
    "add_model_args",
    "check_alpha",
    "check_composer",
    "check_file",
    "check_k",
    "check_uri",
    "head_kinds",
    "is_lite",
    "one_line",
    "out",
    "parse_head",
    "redact",
    "resolve_uri_token",
    "rounded",
    "show",
]

DEMO_MODEL = "cir-demo-tiny"
DEMO_WEIGHTS = "cir-demo"
DEMO_HEADS: dict[str, str] = {"demo-lincir": "lincir", "demo-pic2word": "pic2word", "demo-searle": "searle"}
"""Short ``--head`` names of the projection heads shipped for the demo model (name → kind)."""
ENV_URI, ENV_TOKEN = "MILVUS_URI", "MILVUS_TOKEN"
MAX_K = 16384
"""Milvus's largest ``limit`` (topk) of one search."""


# -- output ----------------------------------------------------------------------------------------------------------


def redact(uri: str) -> str:
    """``http://user:pw@host`` → ``http://***@host`` (a Lite path unchanged)."""
    from cir_milvus.storage.client import redact_uri

    return redact_uri(uri)


def rounded(x: Any, digits: int = 6) -> Any:
    """JSON-friendly copy with floats rounded to ``digits`` significant digits (``56.00000000000001`` → ``56.0``)."""
    if isinstance(x, float):
        if not math.isfinite(x) or x == 0.0:
            return x
        return round(x, max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    return x


def out(args: argparse.Namespace, text: str) -> None:
    """A progress / summary line (suppressed by ``-q`` and ``--json``); results are printed unconditionally."""
    if getattr(args, "verbosity", 0) >= 0 and not getattr(args, "json", False):
        print(text)


def show(args: argparse.Namespace, text: str) -> None:
    """A human-readable result (a table): printed even with ``-q``, replaced by the JSON document with ``--json``."""
    if not getattr(args, "json", False):
        print(text)


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def one_line(e: BaseException) -> str:
    """An exception as one line without object reprs (``<... object at 0x...>`` → ``the input``)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return _OBJECT_REPR.sub("the input", text)


# -- shared flags ----------------------------------------------------------------------------------------------------


def add_connection_args(p: argparse.ArgumentParser, *, collection_default: str | None = "images",
                        collection_help: str = "collection name (default: images)") -> None:
    """``--uri``, ``--collection``, ``--token`` (Milvus's) and ``--timeout`` (the Milvus connect timeout)."""
    p.add_argument("--uri", default=None,
                   help=f"Milvus Lite file or http(s)://host:19530 (default: ${ENV_URI}, else ./cir.db)")
    if collection_default is not None:
        p.add_argument("--collection", default=collection_default, help=collection_help)
    p.add_argument("--token", default=None,
                   help=f"user:password or API key of the Milvus server (default: ${ENV_TOKEN})")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for Milvus to accept the connection (default 10)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def add_json(p: argparse.ArgumentParser, what: str = "results") -> None:
    """``--json``: machine-readable output on stdout (progress lines are left out)."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON (floats rounded to 6 digits)")


def add_model_args(p: argparse.ArgumentParser, creating: bool = True) -> None:
    """``--model``, ``--pretrained``, ``--text-weights``, ``--precision`` (+ ``--random-weights``, ``--decode`` when
    the command may create a collection)."""
    from cir_milvus.preprocess import DECODE_MODES

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
                   help="tuned text tower (RTD checkpoint or `cir-milvus train rtd` output) swapped in for "
                        "queries; the stored gallery stays valid")
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
    add_device(p)


HEAD_SYNTAX = "[NAME:][KIND=]SOURCE"
HEAD_HELP = (f"projection head, {HEAD_SYNTAX}: SOURCE is a file, hf-hub:org/repo/file, the name of a head in the "
             f"serving ONNX bundle, or {', '.join(DEMO_HEADS)} (the demo model's); KIND (pic2word, searle, lincir) "
             "is needed only where it cannot be told from SOURCE or --composer")


def _alpha_list(text: str) -> float | list[float]:
    """``--alpha`` of a search: ``0.8`` or a comma-separated list ``0.6,0.8`` (one search per alpha, fused by
    reciprocal rank)."""
    values = [float(a) for a in text.split(",") if a.strip()]  # argparse turns a ValueError into a usage error
    return values[0] if len(values) == 1 and "," not in text else values


def add_composer_args(p: argparse.ArgumentParser, what: str, *, composer_default: str | None = None,
                      alpha_list: bool = False) -> None:
    """``--composer``, ``--alpha`` (a list where ``alpha_list``), ``--head``, ``--template``, ``--base``."""
    p.add_argument("--composer", default=composer_default,
                   help=f"{what}: slerp, pic2word, searle, lincir, combined (slerp + a pseudo-token head), "
                        "image (image only), text (text only), sum")
    if alpha_list:
        p.add_argument("--alpha", type=_alpha_list, default=None, metavar="A[,A...]",
                       help="weight of the text in slerp / combined, 0..1 (1 = text only; default: the recipe's); "
                            "a list such as 0.6,0.7,0.8 runs one search per alpha and fuses them by reciprocal rank")
    else:
        p.add_argument("--alpha", type=float, default=None,
                       help="weight of the text in slerp / combined, 0..1 (1 = text only; default: the recipe's)")
    p.add_argument("--head", default=None, metavar=HEAD_SYNTAX, help=HEAD_HELP)
    p.add_argument("--template", default=None,
                   help="prompt template of a pseudo-token composer, with the placeholder and {} for the text")
    p.add_argument("--base", default=None, choices=head_kinds(),
                   help="the pseudo-token method inside --composer combined (default: the kind of the head)")


# -- --head: one syntax ----------------------------------------------------------------------------------------------


def head_kinds() -> tuple[str, ...]:
    """The projection head kinds (``pic2word``, ``searle``, ``lincir``), from the heads' own table."""
    from cir_milvus.heads import list_heads

    return tuple(list_heads())


@dataclass(frozen=True)
class HeadSpec:
    """One parsed ``--head [NAME:][KIND=]SOURCE``.

    Attributes:
        source: a file, an ``hf-hub:`` id, a bundle head's name, or a demo head name (``demo-lincir``).
        kind: ``pic2word``/``searle``/``lincir``, when given or implied (demo names); else ``None``.
        name: the name the head is given (bundles keep several of one kind); defaults to the kind.
    """

    source: str
    kind: str | None = None
    name: str | None = None


_KIND_PART = re.compile(r"([\w.-]+:)?[\w-]*")


def parse_head(item: str) -> HeadSpec:
    """``"searle=a.pt"`` → ``HeadSpec("a.pt", "searle")``; ``"mine:lincir=b.pt"`` names it; ``"demo-lincir"`` implies
    its kind; ``"hf-hub:org/repo/phi.pt"`` and plain paths are sources.

    Raises:
        ConfigError: an empty part, or an unknown KIND (the message lists the kinds).
    """
    kinds = head_kinds()
    left, sep, right = item.partition("=")
    prefix, colon, kind = left.rpartition(":")
    if sep and _KIND_PART.fullmatch(left) and prefix != "hf-hub":
        if kind not in kinds:
            raise ConfigError(f"--head {item!r}: unknown head kind {kind!r}; use one of {', '.join(kinds)} "
                              f"({HEAD_SYNTAX})")
        if not right or (colon and not prefix):
            raise ConfigError(f"--head expects {HEAD_SYNTAX} (e.g. searle=SEARLE_ViT-B32.pt), got {item!r}")
        return HeadSpec(right, kind, prefix or None)
    if not item.strip():
        raise ConfigError(f"--head expects {HEAD_SYNTAX}, got an empty value")
    return HeadSpec(item, DEMO_HEADS.get(item))


# -- cheap checks ----------------------------------------------------------------------------------------------------


def is_lite(uri: str) -> bool:
    """Whether ``uri`` names a local Milvus Lite file (not a server)."""
    return "://" not in uri and not uri.startswith("unix:")


def check_uri(uri: str, *, must_exist: bool = False) -> None:
    """A Milvus URI's shape: ``http(s)://host[:port]`` or a local Lite file ending in ``.db``.

    Args:
        uri: the ``--uri`` value.
        must_exist: a Lite file must exist already (commands that only read: a mistyped path is refused before
            anything could create it).

    Raises:
        ConfigError: another scheme, a server URI without a host, a Lite path without ``.db``, or (``must_exist``)
            a Lite file that does not exist.
    """
    if not is_lite(uri):
        scheme, _, rest = uri.partition("://")
        host = rest.rsplit("@", 1)[-1].split("/", 1)[0]
        if scheme.lower() not in ("http", "https", "tcp", "grpc") or not host:
            raise ConfigError(f"--uri {redact(uri)} is not a Milvus address: use http(s)://host:19530 for a server "
                              "or a local file name ending in .db for Milvus Lite")
        return
    if not uri.endswith(".db"):
        raise ConfigError(f"--uri {uri} is neither a Milvus Lite file (a name ending in .db, e.g. ./cir.db) nor a "
                          "server address (http://host:19530)")
    if must_exist and not Path(uri).expanduser().exists():
        raise ConfigError(f"--uri {uri}: no Milvus Lite file there; check the path, or create a collection in it "
                          "with `cir-milvus ingest DIR --uri ... --model ...`")


def check_composer(name: str | None) -> None:
    """Refuse an unknown ``--composer`` (the message lists the registered ones).

    Raises:
        ConfigError: no composer of that name.
    """
    if name is None:
        return
    from cir_milvus.composers.base import list_composers

    names = list_composers()
    if name not in names:
        raise ConfigError(f"--composer {name!r} is not a composer; choose one of {', '.join(names)}")


def check_alpha(alpha: float | list[float] | None, flag: str = "--alpha") -> None:
    """Refuse an alpha (or a list of them) outside [0, 1] or not a number, and an empty list.

    Raises:
        ConfigError: out of range.
    """
    if isinstance(alpha, list) and not alpha:
        raise ConfigError(f"{flag} needs at least one number, e.g. 0.8 or 0.6,0.7,0.8")
    for a in alpha if isinstance(alpha, list) else [] if alpha is None else [alpha]:
        if not (math.isfinite(a) and 0.0 <= a <= 1.0):
            raise ConfigError(f"{flag} is the weight of the text, between 0 and 1 (1 = text only); got {a}")


def check_k(k: int, flag: str = "-k") -> None:
    """Refuse a hit count outside [1, 16384] (Milvus's limit).

    Raises:
        ConfigError: out of range.
    """
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"{flag} must be between 1 and {MAX_K}, got {k}")


def check_file(path: str | Path | None, flag: str) -> None:
    """Refuse a path that is not an existing file.

    Raises:
        ConfigError: missing, or a folder.
    """
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{flag} {path} does not exist (or is not a file)")


def resolve_uri_token(args: argparse.Namespace) -> None:
    """``--uri`` / ``--token`` default to ``$MILVUS_URI`` (else ``./cir.db``) and ``$MILVUS_TOKEN``."""
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
