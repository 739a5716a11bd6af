"""The synthetic world: a deterministic, offline stand-in for a composed-retrieval data set.

Every image shows one object with four attributes — shape, colour, size and background — drawn with jitter in
position, rotation, colour and pixel noise. Captions mention random subsets of the attributes (as web captions
do), and composed-retrieval triplets change one or two attributes with modification texts whose phrasing
("make it blue", "turn it into a star") never appears in a training caption, so composition stays zero-shot.

Only numpy and Pillow are needed here.

Example:
    >>> world = SyntheticWorld(seed=0)
    >>> len(world.gallery())
    1024
    >>> q = world.triplets(4, seed=1)[0]
    >>> q.reference_id in {item.id for item in world.gallery()}
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "hexagon", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (35, 70, 220),
    "yellow": (240, 215, 40),
    "purple": (135, 50, 185),
    "orange": (245, 135, 25),
    "pink": (250, 125, 195),
    "cyan": (45, 210, 215),
}
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (18, 18, 18),
    "white": (238, 238, 238),
    "gray": (125, 125, 125),
    "brown": (105, 70, 40),
}
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "background")
IMAGE_SIZE = 64


@dataclass(frozen=True)
class Attributes:
    """One combination of the four attributes."""

    shape: str
    colour: str
    size: str
    background: str

    def describe(self) -> str:
        """The full caption, e.g. ``"a small red star on a black background"``."""
        return f"a {self.size} {self.colour} {self.shape} on a {self.background} background"


@dataclass(frozen=True)
class GalleryItem:
    """One stored image of the world: its id, attributes and the seed that renders it."""

    id: str
    attributes: Attributes
    seed: int

    def render(self, size: int = IMAGE_SIZE) -> Image.Image:
        """Draw the image (deterministic for a given seed)."""
        return render(self.attributes, np.random.default_rng(self.seed), size=size)


@dataclass(frozen=True)
class Triplet:
    """A composed-retrieval query: reference image, modification text, and the ids that count as hits."""

    reference_id: str
    text: str
    target: Attributes
    target_ids: tuple[str, ...]
    changed: tuple[str, ...]


def all_combinations() -> list[Attributes]:
    """Every attribute combination (8 × 8 × 2 × 4 = 512)."""
    return [Attributes(*c) for c in itertools.product(SHAPES, COLOURS, SIZES, BACKGROUNDS)]


def random_attributes(rng: np.random.Generator) -> Attributes:
    return Attributes(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=list(COLOURS)[rng.integers(len(COLOURS))],
        size=SIZES[rng.integers(len(SIZES))],
        background=list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))],
    )


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _shape_outline(shape: str) -> np.ndarray:
    """Polygon of a shape in unit coordinates (radius ≈ 1), as an [N, 2] array."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "square":
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if shape == "triangle":
        t = np.array([-90, 30, 150]) * math.pi / 180
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if shape == "cross":
        a, b = 0.3, 0.9
        return np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]
        )
    if shape == "heart":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y], axis=1) / 16.0
    if shape == "hexagon":
        t = np.arange(6) * math.pi / 3
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "diamond":
        return np.array([[0.0, -1.0], [0.6, 0.0], [0.0, 1.0], [-0.6, 0.0]])
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def render(attrs: Attributes, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw one object with jittered position, rotation, colour and pixel noise.

    Args:
        attrs: what to draw.
        rng: the random source of the jitter (seed it for determinism).
        size: output side length in pixels.

    Returns:
        An RGB PIL image of ``size × size``.
    """
    scale = 4  # draw at 4x and downsample for anti-aliased edges
    big = size * scale
    bg = np.array(BACKGROUNDS[attrs.background], dtype=np.float64) + rng.normal(0, 6, 3)
    fg = np.array(COLOURS[attrs.colour], dtype=np.float64) + rng.normal(0, 10, 3)
    img = Image.new("RGB", (big, big), tuple(int(v) for v in np.clip(bg, 0, 255)))
    radius = (0.17 if attrs.size == "small" else 0.34) * big * rng.uniform(0.9, 1.1)
    margin = radius * 1.05
    cx, cy = rng.uniform(margin, big - margin, 2)
    theta = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pts = _shape_outline(attrs.shape) @ rot.T * radius + np.array([cx, cy])  # [N, 2]
    ImageDraw.Draw(img).polygon([tuple(p) for p in pts], fill=tuple(int(v) for v in np.clip(fg, 0, 255)))
    img = img.resize((size, size), Image.Resampling.BOX)
    arr = np.asarray(img, dtype=np.float64) + rng.normal(0, 5, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


# ---------------------------------------------------------------------------------------------------------------
# Captions (training) and modification texts (queries). The two vocabularies of framing words are disjoint.

_FULL_TEMPLATES = (
    "a {size} {colour} {shape} on a {background} background",
    "a photo of a {size} {colour} {shape} on {background}",
    "{size} {colour} {shape}, {background} background",
    "a {colour} {shape}, {size}, on a {background} background",
)
_NOUNS = ("object", "shape", "thing")


def caption(attrs: Attributes, rng: np.random.Generator, p_full: float = 0.4, p_shape: float | None = None) -> str:
    """A training caption that names all attributes (probability ``p_full``) or a random subset of 1-3."""
    return caption_with_mentions(attrs, rng, p_full, p_shape)[0]


def caption_with_mentions(
    attrs: Attributes, rng: np.random.Generator, p_full: float = 0.4, p_shape: float | None = None
) -> tuple[str, frozenset[str]]:
    """A training caption and the set of attributes it names.

    Args:
        attrs: the image's attributes.
        rng: random source.
        p_full: probability of naming all four attributes.
        p_shape: probability that a partial caption names the shape (default: uniform subsets).
    """
    if rng.random() < p_full:
        return _FULL_TEMPLATES[rng.integers(len(_FULL_TEMPLATES))].format(**attrs.__dict__), frozenset(ATTRIBUTES)
    k = int(rng.integers(1, 4))
    if p_shape is None:
        keep = set(rng.choice(ATTRIBUTES, size=k, replace=False).tolist())
    else:
        keep = {"shape"} if rng.random() < p_shape else set()
        others = [a for a in ATTRIBUTES if a != "shape"]
        keep |= set(rng.choice(others, size=max(0, k - len(keep)), replace=False).tolist())
        if not keep:
            keep = {others[rng.integers(len(others))]}
    words = []
    if "size" in keep:
        words.append(attrs.size)
    if "colour" in keep:
        words.append(attrs.colour)
    words.append(attrs.shape if "shape" in keep else _NOUNS[rng.integers(len(_NOUNS))])
    text = " ".join(words)
    text = ("a photo of a " if rng.random() < 0.3 else "a ") + text
    if "background" in keep:
        text += f" on a {attrs.background} background" if rng.random() < 0.5 else f" on {attrs.background}"
    return text, frozenset(keep)


def compatible(attrs: Sequence[Attributes], mentions: Sequence[tuple[Attributes, frozenset[str]]]) -> np.ndarray:
    """``M[i, j] = 1`` when caption j (of image ``mentions[j][0]``, naming ``mentions[j][1]``) truly describes
    image i — the in-batch positives of a multi-positive contrastive loss. ``[N, N]`` float32."""
    out = np.zeros((len(attrs), len(mentions)), dtype=np.float32)
    for j, (src, named) in enumerate(mentions):
        for i, a in enumerate(attrs):
            out[i, j] = all(getattr(a, n) == getattr(src, n) for n in named)
    return out


_EDIT_PHRASES: dict[str, tuple[str, ...]] = {
    "colour": ("make it {v}", "change the colour to {v}", "now in {v}", "recolour it {v}", "the same but {v}"),
    "shape": ("turn it into a {v}", "make it a {v} instead", "change the shape to a {v}", "as a {v}"),
    "size": ("make it {v}", "change it to {v}", "the same but {v}", "resize it to {v}"),
    "background": ("put it on a {v} background", "change the background to {v}", "swap the backdrop for {v}"),
}
_SAME_PHRASES: dict[str, str] = {
    "colour": "the same colour",
    "shape": "the same shape",
    "size": "the same size",
    "background": "the same background",
}
_BUT_PHRASES: dict[str, str] = {
    "colour": "{v}",
    "shape": "a {v}",
    "size": "{v}",
    "background": "on a {v} background",
}


def edit_text(changes: dict[str, str], rng: np.random.Generator) -> str:
    """A modification text for one or two attribute changes, with paraphrases unseen in training captions."""
    names = list(changes)
    if len(names) == 1:
        (a,) = names
        phrases = _EDIT_PHRASES[a]
        return phrases[rng.integers(len(phrases))].format(v=changes[a])
    if rng.random() < 0.5:
        kept = [a for a in ATTRIBUTES if a not in changes]
        same = _SAME_PHRASES[kept[rng.integers(len(kept))]]
        parts = " ".join(_BUT_PHRASES[a].format(v=changes[a]) for a in names)
        return f"{same} but {parts}"
    first, second = (_EDIT_PHRASES[a][rng.integers(len(_EDIT_PHRASES[a]))].format(v=changes[a]) for a in names)
    return f"{first} and {second}"


# ---------------------------------------------------------------------------------------------------------------
# The world


class SyntheticWorld:
    """A seeded gallery (``instances`` renders of every attribute combination) plus triplet and caption samplers.

    Args:
        seed: gallery seed; the same seed gives the same ids, attributes and pixels.
        instances: images per attribute combination (2 → 1,024 images).
        image_size: side length of the rendered images.
    """

    def __init__(self, seed: int = 0, instances: int = 2, image_size: int = IMAGE_SIZE) -> None:
        self.seed = seed
        self.instances = instances
        self.image_size = image_size

    @cached_property
    def _gallery(self) -> list[GalleryItem]:
        items = []
        for i, (attrs, _k) in enumerate(itertools.product(all_combinations(), range(self.instances))):
            items.append(GalleryItem(id=f"syn-{self.seed}-{i:05d}", attributes=attrs, seed=self.seed * 1_000_003 + i))
        return items

    def gallery(self) -> list[GalleryItem]:
        """Every stored image, in a fixed order."""
        return list(self._gallery)

    @cached_property
    def _by_attributes(self) -> dict[Attributes, list[str]]:
        out: dict[Attributes, list[str]] = {}
        for item in self._gallery:
            out.setdefault(item.attributes, []).append(item.id)
        return out

    def image(self, item_id: str) -> Image.Image:
        """Render a gallery image by id."""
        return self._item(item_id).render(self.image_size)

    def _item(self, item_id: str) -> GalleryItem:
        try:
            item = self._gallery[int(item_id.rsplit("-", 1)[1])]
        except (IndexError, ValueError):
            item = None
        if item is None or item.id != item_id:  # e.g. an id from a world with another seed
            raise KeyError(f"{item_id!r} is not an image of SyntheticWorld(seed={self.seed}, instances={self.instances})")
        return item

    def triplets(self, n: int, seed: int = 1, p_two: float = 0.3) -> list[Triplet]:
        """Sample ``n`` composed queries that change one attribute (or two, probability ``p_two``).

        Args:
            n: number of queries.
            seed: query seed (use different seeds for validation and test splits).
            p_two: probability of a two-attribute edit.

        Returns:
            Triplets whose hits are every gallery image of the target combination (the reference is never a hit).
        """
        rng = np.random.default_rng(10_000 + seed)
        values = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES, "background": tuple(BACKGROUNDS)}
        out = []
        for _ in range(n):
            ref = self._gallery[rng.integers(len(self._gallery))]
            k = 2 if rng.random() < p_two else 1
            changed = tuple(sorted(rng.choice(ATTRIBUTES, size=k, replace=False).tolist(), key=ATTRIBUTES.index))
            changes = {}
            for a in changed:
                current = getattr(ref.attributes, a)
                options = [v for v in values[a] if v != current]
                changes[a] = options[rng.integers(len(options))]
            target = replace(ref.attributes, **changes)
            out.append(
                Triplet(
                    reference_id=ref.id,
                    text=edit_text(changes, rng),
                    target=target,
                    target_ids=tuple(self._by_attributes[target]),
                    changed=changed,
                )
            )
        return out


def sample_pairs(n: int, rng: np.random.Generator, image_size: int = IMAGE_SIZE) -> tuple[list[Image.Image], list[str]]:
    """Fresh random image–caption pairs for contrastive training (never the gallery, never a triplet)."""
    images, captions, _ = sample_labelled_pairs(n, rng, image_size)
    return images, captions


def sample_labelled_pairs(
    n: int, rng: np.random.Generator, image_size: int = IMAGE_SIZE, p_full: float = 0.4, p_shape: float | None = None
) -> tuple[list[Image.Image], list[str], np.ndarray]:
    """Image–caption pairs plus the ``[n, n]`` matrix of which caption describes which image."""
    images, captions, attrs, mentions = [], [], [], []
    for _ in range(n):
        a = random_attributes(rng)
        images.append(render(a, rng, size=image_size))
        text, named = caption_with_mentions(a, rng, p_full, p_shape)
        captions.append(text)
        attrs.append(a)
        mentions.append((a, named))
    return images, captions, compatible(attrs, mentions)
