"""The torch modules that become the bundle's ONNX graphs (and give the torch reference outputs for parity).

Every wrapper is a plain ``nn.Module`` over an open_clip CLIP / CustomTextCLIP (and, for heads, any ``nn.Module``
mapping ``[B, D] → [B, W]``). Text graphs have a static sequence length ``L`` and a dynamic batch; the pseudo-token
injection uses ``where`` (methods.md §9), so the graph has no data-dependent shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cir_milvus.composers.slerp import slerp
from cir_milvus.encoders.torch import inject_pseudo_tokens

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
]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=-1)


class ImageGraph(nn.Module):
    """``pixels [B, 3, S, S]`` → raw image embedding ``[B, D]`` (open_clip ``encode_image``, no normalisation)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(pixels)  # [B, D]


class TextGraph(nn.Module):
    """``input_ids [B, L]`` → raw text embedding ``[B, D]`` (EOT pooling = ``argmax(input_ids)``)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(input_ids)  # [B, D]


class TextPseudoGraph(nn.Module):
    """``(input_ids [B, L], pseudo_token [B, W], placeholder_id [1])`` → raw text embedding ``[B, D]``.

    Every slot equal to ``placeholder_id`` gets ``pseudo_token`` as its token embedding (Pic2Word / SEARLE / LinCIR
    injection, :func:`cir_milvus.encoders.torch.inject_pseudo_tokens`).
    """

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, input_ids: torch.Tensor, pseudo_token: torch.Tensor, placeholder_id: torch.Tensor) -> torch.Tensor:
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
    """

    name: str
    module: nn.Module
    inputs: list[str]
    output: str
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    head: str | None = None

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
    specs = [
        GraphSpec("image", ImageGraph(clip), ["pixels"], "image_embeds", {"pixels": b, "image_embeds": b}),
        GraphSpec("text", TextGraph(clip), ["input_ids"], "text_embeds", {"input_ids": b, "text_embeds": b}),
        GraphSpec("text_pseudo", TextPseudoGraph(clip), ["input_ids", "pseudo_token", "placeholder_id"], "text_embeds",
                  {"input_ids": b, "pseudo_token": b, "text_embeds": b}),
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
