"""Spherical linear interpolation between the image and the text embedding (Jang et al., ECCV'24, arXiv 2405.00571).

``slerp(v, w, α) = sin((1-α)θ)/sin θ · v + sin(αθ)/sin θ · w`` with ``θ = arccos⟨v, w⟩``, then L2-normalised; when
``|⟨v, w⟩| > 0.9995`` the normalised lerp ``v + α(w - v)`` is used instead (the official ``slerp.py``). ``v`` is the
image, ``w`` the text, so ``α`` weights the TEXT: α=0 → image only, α=1 → text only. Paper defaults: 0.9 for
CIRR-like natural images, 0.8 for fashion and CIRCO. The text is the raw modification text, no template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cir_milvus.composers.base import Composer, as_text, register_composer
from cir_milvus.encoders.base import Encoder
from cir_milvus.encoders.capabilities import SupportsDeviceOutput
from cir_milvus.errors import ConfigError
from cir_milvus.types import Embeddings

__all__ = ["SlerpComposer", "slerp"]

DOT_THRESHOLD = 0.9995


def slerp(v0: Any, v1: Any, alpha: float | Any, dot_threshold: float = DOT_THRESHOLD) -> Any:
    """Row-wise slerp of L2-normalised ``v0`` (image) towards ``v1`` (text) by ``alpha`` ∈ [0, 1].

    Works on numpy arrays and on torch tensors (on their own device). Inputs ``[N, D]`` (or ``[D]``).

    Returns:
        L2-normalised interpolants, same type, shape and device as the inputs.
    """
    if type(v0).__module__.startswith("torch"):
        return _slerp_torch(v0, v1, alpha, dot_threshold)
    return _slerp_numpy(np.asarray(v0, dtype=np.float64), np.asarray(v1, dtype=np.float64), alpha, dot_threshold)


def _slerp_torch(v0: Any, v1: Any, alpha: Any, dot_threshold: float) -> Any:
    import torch

    dot = (v0 * v1).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)  # [N, 1]
    theta = torch.arccos(dot)
    sin_t = torch.sin(theta)
    safe = sin_t.abs() > 1e-8
    denom = torch.where(safe, sin_t, torch.ones_like(sin_t))
    s0 = torch.sin((1 - alpha) * theta) / denom
    s1 = torch.sin(alpha * theta) / denom
    out = torch.where((dot.abs() > dot_threshold) | ~safe, v0 + alpha * (v1 - v0), s0 * v0 + s1 * v1)
    return torch.nn.functional.normalize(out, dim=-1)


def _slerp_numpy(a: np.ndarray, b: np.ndarray, alpha: Any, dot_threshold: float) -> np.ndarray:
    dot = np.clip(np.sum(a * b, axis=-1, keepdims=True), -1.0, 1.0)  # [N, 1]
    theta = np.arccos(dot)
    sin_t = np.sin(theta)
    safe = np.abs(sin_t) > 1e-8
    denom = np.where(safe, sin_t, 1.0)
    spherical = np.sin((1 - alpha) * theta) / denom * a + np.sin(alpha * theta) / denom * b
    out = np.where((np.abs(dot) > dot_threshold) | ~safe, a + alpha * (b - a), spherical)
    return (out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _normalize(x: Any) -> Any:
    if type(x).__module__.startswith("torch"):
        import torch

        return torch.nn.functional.normalize(x.float(), dim=-1)
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def to_numpy(x: Any) -> Embeddings:
    if type(x).__module__.startswith("torch"):
        return x.detach().float().cpu().numpy().astype(np.float32)
    return np.asarray(x, dtype=np.float32)


@register_composer("slerp")
class SlerpComposer(Composer):
    """Slerp between the reference image and the modification text; ``alpha`` weights the text.

    Runs on the encoder's device when the encoder offers device tensors (torch on CUDA), else in numpy.
    """

    defaults = {"alpha": 0.8}

    def validate(self) -> None:
        alpha = self.params["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"slerp alpha must be a number in [0, 1] (it weights the text), got {alpha!r}")
        self.params["alpha"] = float(alpha)

    def text_features(self, encoder: Encoder, texts: Sequence[Any]) -> Any:
        """The normalised text embeddings (on the encoder's device when it offers device tensors)."""
        if isinstance(encoder, SupportsDeviceOutput):
            return encoder.encode_texts([as_text(t) for t in texts], normalize=True, device_output=True)  # type: ignore[call-arg]
        return encoder.encode_texts([as_text(t) for t in texts], normalize=True)

    def compose(self, encoder: Encoder, image_embeddings: Embeddings | None, texts: Sequence[str], *,
                text_features: Any = None) -> Embeddings:
        if image_embeddings is None:
            raise ConfigError("slerp needs a reference image (or ref_id)")
        img = encoder.to_device(image_embeddings) if isinstance(encoder, SupportsDeviceOutput) else image_embeddings
        txt = text_features if text_features is not None else self.text_features(encoder, texts)
        return to_numpy(slerp(_normalize(img), txt, self.params["alpha"]))
