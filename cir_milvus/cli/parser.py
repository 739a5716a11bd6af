"""The ``cir-milvus`` parser (one module per command registers its subcommand) and the entry point :func:`main`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from cir_milvus.cli import demo, export, info, ingest, search, serve, set_default, train
from cir_milvus.cli import eval as eval_command
from cir_milvus.cli.options import ENV_TOKEN, ENV_URI, one_line, redact, resolve_uri_token
from cir_milvus.errors import CIRError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (demo, ingest, search, info, set_default, eval_command, serve, export, train)
"""The command modules, in the order ``--help`` lists them; each has ``add_parser(subparsers)``."""


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from cir_milvus import __version__
        from cir_milvus._optional import available

        extras = [m for m in ("torch", "open_clip", "onnxruntime", "pymilvus", "milvus_lite") if available(m)]
        print(f"cir-milvus {__version__} (Python {sys.version.split()[0]}; installed: {', '.join(extras)})")
        parser.exit()


def _loudness(p: argparse.ArgumentParser, *, top: bool) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                   help="log more: -v our progress messages, -vv debug including third-party libraries")
    g.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="print results and errors only")


def build_parser() -> argparse.ArgumentParser:
    """The ``cir-milvus`` argument parser (every flag has help text)."""
    parser = argparse.ArgumentParser(
        prog="cir-milvus", description="Zero-shot composed image retrieval on Milvus.",
        epilog=f"Environment: {ENV_URI} and {ENV_TOKEN} are used when --uri / --token are not given.")
    parser.add_argument("--version", action=_VersionAction, help="print the version and installed backends")
    _loudness(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -v / -q also after the subcommand (`cir-milvus info -v`); SUPPRESS keeps the top-level values otherwise
    common = argparse.ArgumentParser(add_help=False)
    _loudness(common, top=False)
    add_parser = sub.add_parser

    def add_with_common(name: str, **kw: Any) -> argparse.ArgumentParser:
        return add_parser(name, parents=[common], **kw)

    sub.add_parser = add_with_common  # type: ignore[method-assign]
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cir-milvus``; returns the exit code (0 ok, 1 a demo or parity below its target, 2 a user error — bad
    input, a missing extra, an unreachable or refusing Milvus —, 130 Ctrl-C)."""
    from cir_milvus._logging import cli_logging
    from cir_milvus._optional import missing_extra

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        args.train_argv = [*extra, *args.train_argv]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.quiet and args.verbose:
        parser.error("-q and -v contradict each other; pass one")
    args.verbosity = -1 if args.quiet else args.verbose
    if hasattr(args, "uri") and hasattr(args, "token"):
        resolve_uri_token(args)
    with cli_logging(args.verbosity):
        try:
            return int(args.func(args) or 0)
        except CIRError as e:
            return _error(args, one_line(e))
        except ImportError as e:
            hint = missing_extra(e)
            if hint is None:
                raise
            return _error(args, hint)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `cir-milvus search ... | head`
            return 0


def _error(args: argparse.Namespace, msg: str) -> int:
    if getattr(args, "uri", None):
        msg = msg.replace(args.uri, redact(args.uri))
    print(f"error: {msg}", file=sys.stderr)
    return 2
