"""RTD: Reducing Task Discrepancy of the text encoder (Byun et al., arXiv 2406.09188, ICCV'25; jaeseokbyun/RTD).

The whole CLIP text tower is fine-tuned (an fp32 copy); the image tower, a frozen copy of the text tower and a
pretrained projection head φ (LinCIR / SEARLE / Pic2Word) stay frozen. Each training sample is a text triplet
(reference caption T_r, conditioning text T_c, target caption T_t)::

    tok = φ(frozen(T_r) + noise_scale · u · n)           (refined concatenation; noise_scale 0.5, u ~ U(0,1), n ~ N(0,I))
    q   = trainable("a photo of $ that {T_c}" with $ := tok)          → positive: frozen(T_t)
    q'  = trainable("a photo of $" with $ := tok)                      → positive: frozen(T_r)   (refined batch sampling)
    loss = NT-Xent_τ([q; q'], [frozen(T_t); frozen(T_r)])   (SEARLE's symmetric NT-Xent with intra-modal
                                                              negatives, τ = 0.07)

so the T_r / T_t pairs of one triplet act as hard negatives for each other. Paper recipe: CompoDiff LLM triplets,
4 GPUs × 128, lr 1e-5, 2000 steps, fp16.

As the official ``train_text_encoder.py``: T_r and T_t are cleaned by LinCIR's ``clean_caption``
(:func:`~cir_milvus.train.lincir.clean_caption`: ``<PERSON>`` → ``person``, lower case, ``$`` removed) and T_c is
used as written; AdamW decays every parameter of the tuned tower (``decay_filter="all"``); the NT-Xent is computed
per device on its own 128 triplets with no gathering across GPUs (``loss_group=128``: the batch is cut into groups
of 128 triplets, one loss each, averaged as DDP averages the gradients; ``loss_group=0`` = one NT-Xent over the
whole batch); and the tower of the best validation R@1 is exported (official ``text_encoder_best.pt``, validation
every 100 steps as in ``run.sh``; on the synthetic world its val split, file data: the last step, logged).

Synthetic triplets (``--triplets synthetic``, CompoDiff-style): a random attribute combination, the world's
caption of it (T_r), one or two attribute edits phrased by the world's modification-text generator (T_c), and the
caption of the edited combination with the SAME template and attribute subset (T_t, which always names the changed
attributes). Unlike the other recipes this one sees the edit phrasing of the evaluation queries (as RTD sees
LLM-written edits similar to CIRR's); it never sees a gallery image or an evaluation triplet.

Output: ``OUT/rtd.safetensors``, the tuned text tower alone (open_clip key names), and ``OUT/rtd.json``. It plugs
in at query time: ``TorchEncoder(model, pretrained, text_weights="OUT/rtd.safetensors")`` encodes the pseudo-token
prompts with the tuned tower; φ and the image tower are unchanged, so that encoder opens and serves a collection
built with the base weights — no re-ingestion (the recipe records the text tower beside the base weights, and only
the image-side fields must match). RTD's published checkpoints (Hugging Face ``CLIPTextModelWithProjection`` under
``"CLIPTextModelWithProjection"``) load the same way (:mod:`cir_milvus.models.text_tower`).

Reproduce the RTD model of the synthetic report (CPU, needs the LinCIR demo head)::

    nice -n 10 python -m cir_milvus.train rtd --out runs/rtd-demo --head cir_milvus/data/cir-demo-tiny.lincir.safetensors \\
        --steps 300 --batch-size 64 --lr 1e-5
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cir_milvus.errors import ConfigError, DatasetError
from cir_milvus.train.base import RECIPES, Recipe, TrainResult
from cir_milvus.train.config import TrainConfig
from cir_milvus.train.data import epoch_indices, pick_column, read_list, step_rng
from cir_milvus.train.device import setup
from cir_milvus.train.optim import decay_groups

__all__ = ["RTDConfig", "RTDRecipe", "TripletSource", "grouped_nt_xent", "nt_xent", "read_triplets",
           "synthetic_text_triplets"]


def nt_xent(v1: Any, v2: Any, temperature: float) -> Any:
    """SEARLE's ``contrastive_loss``: NT-Xent over ``[v1; v2]`` (2N rows), positives ``(i, i+N)``, every other row
    (cross- and intra-modal) a negative, the row itself excluded."""
    import torch
    import torch.nn.functional as F

    v1, v2 = F.normalize(v1.float(), dim=-1), F.normalize(v2.float(), dim=-1)
    z = torch.cat([v1, v2])  # [2N, D]
    sim = z @ z.T / temperature  # [2N, 2N]
    n = len(v1)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # [2N]
    return F.cross_entropy(sim, pos)


def grouped_nt_xent(query: Any, query_ref: Any | None, target: Any, reference: Any, temperature: float,
                    group: int) -> Any:
    """RTD's loss over a batch of triplets, per group of ``group`` triplets (one group = one GPU of the official
    multi-GPU run, no gathering), averaged over the groups.

    Within a group of ``n`` triplets the NT-Xent runs over ``[q; q_ref]`` against ``[target; reference]`` (refined
    batch sampling: ``2n`` pairs, as each official device concatenates its own pairs), or over ``q`` against
    ``target`` when ``query_ref`` is ``None``.

    Args:
        query, target: ``[B, D]`` composed-query features and frozen target features.
        query_ref, reference: ``[B, D]`` ``"a photo of $"`` features and frozen reference features (or ``None``).
        temperature: τ.
        group: triplets per group; ``0`` (or ``>= B``) = one NT-Xent over the whole batch.
    """
    import torch

    n = len(query)
    size = group if 0 < group < n else n
    losses = []
    for i in range(0, n, size):
        sl = slice(i, i + size)
        if query_ref is None:
            losses.append(nt_xent(query[sl], target[sl], temperature))
        else:
            losses.append(nt_xent(torch.cat([query[sl], query_ref[sl]]), torch.cat([target[sl], reference[sl]]),
                                  temperature))
    return torch.stack(losses).mean()


def synthetic_text_triplets(n: int, rng: np.random.Generator, p_two: float = 0.3) -> list[tuple[str, str, str]]:
    """CompoDiff-style ``(T_r, T_c, T_t)`` text triplets from the synthetic world (see the module docstring)."""
    from cir_milvus.synthetic import ATTRIBUTES, BACKGROUNDS, COLOURS, SHAPES, SIZES, caption, edit_text
    from cir_milvus.synthetic import random_attributes as rand_attrs

    values = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES, "background": tuple(BACKGROUNDS)}
    out = []
    for _ in range(n):
        ref = rand_attrs(rng)
        k = 2 if rng.random() < p_two else 1
        changed = [str(a) for a in rng.choice(ATTRIBUTES, size=k, replace=False)]
        changes = {}
        for a in changed:
            options = [v for v in values[a] if v != getattr(ref, a)]
            changes[a] = options[int(rng.integers(len(options)))]
        target = replace(ref, **changes)
        for _ in range(20):  # same template and subset for both captions; it must name a changed attribute
            s = int(rng.integers(2**31))
            t_r, t_t = caption(ref, np.random.default_rng(s)), caption(target, np.random.default_rng(s))
            if t_r != t_t:
                break
        else:
            t_r, t_t = ref.describe(), target.describe()
        out.append((t_r, edit_text(changes, rng), t_t))
    return out


REF_KEYS = ("reference_caption", "reference", "source_caption", "input_caption", "caption1", "T_r")
COND_KEYS = ("conditioning_caption", "condition", "conditioning_text", "instruction", "edit", "modification", "relative_caption", "T_c")
TARGET_KEYS = ("target_caption", "target", "output_caption", "edited_caption", "caption2", "T_t")


@dataclass
class TripletSource:
    """Text triplets from a file, or generated from the synthetic world (``rows is None``)."""

    rows: list[tuple[str, str, str]] | None
    name: str = "synthetic"

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else 0

    def batch(self, n: int, seed: int, step: int) -> list[tuple[str, str, str]]:
        if self.rows is None:
            return synthetic_text_triplets(n, step_rng(seed, step, 4))
        return [self.rows[i] for i in epoch_indices(len(self.rows), n, seed, step)]


def read_triplets(source: str) -> TripletSource:
    """Triplets from ``"synthetic"``, or a ``.json`` list (or JSON lines, as ``datasets.load_dataset("json")``
    reads RTD's ``LLM_triplets.json``) / ``.jsonl`` / ``.csv`` with reference, condition and target columns (RTD's
    ``reference_caption``, ``conditioning_caption``, ``target_caption``; other CompoDiff-style names such as
    ``source_caption``, ``instruction``/``edit``, ``output_caption`` also work; see ``REF_KEYS`` etc.).

    Raises:
        DatasetError: missing file, missing columns, no rows.
    """
    if source == "synthetic":
        return TripletSource(None)
    path = Path(source)
    if path.suffix == ".json":
        if not path.is_file():
            raise DatasetError(f"triplet file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError:  # JSON lines in a .json file
            data = None
        if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            data = list(data.values())  # {id: row, ...}
        if not isinstance(data, list):  # JSON lines (one line is also one JSON object)
            try:
                data = [json.loads(line) for line in text.splitlines() if line.strip()]
            except ValueError as e:
                raise DatasetError(f"{path} is neither a JSON list of rows nor JSON lines: {e}") from e
        rows = data
    else:
        rows = read_list(path)
    out = [(str(pick_column(r, REF_KEYS, path)), str(pick_column(r, COND_KEYS, path)),
            str(pick_column(r, TARGET_KEYS, path))) for r in rows]
    if not out:
        raise DatasetError(f"{path} holds no triplets")
    return TripletSource(out, str(path))


@dataclass
class RTDConfig(TrainConfig):
    """RTD defaults (train_text_encoder.py: lr 1e-5, 2000 steps, 4 × 128 per step, noise 0.5, τ 0.07).

    Attributes:
        head: the frozen projection head (file, saved folder or ``hf-hub:`` id); required.
        head_kind: ``lincir``/``searle``/``pic2word``; default: read from the file name (``*.{kind}.safetensors``,
            a saved folder's config) or ``lincir``.
        triplets: ``"synthetic"`` or a triplet file (see :func:`read_triplets`).
        template: query prompt with the placeholder and ``{}`` (default: the head's, ``"a photo of $ that {}"``).
        noise_scale: scale of ``u · n`` added to frozen(T_r) before φ (0.5).
        temperature: NT-Xent temperature (0.07).
        refined_batch: add the ``"a photo of $"`` → frozen(T_r) pairs (refined batch sampling).
        loss_group: triplets per NT-Xent (official: 128 per GPU, no gathering; ``0`` = one loss over the batch).
        clean_captions: clean T_r and T_t as the official loader (:func:`~cir_milvus.train.lincir.clean_caption`).
        save_dtype: ``"fp16"`` or ``"fp32"`` for the exported checkpoint.
    """

    recipe: ClassVar[str] = "rtd"
    legacy: ClassVar[dict[str, Any]] = {"loss_group": 0, "clean_captions": False}

    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-5
    weight_decay: float = 0.01
    head: str | None = None
    head_kind: str | None = None
    triplets: str = "synthetic"
    template: str | None = None
    noise_scale: float = 0.5
    temperature: float = 0.07
    refined_batch: bool = True
    loss_group: int = 128
    clean_captions: bool = True
    save_dtype: str = "fp16"
    val_every: int = 100

    def validate(self) -> None:
        super().validate()
        if self.loss_group < 0:
            raise ConfigError(f"loss_group must be >= 0 (0 = the whole batch), got {self.loss_group}")


def _infer_head_kind(head: str) -> str:
    from cir_milvus.heads import list_heads

    p = Path(head)
    if p.is_dir() and (p / "config.json").is_file():
        return str(json.loads((p / "config.json").read_text())["kind"])
    for kind in list_heads():
        if f".{kind}." in p.name or p.name.startswith(kind):
            return kind
    return "lincir"


def _text_only_copy(model: Any) -> tuple[Any, str]:
    """A deep copy of the model's text tower as a module ``inject_pseudo_tokens`` accepts (image tower left out),
    and the prefix of its keys in the full model's state dict."""
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "token_embedding"):
        return copy.deepcopy(text), "text."  # CustomTextCLIP: the open_clip TextTransformer
    visual = model.visual
    model.visual = None
    try:
        return copy.deepcopy(model), ""  # CLIP: text modules live on the model itself
    finally:
        model.visual = visual


@RECIPES.register("rtd")
class RTDRecipe(Recipe[RTDConfig]):
    """Trainable text tower + frozen text copy + frozen φ, target-anchored contrastive training on text triplets."""

    config_class = RTDConfig
    can_validate = True

    def __init__(self, cfg: RTDConfig) -> None:

        from cir_milvus.composers.pseudo import check_template
        from cir_milvus.heads import load_head

        if not cfg.head:
            raise ConfigError("RTD needs a pretrained projection head: set head=PATH (--head PATH; e.g. "
                              "cir_milvus/data/cir-demo-tiny.lincir.safetensors or a LinCIR/SEARLE checkpoint)")
        self.cfg = cfg
        self.precision, self.encoder = setup(cfg)
        self.frozen = self.encoder.model
        self.base_recipe = dict(self.encoder.recipe)
        kind = cfg.head_kind or _infer_head_kind(cfg.head)
        self.head = load_head(kind, cfg.head, embed_dim=self.encoder.dim, token_dim=self.encoder.token_width(),
                              device=self.precision.device)
        self.head.module.requires_grad_(False).eval()
        self.placeholder = self.head.placeholder
        self.template = check_template(cfg.template or self.head.template, self.placeholder)
        self.ref_prompt = f"a photo of {self.placeholder}"
        self.pid = self.encoder.placeholder_id(self.placeholder)
        self.text, self.text_prefix = _text_only_copy(self.frozen)
        self.text.float().requires_grad_(True)
        self.triplets = read_triplets(cfg.triplets)
        from cir_milvus.train.validation import make_validation

        self.validation = make_validation(cfg.val, self.triplets.rows is None, self.encoder, cfg.val_queries)
        self.samples_per_step = cfg.batch_size
        if cfg.save_dtype not in ("fp16", "fp32"):
            raise ConfigError(f"save_dtype must be 'fp16' or 'fp32', got {cfg.save_dtype!r}")

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(list(self.text.named_parameters()), self.cfg.weight_decay, self.cfg.decay_filter)

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    def compose(self, reference: Any, texts: Any) -> Any:
        """Query features: the tuned tower on the head's prompt with the frozen φ's token of the reference."""
        from cir_milvus.encoders.torch import encode_token_ids

        ids = self.encoder.tokenizer([self.template.format(t) for t in texts])  # [Q, L]
        return encode_token_ids(self.text, ids, self.head.module(reference), self.pid, device=self.precision.device)

    def validate(self) -> float:
        """R@1 on the validation split with the current text tower (see :mod:`cir_milvus.train.validation`)."""
        if self.validation is None:
            raise RuntimeError("this RTD run has no validation split")
        return self.validation.recall_at_1(self.compose)

    def train(self, mode: bool = True) -> RTDRecipe:
        self.text.train(mode)
        return self

    def batch(self, step: int) -> dict[str, Any]:
        """Token ids of the prompts, the frozen targets, and the pseudo tokens of the step's triplets."""
        import torch

        from cir_milvus.encoders.torch import encode_token_ids

        cfg, tok = self.cfg, self.encoder.tokenizer
        dev = self.precision.device
        rows = self.triplets.batch(cfg.batch_size, cfg.seed, step)
        t_r, t_c, t_t = (list(x) for x in zip(*rows, strict=True))
        if cfg.clean_captions:  # official loader: T_r and T_t cleaned, T_c as written
            from cir_milvus.train.lincir import clean_caption

            t_r, t_t = [clean_caption(c) for c in t_r], [clean_caption(c) for c in t_t]
        ids_q = tok([self.template.format(c) for c in t_c])  # [B, L]
        lost = ~(ids_q == self.pid).any(dim=1)  # very long conditions: keep the placeholder
        if lost.any():
            ids_q[lost] = tok([self.template.format("")] * int(lost.sum()))
        rng = step_rng(cfg.seed, step, 5)
        u = rng.uniform(0, 1, (len(rows), 1)).astype(np.float32)  # [B, 1]
        n = rng.standard_normal((len(rows), self.encoder.dim)).astype(np.float32)  # [B, D]
        with torch.no_grad(), self.precision.autocast():
            e_r = encode_token_ids(self.frozen, tok(t_r), device=dev).float()  # [B, D]
            e_t = encode_token_ids(self.frozen, tok(t_t), device=dev).float()  # [B, D]
            pseudo = self.head.module(e_r + cfg.noise_scale * torch.from_numpy(u * n).to(dev)).float()  # [B, W]
        return {"ids_query": ids_q.to(dev), "ids_ref": tok([self.ref_prompt] * len(rows)).to(dev),
                "target": e_t, "reference": e_r, "tok": pseudo}

    def loss(self, batch: dict[str, Any]) -> Any:

        from cir_milvus.encoders.torch import encode_token_ids

        q = encode_token_ids(self.text, batch["ids_query"], batch["tok"], self.pid)  # [B, D]
        q_ref = None
        if self.cfg.refined_batch:
            q_ref = encode_token_ids(self.text, batch["ids_ref"], batch["tok"], self.pid)  # [B, D]
        return grouped_nt_xent(q, q_ref, batch["target"], batch["reference"], self.cfg.temperature,
                               self.cfg.loss_group)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.text.state_dict())

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.text.load_state_dict(sd, strict=True)

    def text_state_dict(self) -> dict[str, Any]:
        """The tuned text tower with open_clip key names, without the CustomTextCLIP ``text.`` prefix."""
        from cir_milvus.models.text_tower import text_tower_state_dict

        return text_tower_state_dict(self.text)  # self.text is a TextTransformer or a CLIP copy without .visual

    def export(self, out: Path, result: TrainResult) -> dict[str, str]:
        """Write ``rtd.safetensors`` (the tuned text tower only, open_clip key names) and ``rtd.json``."""
        import torch
        from safetensors.torch import save_file

        from cir_milvus.hashing import file_sha256
        from cir_milvus.heads import state_dict_sha256

        dtype = torch.float16 if self.cfg.save_dtype == "fp16" else torch.float32
        sd = {k: v.detach().cpu().to(dtype).contiguous() for k, v in self.text_state_dict().items()}
        path = out / "rtd.safetensors"
        save_file(sd, str(path), metadata={"format": "pt", "model": self.cfg.model, "recipe": "rtd",
                                           "content": "text tower"})
        note = {
            "recipe": "rtd",
            "model": self.cfg.model,
            "text_weights": str(path),
            "text_weights_sha256": file_sha256(path),
            "base_pretrained": self.cfg.pretrained,
            "base_weights_sha256": self.base_recipe.get("weights_sha256"),
            "text_tower_sha256": state_dict_sha256(sd),
            "head": {"kind": self.head.kind, "source": self.cfg.head, "weights_sha256": self.head.weights_sha256},
            "template": self.template,
            "changed": "text tower only; image tower, phi and the gallery vectors are unchanged",
            "reingest_required": False,
            "usage": (f"TorchEncoder({self.cfg.model!r}, {self.cfg.pretrained!r}, text_weights={str(path)!r}); "
                      "CIRCollection.open(uri, name, encoder=that_encoder) serves a collection built with the base "
                      "weights (the recipe's image-side fields match) with the same head"),
            "steps": result.step, "seconds": round(result.seconds, 1),
            "samples_per_s": round(result.samples_per_s, 1) if result.samples else None,
        }
        note_path = out / "rtd.json"
        note_path.write_text(json.dumps(note, indent=2) + "\n")
        return {"weights": str(path), "note": str(note_path)}
