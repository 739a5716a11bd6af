"""Miniature copies of CIRR, FashionIQ and CIRCO in their official layouts, for offline tests.

:func:`make_miniature` writes a few solid-colour 8×8 images (some ``.png``, some ``.jpg``) and the annotation
JSON files exactly where the loaders of :mod:`cir_milvus.eval.datasets` expect them. Each image has one colour
from :data:`MINIATURE_COLOURS`; every caption names the colour of the query's target, so a model that can read
colours can solve the queries. Everything is deterministic for a given ``seed``.

What gets written (ids are those the loaders expose):

* ``"cirr"``: splits ``val`` (images in ``root/dev/``) and ``test1`` (``root/test1/``). Each has 12 images in two
  ``img_set``\\ s of 6 and 4 queries; reference and target lie in the same set. Every third image is stored as
  ``.jpg`` while the split file says ``.png`` (the loader falls back on the stem). ``test1`` has no ``target_hard``.
* ``"fashioniq"``: categories ``dress``, ``shirt``, ``toptee``; splits ``val`` (with targets) and ``test``
  (without). 8 images and 3 queries per category and split; every other image is ``.jpg``.
* ``"circo"``: 16 COCO-style images (``{id:012d}.jpg``; two are stored as ``.png``). ``val`` has 3 queries with
  1, 3 and 7 ground truths; ``test`` has 2 queries without ground truths. Query ids run from 0.

Example:
    >>> import tempfile
    >>> from cir_milvus.eval.datasets import CIRCODataset
    >>> root = make_miniature("circo", tempfile.mkdtemp(), seed=0)
    >>> ds = CIRCODataset(root, "val")
    >>> [len(q.target_ids) for q in ds.queries()], len(ds.corpus())
    ([1, 3, 7], 16)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from cir_milvus.errors import ConfigError

__all__ = ["MINIATURE_COLOURS", "MINIATURE_KINDS", "make_miniature"]

MiniatureKind = Literal["cirr", "fashioniq", "circo"]
MINIATURE_KINDS: tuple[str, ...] = ("cirr", "fashioniq", "circo")
MINIATURE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 190),
    "orange": (245, 135, 25),
    "white": (240, 240, 240),
    "black": (15, 15, 15),
}
_SIZE = 8


def _write_image(path: Path, colour: str, rng: np.random.Generator) -> None:
    """An 8×8 image of one colour with light noise; the format follows the suffix."""
    base = np.array(MINIATURE_COLOURS[colour], dtype=np.int16)
    noise = rng.integers(-6, 7, size=(_SIZE, _SIZE, 3), dtype=np.int16)
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)  # [8, 8, 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def _colours(rng: np.random.Generator, n: int) -> list[str]:
    names = list(MINIATURE_COLOURS)
    return [names[int(i)] for i in rng.integers(0, len(names), size=n)]


def _make_cirr(root: Path, rng: np.random.Generator) -> None:
    pairid = 100
    for split, folder in (("val", "dev"), ("test1", "test1")):
        names = [f"{folder}-{i}-0-img{i % 2}" for i in range(12)]
        colours = _colours(rng, len(names))
        relpaths: dict[str, str] = {}
        for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
            relpaths[name] = f"./{folder}/{name}.png"
            stored = ".jpg" if i % 3 == 2 else ".png"
            _write_image(root / folder / f"{name}{stored}", colour, rng)
        sets = [names[:6], names[6:]]
        pairs: list[dict[str, Any]] = []
        for j in range(4):
            set_id = j % 2
            members = sets[set_id]
            ref_pos, tgt_pos = (int(x) for x in rng.choice(len(members), size=2, replace=False))
            reference, target = members[ref_pos], members[tgt_pos]
            record: dict[str, Any] = {
                "pairid": pairid,
                "reference": reference,
                "caption": f"make it {colours[names.index(target)]}",
                "img_set": {"id": set_id, "members": list(members), "reference_rank": ref_pos},
            }
            if split != "test1":
                record["target_hard"] = target
                record["target_soft"] = {target: 1.0}
            pairs.append(record)
            pairid += 1
        _write_json(root / "cirr" / "captions" / f"cap.rc2.{split}.json", pairs)
        _write_json(root / "cirr" / "image_splits" / f"split.rc2.{split}.json", relpaths)


def _make_fashioniq(root: Path, rng: np.random.Generator) -> None:
    for c_index, category in enumerate(("dress", "shirt", "toptee")):
        for s_index, split in enumerate(("val", "test")):
            names = [f"B{c_index}{s_index}{i:07d}" for i in range(8)]
            colours = _colours(rng, len(names))
            for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
                _write_image(root / "images" / f"{name}{'.jpg' if i % 2 else '.png'}", colour, rng)
            triplets: list[dict[str, Any]] = []
            for _ in range(3):
                ref_pos, tgt_pos = (int(x) for x in rng.choice(len(names), size=2, replace=False))
                colour = colours[tgt_pos]
                record: dict[str, Any] = {"candidate": names[ref_pos],
                                          "captions": [f"is {colour}", f"is more {colour} and plain"]}
                if split != "test":
                    record["target"] = names[tgt_pos]
                triplets.append(record)
            _write_json(root / "captions" / f"cap.{category}.{split}.json", triplets)
            _write_json(root / "image_splits" / f"split.{category}.{split}.json", names)


def _make_circo(root: Path, rng: np.random.Generator) -> None:
    ids = sorted(int(x) for x in rng.choice(np.arange(1000, 600000), size=16, replace=False))
    colours = _colours(rng, len(ids))
    images = [{"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": _SIZE, "height": _SIZE} for img_id in ids]
    folder = root / "COCO2017_unlabeled" / "unlabeled2017"
    for i, (img_id, colour) in enumerate(zip(ids, colours, strict=True)):
        _write_image(folder / f"{img_id:012d}{'.png' if i in (3, 11) else '.jpg'}", colour, rng)
    _write_json(root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
                {"info": {"description": "miniature COCO 2017 unlabeled"}, "images": images})
    val: list[dict[str, Any]] = []
    for qid, n_gt in enumerate((1, 3, 7)):
        picks = [int(x) for x in rng.choice(len(ids), size=n_gt + 1, replace=False)]
        reference, gts = ids[picks[0]], [ids[p] for p in picks[1:]]
        val.append({"id": qid, "reference_img_id": reference, "target_img_id": gts[0],
                    "relative_caption": f"is {colours[picks[1]]}", "shared_concept": "a square",
                    "gt_img_ids": gts})
    test: list[dict[str, Any]] = []
    for qid in range(2):
        ref = int(rng.integers(0, len(ids)))
        test.append({"id": qid, "reference_img_id": ids[ref], "relative_caption": f"is {colours[ref]}",
                     "shared_concept": "a square"})
    _write_json(root / "annotations" / "val.json", val)
    _write_json(root / "annotations" / "test.json", test)


def make_miniature(kind: MiniatureKind, root: str | Path, seed: int = 0) -> Path:
    """Write a miniature data set in the official layout of ``kind`` under ``root``.

    Args:
        kind: ``"cirr"``, ``"fashioniq"`` or ``"circo"``.
        root: output folder (created if needed); pass it as ``root`` to the matching loader.
        seed: seed for colours, pairings and pixel noise.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: unknown ``kind``.
    """
    builders = {"cirr": _make_cirr, "fashioniq": _make_fashioniq, "circo": _make_circo}
    if kind not in builders:
        raise ConfigError(f"kind must be one of {list(MINIATURE_KINDS)}, got {kind!r}")
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    builders[kind](out, np.random.default_rng(seed))
    return out
