"""Loaders for the three public zero-shot CIR benchmarks in their official on-disk layouts: CIRR, FashionIQ, CIRCO.

Each loader turns the annotation files into :class:`CIRQuery` records and the gallery into :class:`GalleryImage`
records whose pixels are read only when :meth:`GalleryImage.open` is called. Ids are always ``str`` (CIRCO stores
ints; they are converted), so rankings, metrics and submission files all speak one id type.

The layouts and the evaluation conventions follow the loaders of the SEARLE code base (``miccunifi/SEARLE``,
``src/datasets.py`` and ``src/validate.py``), which LinCIR reuses:

============  ==========================================================  ==================
Data set      Gallery                                                     Reference removed
============  ==========================================================  ==================
CIRR          every image of ``image_splits/split.rc2.{split}.json``      yes
FashionIQ     ``image_splits/split.{category}.{split}.json`` (per category) no
CIRCO         every image of COCO 2017 *unlabeled*                         no
============  ==========================================================  ==================

Example:
    >>> import tempfile
    >>> from cir_milvus.eval.miniature import make_miniature
    >>> root = make_miniature("cirr", tempfile.mkdtemp())
    >>> ds = CIRRDataset(root, "val")
    >>> q = ds.queries()[0]
    >>> q.target_ids[0] in q.subset_ids
    True
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from cir_milvus.errors import ConfigError, DatasetError, ImageDecodeError

__all__ = [
    "CIRCODataset",
    "CIRDataset",
    "CIRQuery",
    "CIRRDataset",
    "FASHIONIQ_CATEGORIES",
    "FashionIQDataset",
    "GalleryImage",
    "fashioniq_datasets",
]

CIRR_URL = "https://github.com/Cuberick-Orion/CIRR"
FASHIONIQ_URL = "https://github.com/XiaoxiaoGuo/fashion-iq"
CIRCO_URL = "https://github.com/miccunifi/CIRCO"

FASHIONIQ_CATEGORIES: tuple[str, ...] = ("dress", "shirt", "toptee")
_IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
_MAX_LISTED_MISSING = 5


@dataclass(frozen=True)
class CIRQuery:
    """One composed-retrieval query.

    Attributes:
        query_id: CIRR ``pairid``, CIRCO ``id`` (as ``str``), or ``"{category}-{index}"`` for FashionIQ.
        reference_id: gallery id of the reference image.
        captions: one relative caption (CIRR, CIRCO) or the two FashionIQ captions, in file order.
        target_ids: ground-truth gallery ids; empty on unlabeled test splits. For CIRCO this is ``gt_img_ids``,
            whose first element is ``target_img_id``.
        subset_ids: CIRR ``img_set.members`` (six images, the reference included); ``None`` elsewhere.
        category: FashionIQ category (``dress``, ``shirt``, ``toptee``); ``None`` elsewhere.
        shared_concept: CIRCO ``shared_concept`` (not used by the published protocols).
    """

    query_id: str
    reference_id: str
    captions: tuple[str, ...]
    target_ids: tuple[str, ...]
    subset_ids: tuple[str, ...] | None
    category: str | None
    shared_concept: str | None = None


@dataclass(frozen=True)
class GalleryImage:
    """One gallery image: its id and the file that holds it. Pixels are read only by :meth:`open`."""

    id: str
    path: Path

    def open(self) -> Image.Image:
        """Read the image from disk.

        Returns:
            The decoded image (mode as stored; convert it as your preprocessing needs).

        Raises:
            DatasetError: the file is missing.
            ImageDecodeError: the file cannot be decoded.
        """
        if not self.path.is_file():
            raise DatasetError(f"gallery image {self.id!r}: file {self.path} does not exist")
        try:
            with Image.open(self.path) as img:
                img.load()
                return img.copy()
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageDecodeError(f"gallery image {self.id!r}: cannot decode {self.path} ({e})") from e


class CIRDataset(ABC):
    """Common interface of the evaluation data sets.

    Attributes:
        name: short name of the benchmark (``"cirr"``, ``"fashioniq"``, ``"circo"``).
        split: the split that was loaded.
        remove_reference: whether the official protocol drops the reference image from each ranked list before
            scoring (CIRR only).
    """

    name: ClassVar[str]
    remove_reference: ClassVar[bool]
    split: str

    @abstractmethod
    def queries(self) -> list[CIRQuery]:
        """The queries of the split, in file order."""

    @abstractmethod
    def corpus(self) -> list[GalleryImage]:
        """The gallery to search, in file order.

        Raises:
            DatasetError: gallery files are missing (all missing paths are counted; the first few are named).
        """

    @property
    def labeled(self) -> bool:
        """Whether the queries carry ground truths (false on the test splits scored by a server)."""
        return all(q.target_ids for q in self.queries())

    def ground_truth(self) -> list[tuple[str, ...]]:
        """The ground-truth ids of each query, aligned with :meth:`queries`."""
        return [q.target_ids for q in self.queries()]

    def iter_corpus(self, batch_size: int) -> Iterator[list[GalleryImage]]:
        """Yield the gallery in batches of at most ``batch_size`` images (pixels still unread).

        Args:
            batch_size: number of images per batch, at least 1.

        Raises:
            ConfigError: ``batch_size`` is smaller than 1.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        items = self.corpus()
        for start in range(0, len(items), batch_size):
            yield items[start : start + batch_size]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r})"


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _load_json(path: Path, what: str, url: str) -> Any:
    """Read one annotation file, turning absence or bad JSON into :class:`DatasetError`."""
    if not path.is_file():
        raise DatasetError(f"{what}: expected file {path} was not found. Download the data set from {url} "
                           f"and pass the folder that holds the official layout as `root`.")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{what}: {path} is not valid JSON ({e}). Re-download it from {url}.") from e


