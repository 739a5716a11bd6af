"""The torch modules that become the bundle's ONNX graphs (and give the torch reference outputs for parity).

Every wrapper is a plain ``nn.Module`` over an open_clip CLIP / CustomTextCLIP (and, for heads, any ``nn.Module``
mapping ``[B, D] → [B, W]``). ``text`` and ``text_pseudo`` take ids of any length up to ``L`` when the text tower
pools a prefix (:func:`~cir_milvus.encoders.torch.prefix_pooling`: causal attention, end-of-text pooling), so
onnxruntime runs only the pooled prefix as the torch encoder does; the fused graphs take the full ``L``. The
pseudo-token injection uses ``where`` (methods.md §9), so no graph has data-dependent shapes.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch's own alias

from cir_milvus.composers.slerp import slerp
from cir_milvus.encoders.torch import inject_pseudo_tokens, prefix_pooling, text_tower_forward

__all__ = [
    "FusedHeadGraph",
    "FusedSlerpGraph",
    "GraphSpec",
    "HeadGraph",
    "ImageGraph",
    "TextGraph",
    "TextPseudoGraph",
    "build_graph_specs",
    "run_torch",
    "traceable_attention",
]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=-1)


def _attention(block: nn.Module, q_x: torch.Tensor, k_x: Any = None, v_x: Any = None,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock.attention`` (self-attention) with the arithmetic of
    ``nn.MultiheadAttention`` written in length-agnostic reshapes: traced, ``nn.MultiheadAttention`` bakes the
    example's sequence length into its reshapes, this does not."""
    mha = block.attn
    x = q_x if mha.batch_first else q_x.transpose(0, 1)  # [B, n, W]
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)  # [B, n, 3W]
    q, k, v = (t.unflatten(-1, (mha.num_heads, -1)).transpose(1, 2) for t in qkv.chunk(3, dim=-1))  # [B, h, n, d]
    mask = attn_mask.to(q.dtype) if attn_mask is not None else None  # [n, n] additive causal mask
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, h, n, d]
    out = mha.out_proj(out.transpose(1, 2).flatten(-2))  # [B, n, h, d] -> [B, n, W]
    return out if mha.batch_first else out.transpose(0, 1)


@contextlib.contextmanager
def traceable_attention(clip: nn.Module) -> Iterator[None]:
    """Inside the block, the text transformer's attention is :func:`_attention` (same weights, same arithmetic), so
    a traced text graph takes ids of any length; the module is unchanged afterwards (the torch reference that
    parity compares with runs ``nn.MultiheadAttention``)."""
    tower = clip.text if hasattr(clip, "text") and hasattr(clip.text, "transformer") else clip
    blocks = [b for b in tower.transformer.resblocks if isinstance(getattr(b, "attn", None), nn.MultiheadAttention)]
    for b in blocks:
        b.attention = types.MethodType(_attention, b)
    try:
        yield
    finally:
        for b in blocks:
            del b.attention  # the class's own method again


class ImageGraph(nn.Module):
    """``pixels [B, 3, S, S]`` → raw image embedding ``[B, D]`` (open_clip ``encode_image``, no normalisation)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(pixels)  # [B, D]


class TextGraph(nn.Module):
    """``input_ids [B, n]`` → raw text embedding ``[B, D]`` (EOT pooling = ``argmax(input_ids)``).

    With ``any_length`` the positions and causal mask are cut to ``n`` in the graph, so any ``n <= L`` works.
    """

    def __init__(self, clip: nn.Module, any_length: bool = False) -> None:
        super().__init__()
        self.clip = clip
        self.any_length = any_length

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.any_length:
            return text_tower_forward(self.clip, input_ids, any_length=True)  # [B, D]
        return self.clip.encode_text(input_ids)  # [B, D]


class TextPseudoGraph(nn.Module):
    """``(input_ids [B, L], pseudo_token [B, W], placeholder_id [1])`` → raw text embedding ``[B, D]``.

    Every slot equal to ``placeholder_id`` gets ``pseudo_token`` as its token embedding (Pic2Word / SEARLE / LinCIR
    injection, :func:`cir_milvus.encoders.torch.inject_pseudo_tokens`).
    """

    def __init__(self, clip: nn.Module, any_length: bool = False) -> None:
        super().__init__()
        self.clip = clip
        self.any_length = any_length

    def forward(self, input_ids: torch.Tensor, pseudo_token: torch.Tensor, placeholder_id: torch.Tensor) -> torch.Tensor:
        if self.any_length:
            return text_tower_forward(self.clip, input_ids, pseudo_token, placeholder_id, any_length=True)  # [B, D]
        return inject_pseudo_tokens(self.clip, input_ids, pseudo_token, placeholder_id)  # [B, D]


class HeadGraph(nn.Module):
    """``image_embeds [B, D]`` (raw) → ``pseudo_token [B, W]`` for any head module."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.head(image_embeds)  # [B, W]


