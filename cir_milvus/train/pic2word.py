"""Pic2Word's image-only mapping-network training (Saito et al., CVPR'23, §3.1; google-research/composed_image_retrieval).

CLIP stays frozen. For a batch of images with raw embeddings ``v`` (``encode_image``, un-normalised)::

    tok = f_M(v)                                          (IM2TEXT: [Linear → Dropout → ReLU] × 2 → fc_out)
    w = text_embeds("a photo of *" with the * row := tok)
    loss = ½ [CE(s · v̂ ŵᵀ, I) + CE(s · ŵ v̂ᵀ, I)]          (v̂, ŵ L2-normalised; s = CLIP's frozen exp(logit_scale))

Injection. Pic2Word's training path (``encode_text_img``) tokenizes ``"a photo of"`` and **inserts** the token at the
EOT position (shifting EOT by one); its evaluation path overwrites the ``*`` row of ``"a photo of * , {caption}"``.
Here training uses the evaluation-style overwrite of ``"a photo of *"`` (:func:`~cir_milvus.encoders.torch.
inject_pseudo_tokens`): the token sees the same position and context at training and query time, and one code path
serves both (methods.md §0). The sequences are identical apart from that position; no difference was measured on
the paper's data.

Paper recipe: CC3M images, batch 128, AdamW lr 1e-4, wd 0.1, cosine with 10k warm-up, 30 epochs; mapping
768 → 512 → 512 → 768 for ViT-L/14 (``middle_dim=512``, ``n_layer=2``, dropout 0.1). The defaults follow the
official ``src/main.py`` / ``params.py``: AdamW betas (0.9, 0.98) and eps 1e-6 (its ViT defaults), no weight decay
on names containing ``bn``/``ln``/``bias``/``logit_scale`` (``decay_filter="pic2word"``), the 10,000-step linear
warm-up even when the run is shorter (the learning rate then only ramps; a log line says so; ``--warmup-cap 0.1``
restores the earlier cap at a tenth of the run), and the training images go through
``RandomResizedCrop(size, scale=(0.9, 1.0), bicubic)`` (``model/clip.py`` ``_transform(is_train=True)``) instead of
the resize + centre crop of evaluation (``--augment none``).

The shipped demo head ``cir_milvus/data/cir-demo-tiny.pic2word.safetensors`` is reproduced by ONE command (2-core
CPU: ~85 samples/s, 20 minutes, most of it rendering the synthetic images; the sidecar ``cir-demo-tiny.pic2word.json``
records the config, seconds and samples/s; it predates the official defaults, so ``--config`` applies the settings
the head was trained with: ``warmup_cap`` 0.1, betas 0.9/0.999, eps 1e-8, ``augment none``; synthetic test R@1 in
``python -m cir_milvus.train synthetic-report``)::

    nice -n 10 python -m cir_milvus.train pic2word --config cir_milvus/data/cir-demo-tiny.pic2word.json \\
        --out runs/pic2word-demo

Outputs in ``--out``: ``head/`` (``config.json`` + ``model.safetensors``), ``checkpoint.pt``, ``config.json``,
``train_log.json``; with ``--ship PATH`` also one safetensors file for ``load_head("pic2word", PATH)`` + sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.train.base import RECIPES
from cir_milvus.train.config import TrainConfig
from cir_milvus.train.data import read_images
from cir_milvus.train.device import setup
from cir_milvus.train.optim import decay_groups
from cir_milvus.train.ship import HeadRecipe

__all__ = ["Pic2WordConfig", "Pic2WordRecipe", "clip_infonce", "multi_positive_infonce"]


def clip_infonce(a: Any, b: Any, scale: Any, positives: Any = None) -> Any:
    """Symmetric InfoNCE of CLIP between row-aligned features (normalised here).

    Args:
        a, b: ``[B, D]`` features; row ``i`` of ``a`` pairs with row ``i`` of ``b``.
        scale: the logit scale (1 / temperature).
        positives: optional ``[B, B]`` 0/1 matrix, ``positives[i, j] = 1`` when ``b[j]`` is also a true match of
            ``a[i]`` (its diagonal must be 1): the target of each row/column is then spread uniformly over its
            positives instead of treating them as negatives. The identity matrix gives CLIP's loss exactly.
    """
    import torch
    import torch.nn.functional as F

    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    logits = scale * a @ b.T  # [B, B]
    if positives is None:
        labels = torch.arange(len(a), device=a.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    return multi_positive_infonce(logits, positives)


def multi_positive_infonce(logits: Any, positives: Any) -> Any:
    """Soft-target symmetric InfoNCE on ``[B, B]`` logits: each row's and column's target is spread uniformly over
    its positives (``positives[i, j] = 1``; every row and column needs at least one)."""
    m = positives.to(device=logits.device, dtype=logits.dtype)
    rows = -(m / m.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    cols = -(m / m.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return 0.5 * (rows + cols)


@dataclass
class Pic2WordConfig(TrainConfig):
    """Pic2Word defaults (README: bs 128, lr 1e-4, wd 0.1, AdamW, cosine, 10k warm-up).

    Attributes:
        images: ``"synthetic"``, an image folder, or a ``.csv``/``.jsonl`` list (captions are ignored).
        prompt: the training prompt (must contain the placeholder).
        placeholder: ``*`` (id 265).
        middle_dim: hidden width of the mapping network (512).
        n_layer: hidden blocks (2).
        dropout: dropout of the blocks (0.1).
        augment: ``"crop"`` (official ``RandomResizedCrop(size, scale=(crop_scale, 1), bicubic)`` on the training
            images) or ``"none"`` (the evaluation preprocessing).
        crop_scale: lower bound of the crop's area fraction (0.9).
        ship: also write the head as one ``.safetensors`` file (plus a ``.json`` sidecar) at this path.
    """

    recipe: ClassVar[str] = "pic2word"
    legacy: ClassVar[dict[str, Any]] = {"augment": "none"}

    steps: int = 30000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.1
    beta2: float = 0.98
    eps: float = 1e-6
    decay_filter: str = "pic2word"
    warmup: int = 10000
    schedule: str = "cosine"
    augment: str = "crop"
    crop_scale: float = 0.9
    images: str = "synthetic"
    prompt: str = "a photo of *"
    placeholder: str = "*"
    middle_dim: int = 512
    n_layer: int = 2
    dropout: float = 0.1
    ship: str | None = None

    def validate(self) -> None:
        super().validate()
        if self.augment not in ("crop", "none"):
            raise ConfigError(f"augment must be 'crop' or 'none', got {self.augment!r}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ConfigError(f"crop_scale must be in (0, 1], got {self.crop_scale}")


def train_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...], scale: float = 0.9) -> Any:
    """Pic2Word's training transform (``model/clip.py`` ``_transform(n_px, is_train=True)``): a bicubic
    ``RandomResizedCrop`` to ``size`` keeping ``scale``-1.0 of the area (aspect ratio 3/4-4/3), RGB, tensor,
    normalised by the model's mean/std."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomResizedCrop(size, scale=(scale, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.Lambda(lambda im: im.convert("RGB")),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


