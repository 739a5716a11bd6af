"""Each preprocessing mode is pixel-exact against the official transform it stands for.

- ``clip``: OpenAI CLIP's / open_clip's eval transform, written here from torchvision primitives
  (``Resize(size, BICUBIC)``, ``CenterCrop(size)``, RGB, ``ToTensor``, ``Normalize``).
- ``targetpad``: SEARLE's ``TargetPad`` (re-written from its semantics) followed by the same transform.
- ``hf_clip``: Hugging Face's ``CLIPImageProcessor`` as LinCIR ran it: the PIL implementation, which transformers 5
  names ``CLIPImageProcessorPil`` (its plain ``CLIPImageProcessor`` is now torchvision-tensor based).

The geometric part is compared as uint8 arrays (exact); the normalised floats to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cir_milvus.preprocess import OPENAI_MEAN, OPENAI_STD, PreprocessConfig, preprocess_image, resize_crop

tv = pytest.importorskip("torchvision.transforms")
tvf = pytest.importorskip("torchvision.transforms.functional")

# (w, h) incl. resized long sides with (side - 224) % 4 == 3, where a rounded and a floored crop offset differ
SIZES = [(224, 227), (227, 224), (224, 231), (300, 403), (640, 427), (427, 640), (500, 333), (333, 500), (225, 224),
         (224, 224), (50, 61), (61, 50), (1000, 1003), (801, 600), (97, 250), (31, 17)]


def _noise(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _clip_geometry(img: Image.Image, size: int) -> Image.Image:
    """OpenAI CLIP ``_transform`` up to the tensor conversion: Resize, CenterCrop, then convert to RGB."""
    img = tv.Resize(size, interpolation=tv.InterpolationMode.BICUBIC)(img)
    return tv.CenterCrop(size)(img).convert("RGB")


def _to_tensor_normalised(img: Image.Image) -> np.ndarray:
    return tv.Normalize(OPENAI_MEAN, OPENAI_STD)(tv.ToTensor()(img)).numpy()


class TargetPad:
    """SEARLE's TargetPad (Baldrati et al.): pad the short side with zeros up to ``target_ratio`` when the image is
    at least that elongated (pad amounts truncated, the same on both sides)."""

    def __init__(self, target_ratio: float) -> None:
        self.target_ratio = target_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if max(w, h) / min(w, h) < self.target_ratio:
            return image
        scaled = max(w, h) / self.target_ratio
        hp, vp = max(int((scaled - w) / 2), 0), max(int((scaled - h) / 2), 0)
        return tvf.pad(image, [hp, vp, hp, vp], 0, "constant")


@pytest.mark.parametrize("size", [224, 64])
def test_clip_mode_is_torchvision_exact(size: int) -> None:
    cfg = PreprocessConfig(size=size, mode="clip")
    for i, (w, h) in enumerate(SIZES):
        img = _noise(w, h, seed=i)
        want = _clip_geometry(img, size)
        assert np.array_equal(np.asarray(resize_crop(img, cfg)), np.asarray(want)), (w, h)
        np.testing.assert_allclose(preprocess_image(img, cfg), _to_tensor_normalised(want), atol=1e-6)


@pytest.mark.parametrize("size", [224, 64])
def test_targetpad_mode_is_searle_exact(size: int) -> None:
    cfg = PreprocessConfig(size=size, mode="targetpad")
    for i, (w, h) in enumerate(SIZES):
        img = _noise(w, h, seed=100 + i)
        want = _clip_geometry(TargetPad(1.25)(img), size)
        assert np.array_equal(np.asarray(resize_crop(img, cfg)), np.asarray(want)), (w, h)
        np.testing.assert_allclose(preprocess_image(img, cfg), _to_tensor_normalised(want), atol=1e-6)


def _hf(size: int, **kw: object):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    return transformers.CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                              **kw)


@pytest.mark.parametrize("size", [224, 64])
def test_hf_clip_mode_is_clip_image_processor_exact(size: int) -> None:
    geometry = _hf(size, do_rescale=False, do_normalize=False)
    full = _hf(size)
    cfg = PreprocessConfig(size=size, mode="hf_clip")
    shifted = 0
    for i, (w, h) in enumerate(SIZES):
        img = _noise(w, h, seed=200 + i)
        want = geometry(images=img, return_tensors="np")["pixel_values"][0]  # [3, S, S] uint8
        got = np.asarray(resize_crop(img, cfg)).transpose(2, 0, 1)
        assert np.array_equal(got, want), (w, h)
        np.testing.assert_allclose(preprocess_image(img, cfg), full(images=img, return_tensors="np")["pixel_values"][0],
                                   atol=1e-5)
        shifted += not np.array_equal(np.asarray(resize_crop(img, PreprocessConfig(size=size))), got.transpose(1, 2, 0))
    if size == 224:
        assert shifted >= 3  # (224, 227), (227, 224), (224, 231): the floored offset is one pixel off "clip"'s


def test_recipe_dict_keeps_old_recipes_equal_and_records_new_fields() -> None:
    old = {"size": 224, "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD), "interpolation": "bicubic",
           "mode": "clip", "target_ratio": 1.25}
    assert PreprocessConfig().to_dict() == old  # collections written before the new fields still match
    new = PreprocessConfig(mode="hf_clip", resize_mode="squash", loading="official").to_dict()
    assert (new["mode"], new["resize_mode"], new["loading"]) == ("hf_clip", "squash", "official")
    assert PreprocessConfig.from_dict(new) == PreprocessConfig(mode="hf_clip", resize_mode="squash", loading="official")
