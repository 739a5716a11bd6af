"""Preprocessing parity: the numpy/Pillow path equals open_clip's eval transform and SEARLE's TargetPad pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cir_milvus.errors import ConfigError
from cir_milvus.preprocess import PreprocessConfig, preprocess_batch, preprocess_image

open_clip = pytest.importorskip("open_clip")
tvf = pytest.importorskip("torchvision.transforms.functional")

# Both paths resize PIL inputs with Pillow's bicubic filter, so they agree exactly (float32 rounding only).
TOL = 1e-5
SIZES = [(100, 60), (60, 100), (333, 257), (31, 17), (225, 224), (64, 64)]


class SearleTargetPad:
    """SEARLE's ``TargetPad`` (Baldrati et al. ICCV'23, ``src/utils.py``), re-written here as the reference."""

    def __init__(self, target_ratio: float) -> None:
        self.target_ratio = target_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if max(w, h) / min(w, h) < self.target_ratio:
            return image
        scaled_max_wh = max(w, h) / self.target_ratio
        hp = max(int((scaled_max_wh - w) / 2), 0)
        vp = max(int((scaled_max_wh - h) / 2), 0)
        return tvf.pad(image, [hp, vp, hp, vp], 0, "constant")


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("wh", SIZES)
def test_clip_mode_equals_open_clip_eval_transform(wh: tuple[int, int], size: int) -> None:
    img = _noise(*wh, seed=wh[0] * 7 + wh[1])
    expected = open_clip.image_transform(size, is_train=False)(img).numpy()
    got = preprocess_image(img, PreprocessConfig(size=size))
    assert got.dtype == np.float32
    assert got.shape == expected.shape == (3, size, size)
    assert np.abs(got - expected).max() < TOL


def test_custom_mean_std_match_open_clip() -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    img = _noise(90, 50, seed=5)
    expected = open_clip.image_transform(32, is_train=False, mean=mean, std=std)(img).numpy()
    got = preprocess_image(img, PreprocessConfig(size=32, mean=mean, std=std))
    assert np.abs(got - expected).max() < TOL


def _searle_pipeline(img: Image.Image, size: int, ratio: float) -> np.ndarray:
    padded = SearleTargetPad(ratio)(img)
    return open_clip.image_transform(size, is_train=False)(padded).numpy()  # resize, centre crop, normalise


@pytest.mark.parametrize("wh", [(100, 60), (60, 100), (200, 40), (40, 200), (150, 100), (125, 100), (124, 100), (64, 64), (90, 80)])
def test_targetpad_matches_searle(wh: tuple[int, int]) -> None:
    img = _noise(*wh, seed=wh[0] + wh[1])
    cfg = PreprocessConfig(size=64, mode="targetpad")
    expected = _searle_pipeline(img, 64, 1.25)
    got = preprocess_image(img, cfg)
    assert np.abs(got - expected).max() < TOL


@pytest.mark.parametrize(
    "wh,pads", [((124, 100), False), ((90, 80), False), ((150, 100), True), ((100, 150), True), ((200, 40), True)]
)
def test_targetpad_pads_only_when_ratio_reaches_1_25(wh: tuple[int, int], pads: bool) -> None:
    # below 1.25 targetpad is the plain CLIP transform; above it the short side gets padded (so pixels differ)
    img = _noise(*wh, seed=1)
    clip = preprocess_image(img, PreprocessConfig(size=48, mode="clip"))
    pad = preprocess_image(img, PreprocessConfig(size=48, mode="targetpad"))
    assert bool(np.abs(clip - pad).max() > 1e-3) is pads


def test_targetpad_padding_is_black_on_the_short_sides() -> None:
    # a white 200x40 strip: after padding to 1.25 the top and bottom rows are black (zero before normalising)
    img = Image.new("RGB", (200, 40), (255, 255, 255))
    cfg = PreprocessConfig(size=32, mode="targetpad")
    out = preprocess_image(img, cfg)
    black = (0.0 - np.asarray(cfg.mean)) / np.asarray(cfg.std)
    white = (1.0 - np.asarray(cfg.mean)) / np.asarray(cfg.std)
    assert np.allclose(out[:, 0, 16], black, atol=1e-4)
    assert np.allclose(out[:, 16, 16], white, atol=1e-4)


def test_batch_stacks_images_and_empty_batch_has_shape() -> None:
    cfg = PreprocessConfig(size=16)
    imgs = [_noise(20, 30, seed=i) for i in range(3)]
    batch = preprocess_batch(imgs, cfg)
    assert batch.shape == (3, 3, 16, 16)
    for i, im in enumerate(imgs):
        np.testing.assert_array_equal(batch[i], preprocess_image(im, cfg))
    assert preprocess_batch([], cfg).shape == (0, 3, 16, 16)


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="mode"):
        PreprocessConfig(mode="squash")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="interpolation"):
        PreprocessConfig(interpolation="lanczos")
    cfg = PreprocessConfig(size=96, mode="targetpad", interpolation="bilinear", target_ratio=1.5)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.with_mode(None) is cfg
    assert cfg.with_mode("clip").mode == "clip" and cfg.with_mode("clip").size == 96
