"""The synthetic world as an evaluation data set (same interface and runner as CIRR / FashionIQ / CIRCO).

The gallery is written once as PNG files under ``root/images`` (so ingestion reads real files, as a user's
folder would be) and the queries as ``root/queries.{split}.json``. ``val`` and ``test`` use different query seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from tqdm.auto import tqdm

from cir_milvus.eval.datasets import CIRDataset, CIRQuery, GalleryImage
from cir_milvus.synthetic import SyntheticWorld
from cir_milvus.synthetic_families import FAMILIES, FamilyQuery, family_queries

__all__ = ["SPLIT_SEEDS", "SyntheticDataset"]

SPLIT_SEEDS = {"val": 1, "test": 2}
"""Query seeds of the splits; the query families (:meth:`SyntheticDataset.family`) feed the same seeds to streams of
their own, so they never coincide with the standard queries."""


class SyntheticDataset(CIRDataset):
    """Composed queries over the synthetic world; a hit is any gallery image of the target combination.

    Args:
        root: folder for the gallery PNGs and query files (created on first use).
        split: ``"val"`` (alpha tuning) or ``"test"`` (reporting).
        n_queries: number of queries of the split.
        seed: gallery seed.
        instances: images per attribute combination.
        progress: show a progress bar while writing the gallery.
    """

    name: ClassVar[str] = "synthetic"
    remove_reference: ClassVar[bool] = True

    def __init__(self, root: str | Path, split: str = "test", n_queries: int = 400, seed: int = 0,
                 instances: int = 2, progress: bool = False) -> None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"synthetic split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.world = SyntheticWorld(seed=seed, instances=instances)
        self.n_queries = n_queries
        self.progress = progress

    def _write_gallery(self) -> None:
        images = self.root / "images"
        marker = self.root / "gallery.json"
        items = self.world.gallery()
        if marker.is_file() and json.loads(marker.read_text()).get("count") == len(items):
            return
        images.mkdir(parents=True, exist_ok=True)
        for item in tqdm(items, desc="render synthetic gallery", unit="img", disable=not self.progress):
            path = images / f"{item.id}.png"
            if not path.is_file():
                item.render(self.world.image_size).save(path)
        labels = {it.id: it.attributes.__dict__ for it in items}
        marker.write_text(json.dumps({"count": len(items), "seed": self.world.seed, "attributes": labels}))

    def attributes(self) -> dict[str, dict[str, str]]:
        """Attributes of every gallery image by id (stored as metadata by the demo)."""
        return {it.id: dict(it.attributes.__dict__) for it in self.world.gallery()}

    def corpus(self) -> list[GalleryImage]:
        self._write_gallery()
        return [GalleryImage(it.id, self.root / "images" / f"{it.id}.png") for it in self.world.gallery()]

    def queries(self) -> list[CIRQuery]:
        out = []
        for i, t in enumerate(self.world.triplets(self.n_queries, seed=SPLIT_SEEDS[self.split])):
            out.append(CIRQuery(query_id=f"{self.split}-{i}", reference_id=t.reference_id, captions=(t.text,),
                                target_ids=t.target_ids, subset_ids=None, category=None))
        return out

    def family(self, name: str, n_queries: int | None = None) -> list[FamilyQuery]:
        """The split's queries of one family (``negation``, ``references``, ``feedback``, ``alphas``; see
        :mod:`cir_milvus.synthetic_families`), ``n_queries`` of them (default: the data set's ``n_queries``).

        Raises:
            ValueError: an unknown family (the message lists them).
        """
        if name not in FAMILIES:
            raise ValueError(f"unknown query family {name!r}; choose one of {list(FAMILIES)}")
        return family_queries(self.world, name, self.n_queries if n_queries is None else n_queries,
                              seed=SPLIT_SEEDS[self.split])
