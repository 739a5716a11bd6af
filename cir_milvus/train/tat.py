"""Text-Anchored-Tuning (Jang et al., ECCV'24, arXiv 2405.00571, §3.3): LoRA on the image tower, text tower frozen.

The image tower gets LoRA adapters (peft; rank 16, alpha 16, dropout 0.1) on every residual block's attention
(``nn.MultiheadAttention``: its input and output projections) and MLP (``c_fc``, ``c_proj``) linear layers; the
frozen text tower is the anchor. Loss: symmetric image–text InfoNCE on L2-normalised features at the fixed
temperature 0.07 (logit scale 1/0.07), one epoch over image–caption pairs (LAION-2M subset in the paper; batch
1024, AdamW lr 1e-4). The LoRA target layers and the weight decay are not verified against the paper
(methods.md §5, §11).

Output: ``OUT/tat.safetensors``, the MERGED weights as a full open_clip checkpoint (same keys as the base model),
loadable as ``TorchEncoder("cir-demo-tiny", "OUT/tat.safetensors")`` or ``CIRCollection.create(...,
model="cir-demo-tiny", pretrained="OUT/tat.safetensors")``, and ``OUT/tat.json``, a note saying the gallery must be
re-embedded: the image tower changed, so the collection recipe's ``weights_sha256`` (and ``pretrained``) change
and ``CIRCollection.open`` with the new encoder refuses a collection built with the old one
(:class:`~cir_milvus.errors.RecipeMismatchError`). Create a new collection and ingest again.

On data whose source knows that a caption describes several images of a batch (the synthetic world) the loss is
multi-positive (``multi_positive``, on by default): each image's target is spread over every caption that describes
it. On file lists only the own caption is known, and the loss is the paper's.

Reproduce the TAT model of the synthetic report (CPU, ~3 min; lr 3e-4 was chosen on the validation split)::

    nice -n 10 python -m cir_milvus.train tat --out runs/tat-demo --steps 300 --batch-size 128 --lr 3e-4
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cir_milvus._optional import require
from cir_milvus.errors import CheckpointError, ConfigError
from cir_milvus.train.base import RECIPES, Recipe, TrainResult
from cir_milvus.train.config import TrainConfig
from cir_milvus.train.data import read_images
from cir_milvus.train.device import setup
from cir_milvus.train.pic2word import clip_infonce

__all__ = ["DEFAULT_TARGETS", "TATConfig", "TATRecipe"]

DEFAULT_TARGETS = r"visual\.transformer\.resblocks\.\d+\.(attn|mlp\.c_fc|mlp\.c_proj)"
"""peft ``target_modules`` regex: attention and MLP linear layers of an open_clip ViT image tower."""


@dataclass
class TATConfig(TrainConfig):
    """TAT defaults (third-party summaries of the paper: LoRA r 16, alpha 16, dropout 0.1, τ 0.07, bs 1024, lr 1e-4,
    one epoch).

    Attributes:
        images: ``"synthetic"`` (fresh image–caption pairs), ``"synthetic-full"`` (captions that name all four
            attributes) or a ``.csv``/``.jsonl`` list with path and caption columns.
        steps: ``0`` = ``epochs`` passes over a file list (``len // batch_size`` steps each); the synthetic world is
            endless, so pass ``--steps`` for it.
        epochs: passes over a file list when ``steps`` is 0.
        temperature: fixed InfoNCE temperature (logit scale = 1 / temperature).
        lora_r, lora_alpha, lora_dropout: LoRA hyper-parameters.
        target_modules: peft regex of the adapted modules (default: :data:`DEFAULT_TARGETS`).
        save_dtype: ``"fp16"`` or ``"fp32"`` for the merged checkpoint.
        multi_positive: where the data source knows which in-batch captions describe an image (the synthetic
            world: a partial caption such as "a blue object" describes every blue image), count all of them as its
            positives instead of as negatives (the demo CLIP's stage-2 loss). File lists know only each image's
            own caption, so there it is the paper's loss exactly (identical captions get identical frozen text
            features, and CLIP's loss already treats them alike).
    """

    recipe: ClassVar[str] = "tat"

    steps: int = 0
    epochs: int = 1
    batch_size: int = 1024
    lr: float = 1e-4
    weight_decay: float = 0.0
    images: str = "synthetic"
    temperature: float = 0.07
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: str = DEFAULT_TARGETS
    save_dtype: str = "fp16"
    multi_positive: bool = True

    def validate(self) -> None:
        super().validate()
        if self.save_dtype not in ("fp16", "fp32"):
            raise ConfigError(f"save_dtype must be 'fp16' or 'fp32', got {self.save_dtype!r}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")


@RECIPES.register("tat")
class TATRecipe(Recipe[TATConfig]):
    """LoRA-tuned image tower against the frozen text tower (see the module docstring)."""

    config_class = TATConfig

    def __init__(self, cfg: TATConfig) -> None:

        peft = require("peft", extra="train", purpose="Text-Anchored-Tuning (LoRA)")
        self.cfg = cfg
        self.precision, self.encoder = setup(cfg)
        self.base_recipe = dict(self.encoder.recipe)
        self.images = read_images(cfg.images)
        if not self.images.has_captions:
            raise ConfigError(f"TAT needs image–caption pairs; {cfg.images} has images without a caption column "
                              "(use a .csv/.jsonl list with 'path' and 'caption' columns)")
        if cfg.steps == 0:
            if not self.images.finite:
                raise ConfigError("the synthetic world is endless: set steps=N (--steps N) for TAT on it")
            cfg.steps = cfg.epochs * max(1, len(self.images) // cfg.batch_size)
        lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                               target_modules=cfg.target_modules, bias="none")
        try:
            self.peft_model = peft.get_peft_model(self.encoder.model, lora)
        except ValueError as e:
            raise ConfigError(f"LoRA targets {cfg.target_modules!r} match no layer of {cfg.model} ({e}); set "
                              "target_modules=REGEX (--target-modules) naming its image-tower linear layers") from e
        self.model = self.encoder.model  # adapters are injected in place; encode_image now runs through them
        self.trainable = [(n, p) for n, p in self.peft_model.named_parameters() if p.requires_grad]
        if any(not n.split("base_model.model.", 1)[-1].startswith("visual.") for n, _ in self.trainable):
            raise ConfigError(f"LoRA targets {cfg.target_modules!r} reach outside the image tower")
        self.scale = 1.0 / cfg.temperature
        self.samples_per_step = cfg.batch_size
        self._merged = False

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for _, p in self.trainable], "weight_decay": self.cfg.weight_decay}]

    def train(self, mode: bool = True) -> TATRecipe:
        self.peft_model.train(mode)
        return self

    def batch(self, step: int) -> dict[str, Any]:
        """Pixels and the frozen text tower's features of the step's pairs."""
        import torch

        from cir_milvus.encoders.torch import encode_token_ids

        images, caps, positives = self.images.labelled_batch(self.cfg.batch_size, self.cfg.seed, step)
        pixels = torch.from_numpy(np.ascontiguousarray(self.encoder.pixels(images))).to(self.precision.device)
        ids = self.encoder.tokenizer(list(caps or []))  # [B, L]
        with torch.no_grad(), self.precision.autocast():
            text = encode_token_ids(self.model, ids, device=self.precision.device).float()  # [B, D]
        out = {"pixels": pixels, "text": text}
        if self.cfg.multi_positive and positives is not None:
            out["positives"] = torch.from_numpy(positives).to(self.precision.device)
        return out

    def loss(self, batch: dict[str, Any]) -> Any:
        image = self.model.encode_image(batch["pixels"])  # [B, D] through the LoRA adapters
        return clip_infonce(image, batch["text"], self.scale, batch.get("positives"))

    def state_dict(self) -> dict[str, Any]:
        return {n: p.detach() for n, p in self.trainable}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        names = {n for n, _ in self.trainable}
        if set(sd) != names:
            raise CheckpointError(f"TAT checkpoint holds {len(sd)} LoRA tensors, expected {len(names)} "
                                  f"(missing {sorted(names - set(sd))[:3]}, unexpected {sorted(set(sd) - names)[:3]})")
        import torch

        with torch.no_grad():
            for n, p in self.trainable:
                p.copy_(sd[n])

    def export(self, out: Path, result: TrainResult) -> dict[str, str]:
        """Merge the adapters and write ``tat.safetensors`` (full open_clip checkpoint) and ``tat.json``."""
        import torch
        from safetensors.torch import save_file

        from cir_milvus.hashing import file_sha256
        from cir_milvus.models.spec import model_activation

        if self._merged:
            raise RuntimeError("TAT adapters were already merged and exported")
        merged = self.peft_model.merge_and_unload()
        self._merged = True
        sd = merged.state_dict()
        leftovers = [k for k in sd if "lora_" in k or "base_layer" in k]
        if leftovers:
            raise CheckpointError(f"merging LoRA left adapter keys in the state dict: {leftovers[:3]}")
        dtype = torch.float16 if self.cfg.save_dtype == "fp16" else torch.float32
        path = out / "tat.safetensors"
        save_file({k: v.detach().cpu().to(dtype).contiguous() for k, v in sd.items()}, str(path),
                  metadata={"format": "pt", "model": self.cfg.model, "recipe": "tat",
                            "activation": model_activation(merged)})  # QuickGELU for OpenAI bases: kept on reload
        note = {
            "recipe": "tat",
            "model": self.cfg.model,
            "weights": str(path),
            "weights_sha256": file_sha256(path),
            "base_pretrained": self.cfg.pretrained,
            "base_weights_sha256": self.base_recipe.get("weights_sha256"),
            "changed": "image tower (LoRA merged); the text tower is unchanged",
            "reingest_required": True,
            "why": ("the gallery vectors come from the image tower, which TAT changed: collections built with the "
                    "base weights must be re-ingested. The encoder recipe's weights_sha256 and pretrained differ, so "
                    "CIRCollection.open(uri, name, encoder=<TAT encoder>) raises RecipeMismatchError on an old one."),
            "usage": f"TorchEncoder({self.cfg.model!r}, {str(path)!r}); "
                     f"CIRCollection.create(uri, name, model={self.cfg.model!r}, pretrained={str(path)!r})",
            "steps": result.step, "seconds": round(result.seconds, 1),
            "samples_per_s": round(result.samples_per_s, 1) if result.samples else None,
        }
        note_path = out / "tat.json"
        note_path.write_text(json.dumps(note, indent=2) + "\n")
        return {"weights": str(path), "note": str(note_path)}
