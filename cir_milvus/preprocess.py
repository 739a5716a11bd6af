"""Image preprocessing in numpy + Pillow, shared by every backend (torch, onnxruntime) so they see the same pixels.

Three modes, matching the research code:

- ``"clip"``: open_clip's and OpenAI CLIP's eval transform (torchvision, used by Pic2Word and Slerp): with the
  default ``resize_mode="shortest"``, resize the shortest side to ``size`` (bicubic, long side truncated) and
  centre-crop ``size × size`` with a ROUNDED offset. ``resize_mode`` follows open_clip's pretrained config of the
  tag: ``"squash"`` (SigLIP, DFN, CLIPA: resize to ``size × size``, aspect ignored) or ``"longest"`` (resize the
  longest side, pad with ``fill_color``).
- ``"targetpad"``: SEARLE's transform: when the aspect ratio is at least ``target_ratio`` (1.25), zero-pad the
  short side up to that ratio first, then the CLIP transform.
- ``"hf_clip"``: Hugging Face ``CLIPImageProcessor`` (the PIL implementation LinCIR and RTD evaluate with):
  convert to RGB, resize the shortest side (same rounding), centre-crop with a FLOORED offset, so a resized side
  with ``(side - size) % 4 == 3`` lands one pixel away from ``"clip"``.

Then scale to [0, 1] and normalise with the model's mean/std.

Images decoded with ``load_image(..., mode="official")`` keep their own PIL mode; like the official transforms,
``"clip"``/``"targetpad"`` resize and crop in that mode and convert to RGB afterwards (torchvision's order), while
``"hf_clip"`` converts first (``CLIPImageProcessor``'s ``convert_rgb``). Product images are RGB already, so the
order makes no difference to them.

The work is split in two so decode workers can hand over 4× fewer bytes: :func:`preprocess_image_uint8` (geometry:
pad, resize, crop → uint8 ``[S, S, 3]``) and :func:`normalize_uint8` (uint8 ``[N, S, S, 3]`` → float32
``[N, 3, S, S]``). ``PreprocessConfig.decode`` selects how much of the full-resolution work may be skipped:

- ``"exact"``: full decode, then the resize (the reference transform).
- ``"reduce"``: Pillow's ``reducing_gap=3.0`` (integer box reduction first when the image is ≥ 3× the target).
- ``"draft"``: additionally JPEG DCT-domain scaling (``Image.draft``, 1/2, 1/4 or 1/8 while both sides stay ≥ 2× the
  target) before the resize. Only JPEGs at least four times the target are affected.

Shortcuts apply to the ``clip``/``targetpad`` modes with ``resize_mode="shortest"``; the official ``hf_clip``
geometry and the other resize modes always run exactly. The decode mode is part of the recipe (``to_dict`` writes
``"decode"`` unless it is ``"exact"``), so gallery and queries decode the same way.

Encoders built without a ``decode=`` use :func:`default_decode`: :data:`DEFAULT_DECODE` (``"reduce"``: embedding
cosine against exact ≥ 0.9999 measured, ingestion 1.35× faster on the demo model) where the shortcut applies, else
``"exact"`` (so ``hf_clip`` encoders, LinCIR and RTD, record the reference transform as before). The dataclass default
of ``PreprocessConfig.decode`` stays ``"exact"``: a bare ``PreprocessConfig`` is the reference transform, and a recipe
without a ``"decode"`` key (every collection made before the default changed) means exact. An existing collection
keeps its recorded mode whatever the encoder's (:meth:`cir_milvus.CIRCollection.open`), and the evaluation harness
and training pass ``decode="exact"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from cir_milvus.errors import ConfigError

__all__ = [
    "DECODE_MODES",
    "DEFAULT_DECODE",
    "LOADING_MODES",
    "MODES",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "RESIZE_MODES",
    "PreprocessConfig",
    "decode_shortcuts_apply",
    "decode_size",
    "default_decode",
    "recorded_decode",
    "normalize_uint8",
    "preprocess_batch",
    "preprocess_image",
    "preprocess_image_uint8",
    "resize_crop",
]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

Mode = Literal["clip", "targetpad", "hf_clip"]
MODES: tuple[str, ...] = ("clip", "targetpad", "hf_clip")
"""Preprocessing modes (see the module docstring)."""
RESIZE_MODES: tuple[str, ...] = ("shortest", "squash", "longest")
"""open_clip's ``resize_mode`` values (its pretrained config per tag)."""
LOADING_MODES: tuple[str, ...] = ("product", "official")
"""Image loading modes of :func:`cir_milvus.images.load_image` (recorded here because they change the vectors)."""
# fields written to the recipe only when they differ from these defaults, so recipes written before the fields
# existed (always these values) still compare equal
_OMIT_AT_DEFAULT = {"resize_mode": "shortest", "fill_color": 0, "loading": "product", "decode": "exact"}
DecodeMode = Literal["exact", "reduce", "draft"]
DECODE_MODES: tuple[str, ...] = ("exact", "reduce", "draft")
"""How much full-resolution decode/resize work may be skipped (see the module docstring)."""
DEFAULT_DECODE: DecodeMode = "reduce"
"""The decode mode of encoders built without ``decode=``, where the shortcut applies (:func:`default_decode`)."""
_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class PreprocessConfig:
    """How pixels are prepared for the image tower.

    Attributes:
        size: output side length.
        mean: per-channel mean (after scaling to [0, 1]).
        std: per-channel std.
        interpolation: ``"bicubic"`` (CLIP), ``"bilinear"`` or ``"nearest"``.
        mode: ``"clip"`` (resize + centre crop), ``"targetpad"`` (SEARLE) or ``"hf_clip"`` (Hugging Face
            ``CLIPImageProcessor``: floored crop offset; LinCIR, RTD).
        target_ratio: aspect ratio threshold and target of ``targetpad``.
        resize_mode: open_clip's ``resize_mode`` for ``clip``/``targetpad``: ``"shortest"`` (default),
            ``"squash"`` or ``"longest"`` (``hf_clip`` always resizes the shortest side, as the HF processor does).
        fill_color: padding value of ``resize_mode="longest"`` (open_clip's ``fill_color``).
        loading: how files are decoded before preprocessing (:func:`cir_milvus.images.load_image`):
            ``"product"`` (EXIF rotation, transparency on white) or ``"official"`` (as the research code:
            ``Image.open`` only).
        decode: ``"exact"`` (the default of this dataclass: the reference transform), ``"reduce"`` or ``"draft"``
            (see the module docstring; encoders default to :func:`default_decode`).
    """

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    mode: Mode = "clip"
    target_ratio: float = 1.25
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    resize_mode: str = "shortest"
    fill_color: int = 0
    loading: str = "product"
    decode: DecodeMode = "exact"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"preprocess mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {list(RESIZE_MODES)}, got {self.resize_mode!r}")
        if self.loading not in LOADING_MODES:
            raise ConfigError(f"image loading mode must be one of {list(LOADING_MODES)}, got {self.loading!r}")
        if self.decode not in DECODE_MODES:
            raise ConfigError(f"decode must be one of {list(DECODE_MODES)}, got {self.decode!r}")

    def to_dict(self) -> dict[str, Any]:
        """The recipe form; ``resize_mode``/``fill_color``/``loading``/``decode`` appear only when not at their
        defaults (recipes written before they existed compare equal)."""
        d = asdict(self)
        d.pop("extra")
        d["mean"], d["std"] = list(self.mean), list(self.std)
        for key, default in _OMIT_AT_DEFAULT.items():
            if d[key] == default:
                del d[key]
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
            resize_mode=d.get("resize_mode", "shortest"),
            fill_color=int(d.get("fill_color", 0)),
            loading=d.get("loading", "product"),
            decode=recorded_decode(d),
        )

    def with_mode(self, mode: str | None) -> PreprocessConfig:
        return self if mode is None or mode == self.mode else replace(self, mode=mode)  # type: ignore[arg-type]

    def with_loading(self, loading: str | None) -> PreprocessConfig:
        return self if loading is None or loading == self.loading else replace(self, loading=loading)

    def with_decode(self, decode: str | None) -> PreprocessConfig:
        return self if decode is None or decode == self.decode else replace(self, decode=decode)  # type: ignore[arg-type]