def _field(record: Any, key: str, path: Path, index: int) -> Any:
    """``record[key]`` or a :class:`DatasetError` naming the file and entry."""
    if not isinstance(record, dict) or key not in record:
        raise DatasetError(f"{path}: entry {index} has no key {key!r} (expected the official annotation format)")
    return record[key]


def _resolve_images(candidates: Sequence[tuple[str, Sequence[Path]]], what: str, url: str) -> list[GalleryImage]:
    """Pick, for each id, the first candidate path that exists (``.png``/``.jpg`` variants of one stem).

    Raises:
        DatasetError: some ids have no existing file; the message counts them and names the first few.
    """
    out: list[GalleryImage] = []
    missing: list[Path] = []
    for image_id, paths in candidates:
        found = next((p for p in paths if p.is_file()), None)
        if found is None:
            missing.append(paths[0])
        else:
            out.append(GalleryImage(image_id, found))
    if missing:
        listed = ", ".join(str(p) for p in missing[:_MAX_LISTED_MISSING])
        more = f" and {len(missing) - _MAX_LISTED_MISSING} more" if len(missing) > _MAX_LISTED_MISSING else ""
        raise DatasetError(f"{what}: {len(missing)} gallery image(s) not found (also tried .png/.jpg): {listed}{more}. "
                           f"Download the images as described at {url}.")
    return out


def _stem_variants(path: Path) -> list[Path]:
    """``path`` first, then the same stem with the other accepted image suffixes."""
    return [path] + [path.with_suffix(s) for s in _IMAGE_SUFFIXES if s != path.suffix.lower()]


# --------------------------------------------------------------------------------------------------------------------
# CIRR


