"""``--composer/--alpha/--head/--template/--base`` → the composer request of a command, checked before any model loads."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cir_milvus.cli.options import DEMO_HEADS, check_alpha, check_composer, head_kinds, parse_head
from cir_milvus.encoders.capabilities import BundleHeadLike, HasBundleHeads
from cir_milvus.errors import ConfigError
from cir_milvus.heads import Head

__all__ = ["bundle_head", "composer_request", "parse_params", "resolve_bundle_head", "resolve_head", "same_default"]


def _pseudo() -> tuple[str, ...]:
    return (*head_kinds(), "combined")


def resolve_head(head: str | None, composer: str | None) -> tuple[Any, str | None, str | None]:
    """``--head`` → ``(head source, composer, kind)``.

    A demo head name (``demo-lincir``) becomes the shipped file; a KIND (``lincir=phi.pt``, or a demo name's) picks the
    composer when ``--composer`` is not given. Other sources (a file, an ``hf-hub:`` id, a bundle head's name) are
    passed on as given (a bundle head's name is resolved once the encoder is known, see :func:`bundle_head`).

    Raises:
        ConfigError: a head of one kind with another pseudo-token composer, or a head for a composer that takes none.
    """
    if head is None:
        return None, composer, None
    spec = parse_head(head)
    kind = spec.kind
    if composer is not None and composer not in _pseudo():
        raise ConfigError(f"--head is for the pseudo-token composers ({', '.join(_pseudo())}); "
                          f"--composer {composer} takes no head")
    if kind is not None and composer not in (None, kind, "combined"):
        raise ConfigError(f"--head {head} is a {kind} head; use it with --composer {kind} (or combined), "
                          f"not {composer}")
    source: Any = spec.source
    if spec.source in DEMO_HEADS:
        from cir_milvus.models.demo import demo_head_path

        path = demo_head_path(DEMO_HEADS[spec.source])
        if not path.is_file():
            raise ConfigError(f"the demo head {head} is not installed at {path}; reinstall cir_milvus")
        source = str(path)
    return source, composer or kind, kind


def bundle_head(encoder: Any, head: Any) -> Any:
    """A head name that the serving ONNX bundle carries → that bundle head (no torch needed).

    Raises:
        ConfigError: a name that is neither a file nor one of the bundle's heads (the message lists them).
    """
    if not isinstance(head, str) or not isinstance(encoder, HasBundleHeads):
        return head
    heads = encoder.heads
    if head in heads:
        return heads[head]
    if not head.startswith("hf-hub:") and not Path(head).exists():
        names = ", ".join(sorted(heads)) or "none"
        raise ConfigError(f"--head {head!r} is neither a file nor a head of the bundle (bundle heads: {names})")
    return head


def resolve_bundle_head(encoder: Any, composer: str | None, params: dict[str, Any]) -> None:
    """Swap a bundle head's name in ``params`` for the head itself (and default ``combined``'s base to its kind)."""
    if "head" in params:
        params["head"] = bundle_head(encoder, params["head"])
        kind = params["head"].kind if isinstance(params["head"], (Head, BundleHeadLike)) else None
        if composer == "combined" and "base" not in params and kind:
            params["base"] = kind


def composer_request(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """``--composer/--alpha/--head/--template/--base`` → ``(composer, params)``; reads no model.

    Raises:
        ConfigError: an unknown composer, alpha outside [0, 1], a head or alpha the composer does not take, a base
            outside ``combined``.
    """
    check_composer(args.composer)
    check_alpha(args.alpha)
    head, composer, kind = resolve_head(args.head, args.composer)
    if composer in _pseudo() and composer != "combined" and args.alpha is not None:
        raise ConfigError(f"--alpha weights the text in slerp/combined; --composer {composer} takes none")
    base = getattr(args, "base", None)
    if composer == "combined" and base is None:
        base = kind
    if base is not None and composer != "combined":
        raise ConfigError(f"--base is the pseudo-token method inside --composer combined, not {composer}")
    params = {k: v for k, v in (("alpha", args.alpha), ("head", head), ("template", args.template),
                                ("base", base)) if v is not None}
    return composer, params


def same_default(stored: dict[str, Any], composer: str | None, params: dict[str, Any]) -> bool:
    """Whether ``(composer, params)`` asks for what the recipe's default composer already is."""
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


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``--param NAME=JSON`` items → the filter template's values (a bare string where the value is not JSON).

    Raises:
        ConfigError: an item without ``=``.
    """
    values: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param needs NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            values[k] = json.loads(v)
        except json.JSONDecodeError:
            values[k] = v
    return values
