"""Validation inside the training loop: R@1 of a recipe's composed queries on a validation split.

The official LinCIR (``train_phi.py``) and RTD (``train_text_encoder.py``) scripts score CIRR val R@1 every
``validation_steps`` (and at step 50) and keep the best weights (``phi_best.pt``, ``text_encoder_best.pt``).
:class:`SyntheticValidation` plays that role on the synthetic world: the queries of its ``val`` split (the split the
synthetic report tunes slerp's alpha on; never the test split) over the world's full gallery, exact cosine search,
the reference image excluded, a hit = any image of the target combination (as in
:class:`~cir_milvus.eval.synthetic.SyntheticDataset`). The image tower is frozen in every recipe that validates, so
the gallery is embedded once.

A recipe validates by handing :meth:`SyntheticValidation.recall_at_1` a function that turns raw reference-image
embeddings and modification texts into query features with its current weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["SyntheticValidation", "make_validation"]


class SyntheticValidation:
    """R@1 on the synthetic world's validation queries (exact search, reference excluded).

    Args:
        encoder: the recipe's frozen :class:`~cir_milvus.encoders.torch.TorchEncoder` (its image tower embeds the
            gallery once, on first use).
        n_queries: validation queries (the first ``n`` of the ``val`` split).
        batch_size: images per encoder call.
    """

    def __init__(self, encoder: Any, n_queries: int = 500, batch_size: int = 256) -> None:
        from cir_milvus.eval.synthetic import SPLIT_SEEDS
        from cir_milvus.synthetic import SyntheticWorld

        self.encoder = encoder
        self.world = SyntheticWorld(seed=0, instances=2)  # the world of SyntheticDataset (gallery seed 0)
        self.items = self.world.gallery()
        self.index = {it.id: i for i, it in enumerate(self.items)}
        trips = self.world.triplets(n_queries, seed=SPLIT_SEEDS["val"])
        self.refs = np.array([self.index[t.reference_id] for t in trips])  # [Q]
        self.texts = [t.text for t in trips]
        self.targets = [frozenset(self.index[i] for i in t.target_ids) for t in trips]
        self.batch_size = batch_size
        self._gallery: Any = None

    def gallery(self) -> Any:
        """Raw (un-normalised) image embeddings of the gallery ``[N, D]`` on the encoder's device."""
        import torch

        if self._gallery is None:
            model, dev = self.encoder.model, self.encoder.device
            chunks = []
            for i in range(0, len(self.items), self.batch_size):
                images = [it.render(self.world.image_size) for it in self.items[i:i + self.batch_size]]
                pixels = torch.from_numpy(np.ascontiguousarray(self.encoder.pixels(images))).to(dev)
                with torch.no_grad():
                    chunks.append(model.encode_image(pixels).float())  # [b, D]
            self._gallery = torch.cat(chunks)  # [N, D]
        return self._gallery

    def recall_at_1(self, compose: Callable[[Any, Sequence[str]], Any], batch_size: int = 256) -> float:
        """R@1 (percent) of the queries composed by ``compose(reference_embeds [Q, D], texts) -> [Q, D]``."""
        import torch
        import torch.nn.functional as F

        g = self.gallery()
        gn = F.normalize(g, dim=-1)  # [N, D]
        hits = 0
        with torch.no_grad():
            for i in range(0, len(self.texts), batch_size):
                refs = self.refs[i:i + batch_size]
                q = F.normalize(compose(g[torch.from_numpy(refs).to(g.device)], self.texts[i:i + batch_size]).float(),
                                dim=-1)  # [b, D]
                sims = q @ gn.T  # [b, N]
                sims[torch.arange(len(refs)), torch.from_numpy(refs).to(g.device)] = -torch.inf  # drop the reference
                top = sims.argmax(dim=1).tolist()
                hits += sum(t in self.targets[i + k] for k, t in enumerate(top))
        return 100.0 * hits / len(self.texts)


def make_validation(val: str, synthetic_data: bool, encoder: Any, n_queries: int) -> SyntheticValidation | None:
    """The validation split a recipe uses: ``val="auto"`` gives the synthetic one when the training data is
    synthetic (file-list data has no validation split: ``None``), ``"synthetic"`` always, ``"none"`` never."""
    if val == "none" or (val == "auto" and not synthetic_data):
        return None
    return SyntheticValidation(encoder, n_queries)