class CIRRDataset(CIRDataset):
    """CIRR (Liu et al., ICCV 2021) in its official layout.

    ::

        root/cirr/captions/cap.rc2.{split}.json
        root/cirr/image_splits/split.rc2.{split}.json    {name: "./dev/dev-0-0-img0.png", ...}
        root/dev/..., root/test1/..., root/train/...      images, paths relative to root

    The gallery is every image of the split file. The reference image is removed from each ranking before
    scoring (SEARLE ``cirr_compute_val_metrics``; confirmed by the CIRR maintainers). ``test1`` has no
    ``target_hard`` (scored by the server); ``"test"`` is accepted as an alias of ``"test1"``.

    Args:
        root: folder that holds ``cirr/`` and the image folders.
        split: ``"train"``, ``"val"`` or ``"test1"``.

    Raises:
        ConfigError: unknown split.
        DatasetError: an annotation file is missing or malformed.
    """

    name = "cirr"
    remove_reference = True
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "test1")

    def __init__(self, root: str | Path, split: str = "val") -> None:
        split = "test1" if split == "test" else split
        if split not in self.SPLITS:
            raise ConfigError(f"CIRR split must be one of {list(self.SPLITS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.captions_path = self.root / "cirr" / "captions" / f"cap.rc2.{split}.json"
        self.split_path = self.root / "cirr" / "image_splits" / f"split.rc2.{split}.json"
        self._captions = _load_json(self.captions_path, "CIRR captions", CIRR_URL)
        self._name_to_relpath = _load_json(self.split_path, "CIRR image split", CIRR_URL)
        if not isinstance(self._captions, list):
            raise DatasetError(f"{self.captions_path}: expected a JSON list of pairs, "
                               f"got {type(self._captions).__name__}")
        if not isinstance(self._name_to_relpath, dict):
            raise DatasetError(f"{self.split_path}: expected a JSON object name -> relative path, "
                               f"got {type(self._name_to_relpath).__name__}")

    @cached_property
    def _queries(self) -> list[CIRQuery]:
        out: list[CIRQuery] = []
        for i, rec in enumerate(self._captions):
            img_set = _field(rec, "img_set", self.captions_path, i)
            members = _field(img_set, "members", self.captions_path, i)
            target = rec.get("target_hard") if isinstance(rec, dict) else None
            out.append(CIRQuery(
                query_id=str(_field(rec, "pairid", self.captions_path, i)),
                reference_id=str(_field(rec, "reference", self.captions_path, i)),
                captions=(str(_field(rec, "caption", self.captions_path, i)),),
                target_ids=(str(target),) if target is not None else (),
                subset_ids=tuple(str(m) for m in members),
                category=None,
            ))
        return out

    def queries(self) -> list[CIRQuery]:
        """The CIRR pairs of the split, in file order (see :class:`CIRDataset`)."""
        return list(self._queries)

    @cached_property
    def _corpus(self) -> list[GalleryImage]:
        candidates = [(str(name), _stem_variants(self.root / rel)) for name, rel in self._name_to_relpath.items()]
        return _resolve_images(candidates, f"CIRR {self.split}", CIRR_URL)

    def corpus(self) -> list[GalleryImage]:
        """Every image of ``split.rc2.{split}.json`` (see :class:`CIRDataset`)."""
        return list(self._corpus)


# --------------------------------------------------------------------------------------------------------------------
# FashionIQ


class FashionIQDataset(CIRDataset):
    """One FashionIQ category (Wu et al., CVPR 2021) in its official layout.

    ::

        root/captions/cap.{category}.{split}.json        [{"candidate", "target", "captions": [c1, c2]}, ...]
        root/image_splits/split.{category}.{split}.json  [name, ...]
        root/images/{name}.png  (or .jpg)

    The gallery is the category's split file. The reference image is **not** removed: SEARLE's
    ``fiq_compute_val_metrics`` (``src/validate.py``) ranks the whole category gallery and scores the raw ranking
    (it only asserts that each target occurs once); LinCIR's ``validate.py`` does the same. Query ids are
    ``"{category}-{index}"`` (the files carry no id). Pic2Word's loader reads ``.png`` and SEARLE's ``.jpg``;
    both are accepted.

    Args:
        root: the FashionIQ folder.
        split: ``"train"``, ``"val"`` or ``"test"`` (entries without ``target`` get empty ``target_ids``).
        category: ``"dress"``, ``"shirt"`` or ``"toptee"``.

    Raises:
        ConfigError: unknown split or category.
        DatasetError: an annotation file is missing or malformed.
    """

    name = "fashioniq"
    remove_reference = False
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str = "val", category: str = "dress") -> None:
        if split not in self.SPLITS:
            raise ConfigError(f"FashionIQ split must be one of {list(self.SPLITS)}, got {split!r}")
        if category not in FASHIONIQ_CATEGORIES:
            raise ConfigError(f"FashionIQ category must be one of {list(FASHIONIQ_CATEGORIES)}, got {category!r}")
        self.root = Path(root)
        self.split = split
        self.category = category
        self.captions_path = self.root / "captions" / f"cap.{category}.{split}.json"
        self.split_path = self.root / "image_splits" / f"split.{category}.{split}.json"
        self._triplets = _load_json(self.captions_path, f"FashionIQ {category} captions", FASHIONIQ_URL)
        self._names = _load_json(self.split_path, f"FashionIQ {category} image split", FASHIONIQ_URL)
        if not isinstance(self._triplets, list):
            raise DatasetError(f"{self.captions_path}: expected a JSON list of triplets")
        if not isinstance(self._names, list):
            raise DatasetError(f"{self.split_path}: expected a JSON list of image names")

    @cached_property
    def _queries(self) -> list[CIRQuery]:
        out: list[CIRQuery] = []
        for i, rec in enumerate(self._triplets):
            captions = _field(rec, "captions", self.captions_path, i)
            if not isinstance(captions, list) or not captions:
                raise DatasetError(f"{self.captions_path}: entry {i} 'captions' must be a non-empty list")
            target = rec.get("target")
            out.append(CIRQuery(
                query_id=f"{self.category}-{i}",
                reference_id=str(_field(rec, "candidate", self.captions_path, i)),
                captions=tuple(str(c) for c in captions),
                target_ids=(str(target),) if target is not None else (),
                subset_ids=None,
                category=self.category,
            ))
        return out

    def queries(self) -> list[CIRQuery]:
        """The category's triplets, in file order; ``captions`` keep the file order of the two captions."""
        return list(self._queries)

    @cached_property
    def _corpus(self) -> list[GalleryImage]:
        images = self.root / "images"
        candidates = [(str(n), [images / f"{n}{s}" for s in _IMAGE_SUFFIXES]) for n in self._names]
        return _resolve_images(candidates, f"FashionIQ {self.category} {self.split}", FASHIONIQ_URL)

    def corpus(self) -> list[GalleryImage]:
        """The images of ``split.{category}.{split}.json`` (see :class:`CIRDataset`)."""
        return list(self._corpus)

    def __repr__(self) -> str:
        return f"FashionIQDataset(split={self.split!r}, category={self.category!r})"


