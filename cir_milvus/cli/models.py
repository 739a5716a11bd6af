"""Which model a command builds: explicit weights for new collections, the recipe's for existing ones, refused early
(with the fix) where this installation cannot build it."""

from __future__ import annotations

import argparse
from typing import Any

from cir_milvus.cli.options import DEMO_MODEL, DEMO_WEIGHTS
from cir_milvus.errors import BackendUnavailableError, ConfigError

__all__ = ["check_backend", "check_precision", "creation_model", "open_collection", "pretrained_for"]

_OWN_WEIGHTS = ("bundle:", "hf-hub:", "local-dir:")


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
    if model.startswith(_OWN_WEIGHTS) or model == "fake":
        if pretrained is not None and not model.startswith("local-dir:"):
            raise ConfigError(f"--pretrained is for open_clip model names; {model} carries its own weights")
        return model, pretrained
    if pretrained is None and not random_ok:
        raise ConfigError(
            f"--model {model} needs --pretrained: an open_clip tag (e.g. openai, laion2b_s34b_b79k) or a local "
            "checkpoint file; pass --random-weights to build a collection of untrained vectors on purpose")
    return model, pretrained


def pretrained_for(model: str | None, pretrained: str | None) -> str | None:
    """``--pretrained``, defaulting to the demo weights for the demo model."""
    return DEMO_WEIGHTS if model == DEMO_MODEL and pretrained is None else pretrained


def check_backend(encoder_recipe: dict[str, Any], model: str | None, name: str) -> None:
    """Refuse early, with the fix, when the model (or the recipe's backend) cannot be built here (torch missing).

    Raises:
        BackendUnavailableError: torch or open_clip is missing for a torch model.
    """
    from cir_milvus._optional import available

    torch_ok = available("torch") and available("open_clip")
    if model is not None:
        if not model.startswith("bundle:") and model != "fake" and not torch_ok:
            raise BackendUnavailableError(
                f"--model {model} needs torch and open_clip, which are not installed; pass --model bundle:DIR (an "
                "ONNX bundle exported with `cir-milvus export`) or pip install 'cir_milvus[torch]'")
        return
    if encoder_recipe.get("backend", "torch") == "torch" and not torch_ok:
        m = encoder_recipe.get("model")
        raise BackendUnavailableError(
            f"collection {name!r} was built with the torch model {m} / {encoder_recipe.get('pretrained')}, and torch "
            f"is not installed here; serve it from an ONNX bundle of the same weights with --model bundle:DIR "
            f"(made by `cir-milvus export --model {m} --pretrained ... --out DIR` where torch is installed), "
            "or pip install 'cir_milvus[torch]'")


def check_precision(precision: str | None, model: str | None) -> None:
    """Refuse ``--precision`` for an ONNX bundle (its precision is fixed at export).

    Raises:
        ConfigError: both given.
    """
    if precision is not None and model is not None and model.startswith("bundle:"):
        raise ConfigError(f"--precision {precision} is for torch encoders; an ONNX bundle fixes its precision at "
                          "export (cir-milvus export --precision fp32|int8): drop --precision")


def open_collection(args: argparse.Namespace, encoder_recipe: dict[str, Any]) -> Any:
    """Open ``args.collection`` with ``--model`` (or the recipe's model), after the backend checks."""
    import cir_milvus

    check_backend(encoder_recipe, args.model, args.collection)
    check_precision(args.precision, args.model or ("bundle:" if encoder_recipe.get("backend") == "onnx" else None))
    db = cir_milvus.connect(args.uri, token=args.token, timeout=args.timeout)
    return db.open_collection(
        args.collection, args.model, pretrained_for(args.model, args.pretrained),
        encoder=cir_milvus.EncoderSpec(device=args.device, precision=args.precision, text_weights=args.text_weights))
