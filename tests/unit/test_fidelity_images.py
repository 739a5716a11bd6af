"""Image loading per mode: ``product`` (EXIF rotation, transparency on white) vs ``official`` (the research code's
``PIL.Image.open(path)`` handed to its transform, which converts to RGB after resize/crop in torchvision's order, or
first in Hugging Face's ``CLIPImageProcessor``; as LinCIR ran it, that conversion was a plain ``convert("RGB")``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cir_milvus.errors import ConfigError, RecipeMismatchError
from cir_milvus.images import load_image
from cir_milvus.preprocess import OPENAI_MEAN, OPENAI_STD, PreprocessConfig, preprocess_image
from cir_milvus.storage.recipe import Recipe, check_compatible

tv = pytest.importorskip("torchvision.transforms")
tvf = pytest.importorskip("torchvision.transforms.functional")

SIZE = 64


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Palette+transparency, RGBA, LA PNGs, an EXIF-rotated JPEG and a CMYK JPEG (odd sizes: odd crop offsets)."""
    out: dict[str, Path] = {}
    pal = Image.fromarray(_rng(0).integers(0, 16, size=(97, 70), dtype=np.uint8), mode="P")
    pal.putpalette(list(_rng(1).integers(0, 256, size=16 * 3, dtype=np.uint8)) + [0] * (256 - 16) * 3)
    out["palette"] = tmp_path / "palette.png"
    pal.save(out["palette"], transparency=3)
    rgba = _rng(2).integers(0, 256, size=(61, 90, 4), dtype=np.uint8)
    rgba[:20, :, 3] = 0  # fully transparent band: colour kept by "official", white in "product"
    out["rgba"] = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(out["rgba"])
    la = _rng(3).integers(0, 256, size=(80, 67, 2), dtype=np.uint8)
    out["la"] = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(out["la"])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    out["exif"] = tmp_path / "exif.jpg"
    Image.fromarray(_rng(4).integers(0, 256, size=(59, 100, 3), dtype=np.uint8)).save(
        out["exif"], format="JPEG", exif=exif.tobytes(), quality=95)
    out["cmyk"] = tmp_path / "cmyk.jpg"
    Image.fromarray(_rng(5).integers(0, 256, size=(75, 66, 4), dtype=np.uint8), mode="CMYK").save(out["cmyk"])
    return out


def _official_tv(img: Image.Image, pad: bool) -> np.ndarray:
    """SEARLE / OpenAI CLIP transform on the file as opened: [TargetPad], Resize, CenterCrop, RGB, tensor."""
    if pad:
        w, h = img.size
        if max(w, h) / min(w, h) >= 1.25:
            scaled = max(w, h) / 1.25
            hp, vp = max(int((scaled - w) / 2), 0), max(int((scaled - h) / 2), 0)
            img = tvf.pad(img, [hp, vp, hp, vp], 0, "constant")
    img = tv.CenterCrop(SIZE)(tv.Resize(SIZE, interpolation=tv.InterpolationMode.BICUBIC)(img)).convert("RGB")
    return tv.Normalize(OPENAI_MEAN, OPENAI_STD)(tv.ToTensor()(img)).numpy()


def _official_hf(img: Image.Image) -> np.ndarray:
    transformers = pytest.importorskip("transformers")
    proc = transformers.CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    # LinCIR-era CLIPImageProcessor converted with a plain convert("RGB"); today's composites transparency (also a
    # palette image's "transparency" colour that convert() leaves in .info), so hand it the RGB pixels as an array
    return proc(images=np.asarray(img.convert("RGB")), return_tensors="np")["pixel_values"][0]


@pytest.mark.parametrize("kind", ["palette", "rgba", "la", "exif", "cmyk"])
def test_official_loading_is_image_open(files: dict[str, Path], kind: str) -> None:
    with Image.open(files[kind]) as ref:
        ref.load()
        got = load_image(files[kind], mode="official")
        assert (got.mode, got.size) == (ref.mode, ref.size)  # no EXIF rotation, no conversion
        assert np.array_equal(np.asarray(got), np.asarray(ref))


@pytest.mark.parametrize("mode", ["clip", "targetpad", "hf_clip"])
@pytest.mark.parametrize("kind", ["palette", "rgba", "la", "exif", "cmyk"])
def test_official_loading_then_each_mode_equals_the_official_pipeline(files: dict[str, Path], kind: str,
                                                                      mode: str) -> None:
    cfg = PreprocessConfig(size=SIZE, mode=mode, loading="official")
    got = preprocess_image(load_image(files[kind], mode="official"), cfg)
    with Image.open(files[kind]) as raw:
        want = _official_hf(raw) if mode == "hf_clip" else _official_tv(raw, pad=mode == "targetpad")
    np.testing.assert_allclose(got, want, atol=1e-5)
    product = preprocess_image(load_image(files[kind]), cfg)
    if kind in ("rgba", "exif", "la", "palette"):  # the modes really differ on these files
        assert np.abs(product - want).max() > 0.1


def test_product_loading_rotates_and_composites(files: dict[str, Path]) -> None:
    rot = load_image(files["exif"])
    assert rot.mode == "RGB" and rot.size == (59, 100)  # stored 100x59, displayed rotated
    rgba = np.asarray(load_image(files["rgba"]))
    assert (rgba[:20] == 255).all()  # fully transparent → white
    assert (np.asarray(load_image(files["rgba"], mode="official"))[:20, :, :3] != 255).any()
    with pytest.raises(ConfigError, match="official"):
        load_image(files["rgba"], mode="exif")


def test_encoder_records_and_uses_its_loading_mode(files: dict[str, Path]) -> None:
    pytest.importorskip("open_clip")
    from cir_milvus.encoders.torch import TorchEncoder

    enc = TorchEncoder("cir-demo-tiny", None, device="cpu", image_loading="official")
    assert enc.recipe["preprocess"]["loading"] == "official"
    cfg = enc.preprocess_config
    want = preprocess_image(load_image(files["exif"], mode="official"), cfg)
    np.testing.assert_array_equal(enc.pixels([files["exif"]])[0], want)
    stored = Recipe(encoder={**enc.recipe, "preprocess": {**enc.recipe["preprocess"]}})
    product = {**enc.recipe, "preprocess": {k: v for k, v in enc.recipe["preprocess"].items() if k != "loading"}}
    with pytest.raises(RecipeMismatchError, match="preprocess"):
        check_compatible("c", stored, product)