def decode_shortcuts_apply(cfg: PreprocessConfig) -> bool:
    """Whether ``cfg.decode`` can change any pixel: only the ``clip``/``targetpad`` modes with
    ``resize_mode="shortest"`` take decode shortcuts (``hf_clip`` and the other resize modes always run exactly)."""
    return cfg.mode != "hf_clip" and cfg.resize_mode == "shortest"


def recorded_decode(preprocess: Mapping[str, Any] | None) -> DecodeMode:
    """The decode mode a recipe's ``preprocess`` dict records: ``"exact"`` when it records none (``to_dict`` omits
    ``"exact"``, and every recipe written before ``reduce`` became the default has no key). The one reading of that
    rule for recipes; a bundle's ``preprocess.json`` without the key follows :func:`default_decode` instead (see
    :func:`cir_milvus.encoders.ort.bundle_preprocess`)."""
    return (preprocess or {}).get("decode") or "exact"  # type: ignore[no-any-return]


def default_decode(cfg: PreprocessConfig, decode: str | None = None) -> DecodeMode:
    """The decode mode an encoder uses for ``cfg`` when asked for ``decode`` (``None``: the library default).

    The one place the default is decided: :data:`DEFAULT_DECODE` where the shortcut applies
    (:func:`decode_shortcuts_apply`), else ``"exact"``, so an ``hf_clip`` encoder (LinCIR, RTD) records the same
    recipe as before the default changed. An explicit mode is returned as given.

    Args:
        cfg: the encoder's preprocessing (its ``decode`` field is not read).
        decode: ``"exact"``, ``"reduce"``, ``"draft"`` or ``None``.

    Raises:
        ConfigError: ``decode`` is not one of :data:`DECODE_MODES`.

    Example:
        >>> default_decode(PreprocessConfig(mode="clip")), default_decode(PreprocessConfig(mode="hf_clip"))
        ('reduce', 'exact')
        >>> default_decode(PreprocessConfig(), "exact")
        'exact'
    """
    if decode is None:
        return DEFAULT_DECODE if decode_shortcuts_apply(cfg) else "exact"
    if decode not in DECODE_MODES:
        raise ConfigError(f"decode must be one of {list(DECODE_MODES)} (or None for the default), got {decode!r}")
    return decode  # type: ignore[return-value]


