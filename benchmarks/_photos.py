"""Photo-like JPEGs for the decode and peer benchmarks (no real photo set can be downloaded here).

Source pictures: the seven colour photographs that ship inside scikit-image (``skimage.data``: astronaut, chelsea,
coffee, rocket, hubble_deep_field, immunohistochemistry, retina) when scikit-image is installed; otherwise smooth
procedural scenes. Each output image is a random crop (40-100 % of each side) of one of them, flipped at random,
colour-jittered, resized with Lanczos to a random size between 500×375 and 1024×768 (landscape or portrait), given
mild sensor noise (σ = 3 levels, so upscaled crops are not unnaturally smooth) and saved as a baseline JPEG at
quality 85-95 with 4:2:0 chroma subsampling — what cameras and phones write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def source_photos() -> tuple[list[Image.Image], str]:
    """The source pictures and a one-line description of where they come from."""
    try:
        import skimage.data as data

        return [Image.fromarray(getattr(data, n)()).convert("RGB") for n in SKIMAGE_PHOTOS], \
            "scikit-image's bundled photos (" + ", ".join(SKIMAGE_PHOTOS) + ")"
    except ImportError:
        rng = np.random.default_rng(0)
        out = []
        for _ in range(7):
            h, w = 768, 1024
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            img = np.stack([128 + 90 * np.sin(xx / rng.uniform(60, 300) + c) * np.cos(yy / rng.uniform(60, 300))
                            for c in range(3)], axis=-1)  # [H, W, 3]
            out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
        return out, "procedural gradients (install scikit-image for its real photos)"


def make_photos(folder: Path, n: int, seed: int = 0, long_side: tuple[int, int] = (500, 1024)) -> tuple[list[str], str]:
    """Write ``n`` photo-like JPEGs into ``folder`` (reused when already there). Returns (paths, description).

    ``long_side``: range of the long side in pixels (default camera-web sizes; ``(2016, 4032)`` for phone photos).
    """
    folder.mkdir(parents=True, exist_ok=True)
    srcs, desc = source_photos()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"photo{i:05d}.jpg"
        paths.append(str(path))
        src = srcs[int(rng.integers(len(srcs)))]
        fw, fh = rng.uniform(0.4, 1.0, size=2)
        w, h = src.size
        cw, ch = max(32, int(w * fw)), max(32, int(h * fh))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        long, short = int(rng.integers(long_side[0], long_side[1] + 1)), 0
        short = int(long * 0.75)
        size = (long, short) if rng.random() < 0.7 else (short, long)
        quality = int(rng.integers(85, 96))
        flip = rng.random() < 0.5
        gain = rng.uniform(0.85, 1.15, size=3)
        noise_seed = int(rng.integers(1 << 31))
        if path.exists():
            continue
        img = src.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.Resampling.LANCZOS)
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(img, dtype=np.float32) * gain  # [H, W, 3]
        arr += np.random.default_rng(noise_seed).normal(0, 3, arr.shape)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=quality, subsampling=2)
    return paths, desc
