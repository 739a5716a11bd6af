"""Image preprocessing in numpy + Pillow, shared by every backend (torch, onnxruntime) so they see the same pixels.

Two modes, matching the research code:

- ``"clip"``: resize the shortest side to ``size`` (bicubic), centre-crop ``size × size`` — open_clip's and
  OpenAI CLIP's eval transform (used by Pic2Word, LinCIR, Slerp).
- ``"targetpad"``: SEARLE's transform — when the aspect ratio is at least ``target_ratio`` (1.25), zero-pad the
  short side up to that ratio first, then the CLIP transform.

Then scale to [0, 1] and normalise with the model's mean/std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from PIL import Image

from cir_milvus.errors import ConfigError

__all__ = ["OPENAI_MEAN", "OPENAI_STD", "PreprocessConfig", "preprocess_batch", "preprocess_image"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

Mode = Literal["clip", "targetpad"]


@dataclass(frozen=True)
class PreprocessConfig:
    """How pixels are prepared for the image tower.

    Attributes:
        size: output side length.
        mean: per-channel mean (after scaling to [0, 1]).
        std: per-channel std.
        interpolation: ``"bicubic"`` (CLIP), ``"bilinear"`` or ``"nearest"``.
        mode: ``"clip"`` (resize + centre crop) or ``"targetpad"`` (SEARLE).
        target_ratio: aspect ratio threshold and target of ``targetpad``.
    """

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    mode: Mode = "clip"
    target_ratio: float = 1.25
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in ("clip", "targetpad"):
            raise ConfigError(f"preprocess mode must be 'clip' or 'targetpad', got {self.mode!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {self.interpolation!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        return cls(
            size=int(d["size"]),
            mean=tuple(d["mean"]),  # type: ignore[arg-type]
            std=tuple(d["std"]),  # type: ignore[arg-type]
            interpolation=d.get("interpolation", "bicubic"),
            mode=d.get("mode", "clip"),
            target_ratio=float(d.get("target_ratio", 1.25)),
        )

    def with_mode(self, mode: str | None) -> PreprocessConfig:
        return self if mode is None or mode == self.mode else replace(self, mode=mode)  # type: ignore[arg-type]


def _target_pad(img: Image.Image, ratio: float) -> Image.Image:
    w, h = img.size
    if max(w, h) / min(w, h) < ratio:
        return img
    scaled = max(w, h) / ratio
    hp = max(int((scaled - w) / 2), 0)
    vp = max(int((scaled - h) / 2), 0)
    out = Image.new("RGB", (w + 2 * hp, h + 2 * vp), (0, 0, 0))
    out.paste(img, (hp, vp))
    return out


def preprocess_image(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """One RGB PIL image → float32 ``[3, size, size]``."""
    if cfg.mode == "targetpad":
        img = _target_pad(img, cfg.target_ratio)
    w, h = img.size
    s = cfg.size
    # resize the shortest side to s (torchvision's Resize(int) rounding: the long side is truncated)
    if w <= h:
        new_w, new_h = s, int(s * h / w)
    else:
        new_w, new_h = int(s * w / h), s
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _INTERPOLATIONS[cfg.interpolation])
    left = int(round((new_w - s) / 2.0))
    top = int(round((new_h - s) / 2.0))
    img = img.crop((left, top, left + s, top + s))
    x: np.ndarray = np.asarray(img, dtype=np.float32) / np.float32(255.0)  # [H, W, 3]
    x = (x - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # [3, H, W]


def preprocess_batch(images: list[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    """A list of RGB PIL images → float32 ``[N, 3, size, size]``."""
    if not images:
        return np.zeros((0, 3, cfg.size, cfg.size), dtype=np.float32)
    return np.stack([preprocess_image(im, cfg) for im in images])