def fashioniq_datasets(root: str | Path, split: str = "val",
                       categories: Sequence[str] = FASHIONIQ_CATEGORIES) -> dict[str, FashionIQDataset]:
    """Load several FashionIQ categories (all three by default); each has its own gallery.

    Args:
        root: the FashionIQ folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        categories: which categories to load.

    Returns:
        ``{category: FashionIQDataset}`` in the order given.

    Raises:
        ConfigError: unknown split or category.
        DatasetError: an annotation file is missing or malformed.
    """
    return {c: FashionIQDataset(root, split, c) for c in categories}


# --------------------------------------------------------------------------------------------------------------------
# CIRCO


class CIRCODataset(CIRDataset):
    """CIRCO (Baldrati et al., ICCV 2023) in its official layout.

    ::

        root/annotations/{split}.json     [{"id", "reference_img_id", "target_img_id", "relative_caption",
                                             "shared_concept", "gt_img_ids"}, ...]  (test: no targets)
        root/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json   {"images": [{"id", "file_name"}, ...]}
        root/COCO2017_unlabeled/unlabeled2017/{file_name}

    The gallery is all of COCO 2017 unlabeled. The reference is **not** removed (SEARLE/LinCIR and the official
    ``evaluation.py`` score the raw top-50). ``target_ids`` is ``gt_img_ids`` with ``target_img_id`` first.

    Args:
        root: the CIRCO folder.
        split: ``"val"`` or ``"test"``.

    Raises:
        ConfigError: unknown split.
        DatasetError: an annotation file is missing or malformed.
    """

    name = "circo"
    remove_reference = False
    SPLITS: ClassVar[tuple[str, ...]] = ("val", "test")

    def __init__(self, root: str | Path, split: str = "val") -> None:
        if split not in self.SPLITS:
            raise ConfigError(f"CIRCO split must be one of {list(self.SPLITS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.annotations_path = self.root / "annotations" / f"{split}.json"
        self.image_info_path = self.root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
        self.image_dir = self.root / "COCO2017_unlabeled" / "unlabeled2017"
        self._annotations = _load_json(self.annotations_path, "CIRCO annotations", CIRCO_URL)
        if not isinstance(self._annotations, list):
            raise DatasetError(f"{self.annotations_path}: expected a JSON list of queries")

    @cached_property
    def _queries(self) -> list[CIRQuery]:
        out: list[CIRQuery] = []
        path = self.annotations_path
        for i, rec in enumerate(self._annotations):
            gts = [str(g) for g in (rec.get("gt_img_ids") or [])] if isinstance(rec, dict) else []
            target = rec.get("target_img_id") if isinstance(rec, dict) else None
            if target is not None:
                # The README guarantees target_img_id == gt_img_ids[0]; enforce that order in any case, keeping
                # repeated ids (the official mAP divides by len(gt_img_ids), repeats included).
                if str(target) in gts:
                    gts.remove(str(target))
                gts = [str(target), *gts]
            out.append(CIRQuery(
                query_id=str(_field(rec, "id", path, i)),
                reference_id=str(_field(rec, "reference_img_id", path, i)),
                captions=(str(_field(rec, "relative_caption", path, i)),),
                target_ids=tuple(gts),
                subset_ids=None,
                category=None,
                shared_concept=rec.get("shared_concept"),
            ))
        return out

    def queries(self) -> list[CIRQuery]:
        """The CIRCO queries of the split, in file order (see :class:`CIRDataset`)."""
        return list(self._queries)

    @cached_property
    def _corpus(self) -> list[GalleryImage]:
        info = _load_json(self.image_info_path, "COCO 2017 unlabeled image info", CIRCO_URL)
        images = info.get("images") if isinstance(info, dict) else None
        if not isinstance(images, list):
            raise DatasetError(f"{self.image_info_path}: expected an object with an 'images' list")
        candidates = [(str(_field(img, "id", self.image_info_path, i)),
                       _stem_variants(self.image_dir / str(_field(img, "file_name", self.image_info_path, i))))
                      for i, img in enumerate(images)]
        return _resolve_images(candidates, "CIRCO (COCO 2017 unlabeled)", CIRCO_URL)

    def corpus(self) -> list[GalleryImage]:
        """Every COCO 2017 unlabeled image (see :class:`CIRDataset`)."""
        return list(self._corpus)