class FusedSlerpGraph(nn.Module):
    """``(pixels, input_ids, alpha [1] or [B])`` → ``slerp(norm(image), norm(text), alpha)``, L2-normalised ``[B, D]``.

    Slerp of Jang et al. (ECCV'24, arXiv 2405.00571); ``alpha`` weights the text.
    """

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        img = _normalize(self.clip.encode_image(pixels))  # [B, D]
        txt = _normalize(self.clip.encode_text(input_ids))  # [B, D]
        return slerp(img, txt, alpha.reshape(-1, 1))  # alpha [A] -> [A, 1], broadcast over D; out [B, D]


class FusedHeadGraph(nn.Module):
    """``(pixels, input_ids)`` → normalised text feature of the prompt with the head's pseudo token ``[B, D]``.

    ``image → head → token`` injected at every ``placeholder_id`` slot of the prompt (a constant of the graph).
    """

    def __init__(self, clip: nn.Module, head: nn.Module, placeholder_id: int) -> None:
        super().__init__()
        self.clip = clip
        self.head = head
        self.placeholder_id = int(placeholder_id)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        token = self.head(self.clip.encode_image(pixels))  # [B, W]
        pid = torch.full((1,), self.placeholder_id, dtype=torch.long)
        return _normalize(inject_pseudo_tokens(self.clip, input_ids, token, pid))  # [B, D]


@dataclass
class GraphSpec:
    """One graph to export: module, example inputs and the ONNX names.

    Attributes:
        name: graph name (``image``, ``text``, ``text_pseudo``, ``head_x``, ``fused_slerp``, ``fused_x``).
        module: the torch module.
        inputs: input names in ``forward`` order.
        output: output name.
        dynamic: per input/output, the axes that are dynamic (axis → symbolic name).
        head: the head name for head/fused-head graphs.
        any_length: a text graph that takes ids of any length (traced inside :func:`traceable_attention`).
    """

    name: str
    module: nn.Module
    inputs: list[str]
    output: str
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    head: str | None = None
    any_length: bool = False

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def build_graph_specs(clip: nn.Module, heads: dict[str, tuple[nn.Module, int]], fused: bool = True) -> list[GraphSpec]:
    """The graphs of a bundle.

    Args:
        clip: the open_clip model (fp32, CPU, eval).
        heads: head name → (module, placeholder id).
        fused: also build the fused slerp / fused head graphs.
    """
    b = {0: "batch"}
    any_length = prefix_pooling(clip) is not None
    ids = {0: "batch", 1: "length"} if any_length else b  # [B, n]: the pooled prefix, any n <= L
    specs = [
        GraphSpec("image", ImageGraph(clip), ["pixels"], "image_embeds", {"pixels": b, "image_embeds": b}),
        GraphSpec("text", TextGraph(clip, any_length), ["input_ids"], "text_embeds",
                  {"input_ids": ids, "text_embeds": b}, any_length=any_length),
        GraphSpec("text_pseudo", TextPseudoGraph(clip, any_length), ["input_ids", "pseudo_token", "placeholder_id"],
                  "text_embeds", {"input_ids": ids, "pseudo_token": b, "text_embeds": b}, any_length=any_length),
    ]
    for name, (module, _) in heads.items():
        specs.append(GraphSpec(f"head_{name}", HeadGraph(module), ["image_embeds"], "pseudo_token",
                               {"image_embeds": b, "pseudo_token": b}, head=name))
    if fused:
        specs.append(GraphSpec("fused_slerp", FusedSlerpGraph(clip), ["pixels", "input_ids", "alpha"], "query",
                               {"pixels": b, "input_ids": b, "alpha": {0: "alpha_len"}, "query": b}))
        for name, (module, pid) in heads.items():
            specs.append(GraphSpec(f"fused_{name}", FusedHeadGraph(clip, module, pid), ["pixels", "input_ids"], "query",
                                   {"pixels": b, "input_ids": b, "query": b}, head=name))
    for s in specs:
        s.module.eval()
    return specs


def run_torch(spec: GraphSpec, feeds: dict[str, Any]) -> Any:
    """Run a graph's torch module on numpy feeds; returns float32 numpy."""
    import numpy as np

    args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.inputs]
    with torch.no_grad():
        return spec.module(*args).float().numpy().astype(np.float32)
