"""The projection networks φ as torch modules, built on first use so that importing them needs no torch.

- :class:`Pic2WordMapper`: Pic2Word's ``IM2TEXT`` (methods.md §2).
- :class:`SearlePhi`: SEARLE's φ, also LinCIR's (methods.md §3-4).

Example:
    >>> phi = module_class("SearlePhi")(input_dim=8, hidden_dim=16, output_dim=8)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import Any

from cir_milvus._optional import require
from cir_milvus.errors import ConfigError

__all__ = ["EXPECTED_LAYOUT", "module_class"]

_PURPOSE = "projection heads (Pic2Word / SEARLE / LinCIR)"

EXPECTED_LAYOUT = {
    "Pic2WordMapper": (
        "layers.0.0.weight [middle_dim, embed_dim], layers.0.0.bias [middle_dim], "
        "layers.{i}.0.weight [middle_dim, middle_dim] (i >= 1), fc_out.weight [output_dim, middle_dim], "
        "fc_out.bias [output_dim] (Pic2Word ViT-L/14: layers.0.0.weight [512, 768], fc_out.weight [768, 512])"
    ),
    "SearlePhi": (
        "layers.0.weight [hidden_dim, input_dim], layers.0.bias [hidden_dim], layers.3.weight [hidden_dim, "
        "hidden_dim], layers.3.bias [hidden_dim], layers.6.weight [output_dim, hidden_dim], layers.6.bias "
        "[output_dim] (SEARLE ViT-B/32: layers.0.weight [2048, 512]; SEARLE-XL/LinCIR L/14: [3072, 768])"
    ),
}
"""The state-dict layout of each module class, for error messages."""


def _pic2word_class(nn: Any) -> type:
    class Pic2WordMapper(nn.Module):  # type: ignore[misc, name-defined]
        """Pic2Word's ``IM2TEXT`` mapping network (methods.md §2).

        ``n_layer`` blocks ``[Linear → Dropout → ReLU]`` (dropout before the ReLU, as published), then ``fc_out``.
        State-dict keys: ``layers.{i}.0.{weight,bias}``, ``fc_out.{weight,bias}``.

        Args:
            embed_dim: input dimension (the CLIP image embedding, 768 for ViT-L/14).
            middle_dim: hidden width (512 in the paper).
            output_dim: token width (the text tower width, 768 for ViT-L/14).
            n_layer: number of hidden blocks (2 in the paper).
            dropout: dropout probability (0.1).
        """

        config_keys = ("embed_dim", "middle_dim", "output_dim", "n_layer", "dropout")

        def __init__(
            self,
            embed_dim: int = 768,
            middle_dim: int = 512,
            output_dim: int = 768,
            n_layer: int = 2,
            dropout: float = 0.1,
        ) -> None:
            super().__init__()
            if n_layer < 1:
                raise ConfigError(f"Pic2WordMapper needs n_layer >= 1, got {n_layer}")
            self.embed_dim, self.middle_dim, self.output_dim = int(embed_dim), int(middle_dim), int(output_dim)
            self.n_layer, self.dropout = int(n_layer), float(dropout)
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(embed_dim if i == 0 else middle_dim, middle_dim), nn.Dropout(dropout), nn.ReLU())
                for i in range(n_layer)
            )
            self.fc_out = nn.Linear(middle_dim, output_dim)

        @property
        def input_dim(self) -> int:
            return self.embed_dim

        def forward(self, x: Any) -> Any:
            for block in self.layers:
                x = block(x)  # [N, middle_dim]
            return self.fc_out(x)  # [N, output_dim]

        def get_config_dict(self) -> dict[str, Any]:
            return {k: getattr(self, k) for k in self.config_keys}

    return Pic2WordMapper


def _searle_class(nn: Any) -> type:
    class SearlePhi(nn.Module):  # type: ignore[misc, name-defined]
        """SEARLE's φ, also used by LinCIR (methods.md §3-4).

        ``Linear(in, hidden) → GELU → Dropout → Linear(hidden, hidden) → GELU → Dropout → Linear(hidden, out)``;
        keys ``layers.0``, ``layers.3``, ``layers.6``.

        Args:
            input_dim: CLIP image-embedding dimension (512 for B/32, 768 for L/14).
            hidden_dim: hidden width (4 × input_dim as published).
            output_dim: token width (text tower width).
            dropout: dropout probability (0.5).
        """

        config_keys = ("input_dim", "hidden_dim", "output_dim", "dropout")

        def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, dropout: float = 0.5) -> None:
            super().__init__()
            self.input_dim, self.hidden_dim, self.output_dim = int(input_dim), int(hidden_dim), int(output_dim)
            self.dropout = float(dropout)
            self.layers = nn.Sequential(
                nn.Linear(input_dim, hidden_dim),
                nn.GELU(),
                nn.Dropout(p=dropout),
                nn.Linear(hidden_dim, hidden_dim),
                nn.GELU(),
                nn.Dropout(p=dropout),
                nn.Linear(hidden_dim, output_dim),
            )

        def forward(self, x: Any) -> Any:
            return self.layers(x)  # [N, input_dim] -> [N, output_dim]

        def get_config_dict(self) -> dict[str, Any]:
            return {k: getattr(self, k) for k in self.config_keys}

    return SearlePhi


@functools.cache
def _classes() -> dict[str, type]:
    nn = require("torch", purpose=_PURPOSE).nn
    classes = {"Pic2WordMapper": _pic2word_class(nn), "SearlePhi": _searle_class(nn)}
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = __name__, name
    return classes


def module_class(arch: str) -> type:
    """The torch module class ``arch`` (``"Pic2WordMapper"`` or ``"SearlePhi"``), imported torch on first use.

    Raises:
        BackendUnavailableError: torch is not installed.
        ConfigError: unknown class name.
    """
    classes = _classes()
    if arch not in classes:
        raise ConfigError(f"unknown head module class {arch!r}; available: {', '.join(sorted(classes))}")
    return classes[arch]


def __getattr__(name: str) -> Any:
    # PEP 562: the nn.Module classes exist only once torch is imported (and pickles name them here).
    if name in ("Pic2WordMapper", "SearlePhi"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
