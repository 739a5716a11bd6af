"""Swapping in a tuned text tower (RTD) while the image tower — and so every stored gallery vector — stays as is.

RTD (Byun et al., methods.md §6) fine-tunes only the CLIP text encoder. Its published checkpoints are Hugging
Face ``CLIPTextModelWithProjection`` state dicts under the key ``"CLIPTextModelWithProjection"``; ``cir_milvus``'s
own RTD recipe writes the tuned tower with open_clip key names. :func:`load_text_tower` reads either layout (and a
full open_clip checkpoint, of which it takes the text keys) and loads it into an open_clip model in place.

HF → open_clip key mapping (``CLIPTextModelWithProjection``, a ``module.`` prefix is stripped first)::

    text_model.embeddings.token_embedding.weight        → token_embedding.weight
    text_model.embeddings.position_embedding.weight     → positional_embedding
    text_model.encoder.layers.{i}.self_attn.{q,k,v}_proj → transformer.resblocks.{i}.attn.in_proj_{weight,bias}
                                                           (q, k, v concatenated in that order)
    text_model.encoder.layers.{i}.self_attn.out_proj    → transformer.resblocks.{i}.attn.out_proj
    text_model.encoder.layers.{i}.layer_norm{1,2}       → transformer.resblocks.{i}.ln_{1,2}
    text_model.encoder.layers.{i}.mlp.fc{1,2}           → transformer.resblocks.{i}.mlp.c_{fc,proj}
    text_model.final_layer_norm                         → ln_final
    text_projection.weight  [D, W]                      → text_projection [W, D] (transposed)

``text_model.embeddings.position_ids`` is dropped. The mapping is checked in the tests against ``transformers``'
own ``CLIPTextModelWithProjection`` forward pass (methods.md marks it unverified for RTD's files themselves).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cir_milvus._optional import require
from cir_milvus.checkpoints import read_checkpoint, strip_prefix
from cir_milvus.errors import CheckpointError

__all__ = ["RTD_WRAPPER_KEY", "hf_text_to_open_clip", "load_text_tower", "text_tower_prefix", "text_tower_state_dict"]

RTD_WRAPPER_KEY = "CLIPTextModelWithProjection"
"""Where RTD's ``train_text_encoder.py`` stores the tuned text encoder in its checkpoint dict."""

_PURPOSE = "loading a tuned text tower"
_NOT_TEXT = ("visual.", "logit_scale", "logit_bias")
_LAYER = re.compile(r"text_model\.encoder\.layers\.(\d+)\.(.+)")
_LAYER_MAP = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}


def text_tower_prefix(model: Any) -> str:
    """``"text."`` for open_clip's CustomTextCLIP, ``""`` for CLIP (whose text tower sits at the top level)."""
    text = getattr(model, "text", None)
    return "text." if text is not None and hasattr(text, "token_embedding") else ""


def text_tower_state_dict(model: Any) -> dict[str, Any]:
    """The text tower's tensors of an open_clip model, with the model's own key names."""
    prefix = text_tower_prefix(model)
    sd = model.state_dict()
    if prefix:
        return {k: v for k, v in sd.items() if k.startswith(prefix)}
    return {k: v for k, v in sd.items() if not k.startswith(_NOT_TEXT) and k != "attn_mask"}


def hf_text_to_open_clip(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a Hugging Face ``CLIPTextModel(WithProjection)`` state dict to open_clip CLIP text-tower keys.

    Raises:
        CheckpointError: a key the mapping does not know (the message lists it), or q/k/v projections missing.
    """
    torch = require("torch", purpose=_PURPOSE)
    out: dict[str, Any] = {}
    qkv: dict[tuple[str, str], dict[str, Any]] = {}
    unknown = []
    for key, value in strip_prefix(sd).items():
        if key == "text_model.embeddings.position_ids":
            continue
        if key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out["ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif m := _LAYER.fullmatch(key):
            i, rest = m.groups()
            if (qm := re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)) is not None:
                qkv.setdefault((i, qm.group(2)), {})[qm.group(1)] = value
                continue
            for hf, oc in _LAYER_MAP.items():
                if rest.startswith(hf):
                    out[f"transformer.resblocks.{i}.{oc}{rest[len(hf):]}"] = value
                    break
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unknown keys in a Hugging Face CLIP text encoder state dict: {unknown[:6]}")
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"layer {i}: self_attn {kind} needs q, k and v projections, found {sorted(parts)}")
        out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


def _extract(obj: Any, where: str) -> tuple[dict[str, Any], str]:
    """``(open_clip-named text state dict without prefix, layout)`` from any supported checkpoint object."""
    torch = require("torch", purpose=_PURPOSE)
    if isinstance(obj, Mapping) and RTD_WRAPPER_KEY in obj:
        obj = obj[RTD_WRAPPER_KEY]
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{where} holds no text-tower state dict (found {found}); expected an RTD checkpoint (key "
            f"{RTD_WRAPPER_KEY!r}), a Hugging Face CLIPTextModelWithProjection state dict, or open_clip weights"
        )
    sd = strip_prefix(obj)
    if any(k.startswith("text_model.") for k in sd):
        return hf_text_to_open_clip(sd), "hf"
    if any(k.startswith("text.") for k in sd):  # a CustomTextCLIP checkpoint: keep its text tower
        return {k[5:]: v for k, v in sd.items() if k.startswith("text.")}, "open_clip"
    return {k: v for k, v in sd.items() if not k.startswith(_NOT_TEXT) and k != "attn_mask"}, "open_clip"


def load_text_tower(model: Any, path: str | Path) -> str:
    """Load a tuned text tower into an open_clip model in place (the image tower is untouched).

    Args:
        model: an open_clip ``CLIP`` or ``CustomTextCLIP`` with an open_clip text transformer.
        path: RTD checkpoint (``.pt`` with ``"CLIPTextModelWithProjection"``), Hugging Face text-encoder weights
            (``.safetensors``/``.bin``), a text-tower file written by ``cir_milvus.train rtd``, or a full open_clip
            checkpoint (its text keys are used).

    Returns:
        The layout found: ``"hf"`` or ``"open_clip"``.

    Raises:
        CheckpointError: unreadable file, or tensors that do not fit the model's text tower (missing, unexpected
            and mis-shaped keys are listed).
    """
    torch = require("torch", purpose=_PURPOSE)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"text-tower checkpoint not found: {path} (looked at {path.resolve()})")
    sd, layout = _extract(read_checkpoint(path, _PURPOSE), str(path))
    prefix = text_tower_prefix(model)
    target = {k[len(prefix):]: v for k, v in text_tower_state_dict(model).items()}
    missing = sorted(set(target) - set(sd))
    unexpected = sorted(set(sd) - set(target))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
              for k in sorted(set(sd) & set(target)) if tuple(sd[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path} ({layout} layout) does not fit this model's text tower: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape mismatches {shapes[:3]}. Pass the text tower tuned from the same base model "
            "(same width, layers and context length)."
        )
    with torch.no_grad():
        for k, v in target.items():
            v.copy_(sd[k].to(dtype=v.dtype, device=v.device))
    return layout