def _pad_fill(img: Image.Image, value: int) -> int | tuple[int, ...]:
    bands = len(img.getbands())
    return value if bands == 1 else (value,) * bands


def _target_pad(img: Image.Image, ratio: float) -> Image.Image:
    """SEARLE's TargetPad on an image of any PIL mode (torchvision ``F.pad(img, [hp, vp, hp, vp], 0)`` semantics:
    zeros in the image's own mode; palette images keep their palette and pad with index 0)."""
    w, h = img.size
    if max(w, h) / min(w, h) < ratio:
        return img
    scaled = max(w, h) / ratio
    hp = max(int((scaled - w) / 2), 0)
    vp = max(int((scaled - h) / 2), 0)
    palette = img.getpalette() if img.mode == "P" else None
    out = ImageOps.expand(img, border=(hp, vp, hp, vp), fill=_pad_fill(img, 0))
    if palette is not None:
        out.putpalette(palette)
    return out


def _plain_rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _resize_open_clip(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """open_clip's eval geometry for ``resize_mode`` squash / longest (shortest is the fast path below)."""
    s = cfg.size
    resample = _INTERPOLATIONS[cfg.interpolation]
    if cfg.resize_mode == "squash":  # torchvision Resize((s, s))
        return img.resize((s, s), resample)
    # longest: open_clip ResizeKeepRatio(longest=1) then CenterCropOrPad(fill=fill_color)
    w, h = img.size
    ratio = max(h / s, w / s)
    new_h, new_w = round(h / ratio), round(w / ratio)
    img = img.resize((new_w, new_h), resample)
    if new_w < s or new_h < s:
        left, top = max((s - new_w) // 2, 0), max((s - new_h) // 2, 0)
        right, bottom = max((s - new_w + 1) // 2, 0), max((s - new_h + 1) // 2, 0)
        palette = img.getpalette() if img.mode == "P" else None
        img = ImageOps.expand(img, border=(left, top, right, bottom), fill=_pad_fill(img, cfg.fill_color))
        if palette is not None:
            img.putpalette(palette)
        new_w, new_h = img.size
    if (new_w, new_h) == (s, s):
        return img
    left, top = int(round((new_w - s) / 2.0)), int(round((new_h - s) / 2.0))
    return img.crop((left, top, left + s, top + s))


def _resize_crop_hf(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Hugging Face ``CLIPImageProcessor`` geometry: RGB first, shortest side to ``size`` (torchvision's rounding:
    ``int(size * long / short)``), Pillow resize, centre crop with FLOORED offsets ``(side - size) // 2``."""
    img = _plain_rgb(img)
    w, h = img.size
    s = cfg.size
    new_w, new_h = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _INTERPOLATIONS[cfg.interpolation])
    left, top = (new_w - s) // 2, (new_h - s) // 2
    return img.crop((left, top, left + s, top + s))


def resize_crop(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """The geometric part of :func:`preprocess_image`: any PIL image → RGB ``size × size`` PIL image.

    Args:
        img: a PIL image; RGB from ``load_image(mode="product")``, any mode from ``mode="official"``.
        cfg: the preprocessing config (``mode``, ``resize_mode``, ``interpolation``...).

    Returns:
        The RGB image the normalisation step turns into the tower's input.
    """
    if cfg.mode == "hf_clip":
        return _resize_crop_hf(img, cfg)
    if cfg.mode == "targetpad":
        img = _target_pad(img, cfg.target_ratio)
    if cfg.resize_mode != "shortest":
        return _plain_rgb(_resize_open_clip(img, cfg))
    return _plain_rgb(_resize_crop_shortest(img, cfg))


def _resize_crop_shortest(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """torchvision ``Resize(size)`` + ``CenterCrop(size)`` (open_clip ``resize_mode="shortest"``)."""
    w, h = img.size
    s = cfg.size
    # resize the shortest side to s (torchvision's Resize(int) rounding: the long side is truncated)
    if w <= h:
        new_w, new_h = s, int(s * h / w)
    else:
        new_w, new_h = int(s * w / h), s
    left = int(round((new_w - s) / 2.0))
    top = int(round((new_h - s) / 2.0))
    if (new_w, new_h) != (w, h) and cfg.decode != "exact":
        # the crop is done by the resize itself (box=: only the kept region is resampled, same sampling grid and
        # filter support; pixels differ by at most one level from coefficient rounding) and reducing_gap applies
        sx, sy = w / new_w, h / new_h  # source pixels per resized pixel
        box = (left * sx, top * sy, (left + s) * sx, (top + s) * sy)
        return img.resize((s, s), _INTERPOLATIONS[cfg.interpolation], box=box, reducing_gap=_REDUCING_GAP)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _INTERPOLATIONS[cfg.interpolation])
    return img.crop((left, top, left + s, top + s))


def decode_size(cfg: PreprocessConfig) -> tuple[int, int] | None:
    """The size to ask a JPEG decoder for (``Image.draft``), or ``None`` to decode at full resolution.

    Both sides of a drafted image stay at least ``2 × size``, so the resize that follows still reduces the short
    side (or, with ``targetpad``, the padded short side, which is longer) by at least 2× with its own filter: the
    DCT scaling never upsamples, and measured on photo-like JPEGs with the demo model (64 px) a 2× margin keeps the
    embedding at min cosine 0.997 (median 0.9999) against the exact path where a 1× margin gave 0.980. Only the
    ``clip``/``targetpad`` modes with ``resize_mode="shortest"`` take shortcuts.
    """
    if cfg.decode != "draft" or not decode_shortcuts_apply(cfg):
        return None
    return (2 * cfg.size, 2 * cfg.size)


def preprocess_image_uint8(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """One PIL image (RGB, or any mode when loaded with ``mode="official"``) → uint8 ``[size, size, 3]``."""
    return np.asarray(resize_crop(img, cfg), dtype=np.uint8)  # [S, S, 3]


def normalize_uint8(pixels: np.ndarray, cfg: PreprocessConfig, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[N, S, S, 3]`` → float32 ``[N, 3, S, S]`` scaled to [0, 1] and normalised (one pass per channel).

    Args:
        pixels: uint8 ``[N, S, S, 3]``.
        cfg: supplies mean and std.
        out: optional float32 ``[N, 3, S, S]`` to write into.
    """
    n, hh, ww, c = pixels.shape
    if out is None:
        out = np.empty((n, c, hh, ww), dtype=np.float32)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    for k in range(c):  # (x / 255 - mean) / std, in float32 as torchvision's ToTensor + Normalize
        np.divide(pixels[..., k], np.float32(255.0), out=out[:, k], casting="unsafe")  # [N, S, S]
        out[:, k] -= mean[k]
        out[:, k] /= std[k]
    return out


def preprocess_image(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """One PIL image (RGB, or any mode when loaded with ``mode="official"``) → float32 ``[3, size, size]``."""
    return normalize_uint8(preprocess_image_uint8(img, cfg)[None], cfg)[0]


def preprocess_batch(images: list[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    """A list of PIL images → float32 ``[N, 3, size, size]``."""
    if not images:
        return np.zeros((0, 3, cfg.size, cfg.size), dtype=np.float32)
    return normalize_uint8(np.stack([preprocess_image_uint8(im, cfg) for im in images]), cfg)