@RECIPES.register("pic2word")
class Pic2WordRecipe(HeadRecipe):
    """Frozen CLIP + trainable IM2TEXT mapping network, image-only contrastive training."""

    config_class = Pic2WordConfig
    head_kind = "pic2word"

    @property
    def net(self) -> Any:  # the trained head module
        return self.mapper

    def __init__(self, cfg: Pic2WordConfig) -> None:

        from cir_milvus.composers.pseudo import check_template
        from cir_milvus.heads.phi import Pic2WordMapper

        self.cfg = cfg
        check_template(cfg.prompt + " {}", cfg.placeholder)
        self.precision, self.encoder = setup(cfg)
        self.model = self.encoder.model
        self.mapper = Pic2WordMapper(self.encoder.dim, cfg.middle_dim, self.encoder.token_width(), cfg.n_layer,
                                     cfg.dropout).to(self.precision.device)
        self.pid = self.encoder.placeholder_id(cfg.placeholder)
        from cir_milvus.encoders.torch import pooled_prefix

        ids = self.encoder.tokenizer([cfg.prompt])  # [1, L]
        # the prompt never changes: cut it to its pooled prefix once, not every step
        self.ids = ids[:, : pooled_prefix(self.model, ids) or ids.shape[1]].to(self.precision.device)  # [1, n]
        self.images = read_images(cfg.images)
        pc = self.encoder.preprocess_config
        self.transform = train_transform(pc.size, tuple(pc.mean), tuple(pc.std), cfg.crop_scale)
        self.samples_per_step = cfg.batch_size

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(list(self.mapper.named_parameters()), self.cfg.weight_decay, self.cfg.decay_filter)

    def pixels(self, images: list[Any], step: int) -> Any:
        """``[B, 3, S, S]`` training pixels of one step: the random crops are drawn from a CPU generator seeded by
        ``(seed, step)`` (torch's global RNG is left as it was), so a resumed run sees the same crops."""
        import torch

        from cir_milvus.images import load_image

        if self.cfg.augment == "none":
            return torch.from_numpy(np.ascontiguousarray(self.encoder.pixels(images)))
        seed = int(np.random.default_rng([int(self.cfg.seed), int(step), 6]).integers(2**62))
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return torch.stack([self.transform(load_image(im)) for im in images])

    def train(self, mode: bool = True) -> Pic2WordRecipe:
        self.mapper.train(mode)
        return self

    def batch(self, step: int) -> dict[str, Any]:
        """Raw image embeddings of the step's images (the image tower is frozen, so they are computed here)."""
        import torch

        images, _ = self.images.batch(self.cfg.batch_size, self.cfg.seed, step)
        pixels = self.pixels(images, step).to(self.precision.device)
        with torch.no_grad(), self.precision.autocast():
            v = self.model.encode_image(pixels).float()  # [B, D] raw
        return {"image_embeds": v}

    def loss(self, batch: dict[str, Any]) -> Any:
        from cir_milvus.encoders.torch import text_tower_forward

        v = batch["image_embeds"]
        tok = self.mapper(v)  # [B, W]
        ids = self.ids.expand(len(v), -1)  # [B, n], already the pooled prefix
        w = text_tower_forward(self.model, ids, tok, self.pid)  # [B, D]
        scale = self.model.logit_scale.detach().exp().float()
        return clip_infonce(v, w, scale)
