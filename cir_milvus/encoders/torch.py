"""The torch backend: open_clip towers, batched, CUDA + fp16 when a GPU is present, CPU fp32 otherwise.

This is the only runtime module that imports torch (lazily, through :func:`cir_milvus._optional.require`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus._optional import require
from cir_milvus.artifacts import locate, looks_like_path
from cir_milvus.encoders.base import (
    EncoderBackend,
    RebuildOptions,
    check_text_lengths,
    copy_with_decode,
    register_encoder,
)
from cir_milvus.encoders.prefix import pooled_length
from cir_milvus.encoders.slots import mark_slot
from cir_milvus.errors import ConfigError
from cir_milvus.hashing import file_sha256
from cir_milvus.images import load_image
from cir_milvus.models.spec import (
    ModelSpec,
    load_open_clip,
    local_dir_sha256,
    model_activation,
    recorded_activation,
    resolve_model,
)
from cir_milvus.models.text_tower import load_text_tower
from cir_milvus.preprocess import PreprocessConfig, decode_size, default_decode, preprocess_batch
from cir_milvus.types import ImageInput

__all__ = ["TorchEncoder", "encode_token_ids", "inject_pseudo_tokens", "pooled_prefix", "text_tower_forward"]


def _pick_device(device: str | None) -> str:
    torch = require("torch")
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was requested but torch sees no CUDA GPU; use device='cpu'")
    return device


def _open_clip_text_tower(model: Any) -> Any | None:
    """The module holding token_embedding/positional_embedding/transformer/ln_final/text_projection, or ``None``."""
    tower = getattr(model, "text", None)
    if tower is not None and hasattr(tower, "token_embedding"):
        return tower  # CustomTextCLIP with an open_clip TextTransformer
    if hasattr(model, "token_embedding"):
        return model  # CLIP
    return None


def _text_tower(model: Any) -> Any:
    tower = _open_clip_text_tower(model)
    if tower is None:
        raise ConfigError(
            f"{type(model).__name__} has no open_clip text transformer (Hugging Face text towers are not supported "
            "for pseudo-token composition)"
        )
    return tower


def _pool_type(tower: Any) -> str:
    return str(getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax")))


def _eos_id(tower: Any) -> int | None:
    return getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))


def prefix_pooling(model: Any) -> str | None:
    """How the text tower pools, when its pooled features depend only on a prefix of the ids (see
    :func:`pooled_prefix`): ``"argmax"`` (CLIP: the end-of-text token has the largest id) or ``"eos"``; ``None``
    for towers that attend both ways, append a CLS embedding, pool another way or are not open_clip transformers."""
    tower = _open_clip_text_tower(model)
    if tower is None or getattr(tower, "attn_mask", None) is None or getattr(tower, "cls_emb", None) is not None:
        return None
    pool = _pool_type(tower)
    if pool == "argmax" or (pool == "eos" and _eos_id(tower) is not None):
        return pool
    return None


def pooled_prefix(model: Any, input_ids: Any) -> int | None:
    """Length of the shortest prefix of ``input_ids`` ``[B, L]`` that determines the text tower's pooled features,
    or ``None`` when they may depend on every position.

    CLIP's text tower attends causally (position ``p`` sees positions ``<= p`` only) and pools one position per row,
    the end-of-text token (``argmax`` of the ids, or the first ``eos`` id), so the features of ``input_ids[:, :n]``
    with ``n`` = the last pooled position + 1 equal those of the whole padded row: the padding after it (70 of
    CLIP's 77 positions for a seven-token query) is computed and thrown away. Towers that attend both ways (SigLIP),
    append a CLS embedding (CoCa), pool another way, or are not open_clip transformers get ``None``.

    Args:
        model: an open_clip model.
        input_ids: int64 token ids ``[B, L]`` (numpy or a tensor on any device).
    """
    pool = prefix_pooling(model)
    if pool is None:
        return None
    ids = input_ids.detach().cpu().numpy() if hasattr(input_ids, "detach") else np.asarray(input_ids)
    return pooled_length(ids, pool, _eos_id(_text_tower(model)))


def text_tower_forward(model: Any, input_ids: Any, pseudo_tokens: Any = None, placeholder_id: Any = None, *,
                       any_length: bool = False) -> Any:
    """The open_clip text tower's un-normalised pooled features ``[B, D]`` of token ids ``[B, n]``, ``n`` up to the
    context length, with ``pseudo_tokens`` ``[B, W]`` as the token embedding wherever ``input_ids == placeholder_id``.

    A prefix shorter than the context length uses the first ``n`` position embeddings and the causal mask cut to
    ``n × n``: with ``n`` from :func:`pooled_prefix` the result equals the full-length forward. A full-length input
    runs the tower's own arithmetic unchanged, unless ``any_length``: then the cut is written for every length (a
    no-op at full length), so that a traced graph (the ONNX export) takes ids of any length up to the context.
    """
    torch = require("torch")
    from open_clip.transformer import text_global_pool

    tower = _text_tower(model)
    if getattr(tower, "cls_emb", None) is not None:
        raise ConfigError("text towers with a CLS embedding (CoCa) are not supported for pseudo tokens")
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(input_ids).to(cast_dtype)  # [B, n, W]
    if pseudo_tokens is not None:
        tok = pseudo_tokens.to(device=x.device, dtype=cast_dtype)[:, None, :]  # [B, 1, W]
        x = torch.where((input_ids == placeholder_id)[:, :, None], tok, x)  # [B, n, W]
    pos, attn_mask = tower.positional_embedding, tower.attn_mask
    n = input_ids.shape[1]
    if any_length or n != pos.shape[0]:  # a prefix: its positions, the causal mask cut to n x n
        pos = pos[:n]
        attn_mask = attn_mask[:n, :n] if attn_mask is not None else None
    x = x + pos.to(cast_dtype)
    x = tower.transformer(x, attn_mask=attn_mask)
    x = tower.ln_final(x)  # [B, n, W]
    x = text_global_pool(x, input_ids, _pool_type(tower), eos_token_id=_eos_id(tower))  # [B, W]
    proj = tower.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj  # [B, D]
    return x


def encode_token_ids(model: Any, input_ids: Any, pseudo_tokens: Any = None, placeholder_id: Any = None, *,
                     device: Any = None) -> Any:
    """Un-normalised text features ``[B, D]`` of token ids ``[B, L]``, computed over their :func:`pooled_prefix`
    (the same features as the full context; a short caption costs a fraction), with ``pseudo_tokens`` injected at
    ``placeholder_id`` when given. The one text forward of the encoders and the training recipes.

    Towers :func:`pooled_prefix` does not cut run in full: open_clip's own ``encode_text`` for plain ids (any text
    tower), :func:`text_tower_forward` with pseudo tokens. ``device``: where to move the (cut) ids first.
    """
    n = pooled_prefix(model, input_ids)
    ids = input_ids[:, :n] if n is not None else input_ids
    if device is not None:
        ids = ids.to(device)
    if n is None and pseudo_tokens is None:
        return model.encode_text(ids)
    return text_tower_forward(model, ids, pseudo_tokens, placeholder_id)


def inject_pseudo_tokens(model: Any, input_ids: Any, pseudo_tokens: Any, placeholder_id: int) -> Any:
    """Encode token ids whose placeholder rows are overwritten by pseudo tokens (Pic2Word / SEARLE / LinCIR).

    The placeholder's token-embedding row is replaced in place (``where(ids == placeholder, tok, emb)``); nothing
    is inserted, so positions and EOT pooling are unchanged (methods.md §0, §9). Every position equal to
    ``placeholder_id`` gets the token: to fill only the template's slot, mark it first with
    :func:`cir_milvus.encoders.slots.mark_slot` (as :meth:`TorchEncoder.encode_texts_with_pseudo_tokens` does).
    The forward is :func:`text_tower_forward` over the ids as given: the ONNX export traces it at the full context;
    the encoders and training recipes call :func:`encode_token_ids`, which cuts the ids to their pooled prefix first.

    Args:
        model: an open_clip CLIP / CustomTextCLIP.
        input_ids: int64 ``[B, L]`` (or the :func:`pooled_prefix` of it).
        pseudo_tokens: ``[B, W]`` (W = text width), one token per prompt.
        placeholder_id: the token id to inject at (``$`` = 259, ``*`` = 265 in CLIP BPE, or a slot sentinel).

    Returns:
        The un-normalised text features ``[B, D]``.
    """
    return text_tower_forward(model, input_ids, pseudo_tokens, placeholder_id)


def _by_length(counts: Sequence[int], batch_size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Batches of indices of similar token count (shortest first), and the permutation back to the input order:
    each batch then runs the text tower only as far as its own longest text (:func:`encode_token_ids`)."""
    order = np.argsort(np.asarray(counts, dtype=np.int64), kind="stable")
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)], np.argsort(order)


@register_encoder("torch")
class TorchEncoder(EncoderBackend):
    """open_clip image and text towers behind the :class:`~cir_milvus.encoders.Encoder` interface.

    Args:
        model: open_clip model name, ``hf-hub:`` id, ``local-dir:`` folder, or the demo model name.
        pretrained: tag, local checkpoint path, ``"cir-demo"`` or ``None`` (random weights).
        device: ``"cuda"``, ``"cpu"`` or ``None``/``"auto"`` (CUDA when available).
        precision: ``"fp16"`` or ``"fp32"``; default fp16 on CUDA, fp32 on CPU.
        preprocess: ``"clip"``, ``"targetpad"`` or ``"hf_clip"`` for gallery images (default ``"clip"``).
            Size, mean/std, interpolation, ``resize_mode`` (``squash`` for SigLIP/DFN/CLIPA) and ``fill_color``
            follow open_clip's pretrained config of the tag (or the hub/local config).
        image_loading: ``"product"`` (EXIF rotation, transparency on white) or ``"official"`` (as the research
            code's data sets: ``Image.open`` only; used by evaluation); see :func:`cir_milvus.images.load_image`.
        quick_gelu: ``None`` follows open_clip's pretrained config (QuickGELU for OpenAI tags); ``True``/``False``
            force the activation (e.g. ``True`` for a local file of OpenAI weights). Recorded as ``activation``.
        decode: ``"exact"``, ``"reduce"`` or ``"draft"``: how much full-resolution work image decoding may skip
            (:mod:`cir_milvus.preprocess`). Default (``None``): :func:`~cir_milvus.preprocess.default_decode`,
            ``"reduce"`` for ``clip``/``targetpad`` with ``resize_mode="shortest"`` (embedding cosine against exact
            ≥ 0.9999), ``"exact"`` otherwise (``hf_clip``, squash/longest). Pass ``"exact"`` for the reference
            transform (the evaluation harness and training do). Recorded in the recipe, so a collection's queries
            decode like its gallery; an existing collection decodes with its recorded mode whatever this one
            (:meth:`with_decode`).
        text_weights: a tuned text tower swapped in over ``pretrained``'s (an RTD checkpoint, Hugging Face
            ``CLIPTextModelWithProjection`` weights or a ``cir_milvus.train rtd`` output; see
            :func:`cir_milvus.models.text_tower.load_text_tower`). The image tower is unchanged, so this encoder
            still serves collections built with ``pretrained`` alone; the recipe records the file and its sha256.

    Example:
        >>> enc = TorchEncoder("cir-demo-tiny", "cir-demo")  # doctest: +SKIP
        >>> enc.encode_texts(["a red star"]).shape  # doctest: +SKIP
        (1, 128)
    """

    def __init__(
        self,
        model: str,
        pretrained: str | None = None,
        *,
        device: str | None = None,
        precision: str | None = None,
        preprocess: str = "clip",
        decode: str | None = None,
        spec: ModelSpec | None = None,
        text_weights: str | None = None,
        image_loading: str = "product",
        quick_gelu: bool | None = None,
    ) -> None:
        self._torch = require("torch", purpose="the torch encoder backend")
        self.spec = spec or resolve_model(model, pretrained)
        self.device = _pick_device(device)
        self.precision = precision or ("fp16" if self.device.startswith("cuda") else "fp32")
        if self.precision not in ("fp16", "fp32", "bf16"):
            raise ConfigError(f"precision must be 'fp16', 'bf16' or 'fp32', got {self.precision!r}")
        self.model, self.tokenizer = load_open_clip(self.spec, device=self.device, precision=self.precision,
                                                    quick_gelu=quick_gelu)
        self.activation = model_activation(self.model)
        self.text_weights = str(text_weights) if text_weights is not None else None
        if self.text_weights is not None:
            load_text_tower(self.model, self.text_weights)
        pcfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        size = pcfg.get("size", self.model.visual.image_size)
        size = size[0] if isinstance(size, (tuple, list)) else size
        interpolation = pcfg.get("interpolation", "bicubic")
        self.preprocess_config = PreprocessConfig(
            size=int(size),
            mean=tuple(pcfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),  # type: ignore[arg-type]
            std=tuple(pcfg.get("std", (0.26862954, 0.26130258, 0.27577711))),  # type: ignore[arg-type]
            # open_clip's "random" (training augmentation) is bicubic at inference
            interpolation="bicubic" if interpolation == "random" else interpolation,
            mode=preprocess,  # type: ignore[arg-type]
            resize_mode=pcfg.get("resize_mode", "shortest"),
            fill_color=int(pcfg.get("fill_color", 0) or 0),
            loading=image_loading,
        )
        self.preprocess_config = self.preprocess_config.with_decode(default_decode(self.preprocess_config, decode))
        self.context_length = int(getattr(self.tokenizer, "context_length", 77))
        with self._torch.no_grad():
            probe = self.model.encode_text(self._torch.zeros(1, self.context_length, dtype=self._torch.long,
                                                              device=self.device))
        self.dim = int(probe.shape[-1])
        self._sha: str | None = None

    @classmethod
    def from_name(cls, model: str, pretrained: str | None = None, **options: Any) -> TorchEncoder:
        """``create_encoder(model, pretrained, backend="torch", **options)``."""
        return cls(model, pretrained, **options)

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any], options: RebuildOptions) -> TorchEncoder:
        """Rebuild from a torch recipe: the checkpoint, ``local-dir:`` folder and tuned text tower it names are
        found by their checksums (see :mod:`cir_milvus.artifacts`), with the recorded activation and preprocessing.

        Raises:
            ModelNotFoundError: a file is not found with the recorded checksum.
        """
        return cls(**_rebuild_kwargs(recipe, options))

    def with_decode(self, decode: str) -> TorchEncoder:
        """This encoder decoding images with ``decode``: a shallow copy sharing the model, tokenizer and device, with
        only ``preprocess_config.decode`` replaced (``self`` when it already decodes so).

        :class:`~cir_milvus.CIRCollection` uses it to serve a collection with the mode its recipe records.

        Raises:
            ConfigError: ``decode`` is not ``"exact"``, ``"reduce"`` or ``"draft"``.
        """
        return copy_with_decode(self, decode)

    # -- metadata -------------------------------------------------------------------------------------------------
    @property
    def recipe(self) -> dict[str, Any]:
        if self._sha is None and self.spec.kind == "tag":
            self._sha = _cached_tag_sha256(self.spec)
        elif self._sha is None:
            self._sha = self.spec.sha256()
        out = {
            "backend": "torch",
            "model": self.spec.model,
            "pretrained": self.spec.pretrained,
            "weights_sha256": self._sha,
            "dim": self.dim,
            "preprocess": self.preprocess_config.to_dict(),
            "activation": self.activation,
        }
        if self.spec.kind == "random":  # loud on purpose: a collection of untrained vectors is never an accident
            out["random_weights"] = True
        if self.text_weights is not None:  # query side only: not among the fields a gallery must match
            out["text_weights"] = self.text_weights
            out["text_weights_sha256"] = file_sha256(self.text_weights)
        return out

    def token_width(self) -> int:
        return int(_text_tower(self.model).token_embedding.weight.shape[1])

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.tokenizer(list(texts)), dtype=np.int64)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text without truncation, start and end tokens included (0 where the tokenizer cannot say).

        open_clip's tokenizers cut silently at the context length; this counts first so over-long texts can be
        refused (see :func:`~cir_milvus.encoders.base.check_text_lengths`).
        """
        tok = self.tokenizer
        if getattr(tok, "reduction_fn", None) is None and hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):
            return [len(tok.encode(t)) + 2 for t in texts]  # SimpleTokenizer: SOT + BPE + EOT
        inner = getattr(tok, "tokenizer", None)  # HFTokenizer wraps a transformers tokenizer
        if inner is not None and callable(inner):
            try:
                clean = getattr(tok, "clean_fn", lambda x: x)
                return [len(ids) for ids in inner([clean(t) for t in texts], truncation=False)["input_ids"]]
            except Exception:  # noqa: BLE001 - an unknown tokenizer: no check rather than a false alarm
                pass
        return [0] * len(texts)

    def placeholder_id(self, placeholder: str) -> int:
        """The single BPE id of a placeholder word (``$`` → 259, ``*`` → 265)."""
        ids = self.tokenize([placeholder])[0]
        nz = ids[ids != 0]
        if len(nz) != 3:
            raise ConfigError(f"placeholder {placeholder!r} is not a single token for this tokenizer")
        return int(nz[1])

    # -- encoding -------------------------------------------------------------------------------------------------
    def _out(self, x: Any, normalize: bool, device_output: bool) -> Any:
        x = x.float()
        if normalize:
            x = self._torch.nn.functional.normalize(x, dim=-1)
        return x if device_output else x.cpu().numpy().astype(np.float32)

    def pixels(self, images: Sequence[ImageInput], preprocess: str | None = None) -> np.ndarray:
        """Decode and preprocess images to float32 ``[N, 3, S, S]`` (the exact input of the image tower)."""
        cfg = self.preprocess_config.with_mode(preprocess)
        return preprocess_batch([load_image(im, mode=cfg.loading, draft=decode_size(cfg)) for im in images], cfg)

    def encode_pixels(self, pixels: np.ndarray, *, normalize: bool = True, device_output: bool = False) -> Any:
        torch = self._torch
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision, torch.float32)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, dtype=dtype)
            return self._out(self.model.encode_image(x), normalize, device_output)

    def normalize_on_device(self, pixels: Any) -> Any:
        """uint8 ``[N, S, S, 3]`` (numpy or tensor) → normalised ``[N, 3, S, S]`` on this encoder's device and dtype.

        On CUDA the uint8 pixels (a quarter of the float32 bytes) are copied from pinned memory without blocking, and
        the scaling runs on the GPU; on CPU it is the same arithmetic as :func:`~cir_milvus.preprocess.normalize_uint8`
        in torch's threads.
        """
        torch = self._torch
        cfg = self.preprocess_config
        x = pixels if isinstance(pixels, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(pixels))
        if self.device.startswith("cuda") and x.device.type == "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.to(self.device).permute(0, 3, 1, 2)  # [N, S, S, 3] -> [N, 3, S, S]
        std = torch.tensor(cfg.std, dtype=torch.float64)
        scale = (1.0 / (255.0 * std)).to(device=x.device, dtype=torch.float32)[None, :, None, None]  # [1, 3, 1, 1]
        bias = (-torch.tensor(cfg.mean, dtype=torch.float64) / std).to(device=x.device, dtype=torch.float32)
        x = x.float() * scale + bias[None, :, None, None]  # [N, 3, S, S]
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision, torch.float32)
        return x.to(dtype).contiguous()

    def encode_uint8(self, pixels: Any, *, normalize: bool = True, device_output: bool = False) -> Any:
        """Encode uint8 pixels ``[N, S, S, 3]`` (what the decode workers produce), normalising on the device."""
        with self._torch.no_grad():
            return self._out(self.model.encode_image(self.normalize_on_device(pixels)), normalize, device_output)

    def decode_jpegs(self, data: Sequence[bytes]) -> Any:
        """JPEG bytes → uint8 ``[N, S, S, 3]`` on this encoder's device with ``torchvision.io.decode_jpeg``.

        On CUDA this decodes with nvJPEG on the GPU (batched), then resizes (bicubic, antialiased) and centre-crops
        there; on CPU the same code runs on libjpeg. The pixels differ slightly from Pillow's (another IDCT and resize
        kernel; ``benchmarks/bench_gpu.py`` reports the embedding cosine against the exact path), so this path is for
        GPU ingestion benchmarks and callers that accept that difference; it is not a recipe decode mode.

        Raises:
            BackendUnavailableError: torchvision is missing.
        """
        torch = self._torch
        tvio = require("torchvision.io", extra="torch", purpose="decoding JPEGs with torchvision")
        s = self.preprocess_config.size
        raw = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
        imgs = tvio.decode_jpeg(raw, mode=tvio.ImageReadMode.RGB, device=self.device)
        out = torch.empty((len(imgs), s, s, 3), dtype=torch.uint8, device=self.device)  # [N, S, S, 3]
        for k, img in enumerate(imgs):  # [3, H, W] uint8
            _, h, w = img.shape
            new_h, new_w = (int(s * h / w), s) if w <= h else (s, int(s * w / h))
            x = torch.nn.functional.interpolate(img[None].float(), size=(new_h, new_w), mode="bicubic",
                                                antialias=True, align_corners=False)  # [1, 3, h', w']
            top, left = int(round((new_h - s) / 2.0)), int(round((new_w - s) / 2.0))
            x = x[0, :, top:top + s, left:left + s].round().clamp(0, 255)  # [3, S, S]
            out[k] = x.to(torch.uint8).permute(1, 2, 0)
        return out

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 64,
        normalize: bool = True,
        preprocess: str | None = None,
        progress: bool = False,
        device_output: bool = False,
    ) -> Any:
        from tqdm.auto import tqdm

        outs = []
        starts = range(0, len(images), batch_size)
        for s in tqdm(starts, desc="encode images", unit="batch", disable=not progress):
            pix = self.pixels(images[s : s + batch_size], preprocess)
            outs.append(self.encode_pixels(pix, normalize=normalize, device_output=True))
        if not outs:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self._torch.cat(outs)
        return x if device_output else x.cpu().numpy().astype(np.float32)

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int = 256, normalize: bool = True, device_output: bool = False,
        truncate: bool | None = None,
    ) -> Any:
        """Encode texts. Over-long texts raise ``ConfigError`` unless ``truncate=True`` (warns, then truncates).

        Batches are formed from texts of similar token counts (the order of the output is the input's), so each batch
        runs the text tower only as far as its own longest text (:func:`encode_token_ids`).
        """
        counts = self.token_counts(texts)
        check_text_lengths(texts, counts, self.context_length, truncate)
        torch = self._torch
        batches, back = _by_length(counts, batch_size)
        outs = []
        with torch.no_grad():
            for idx in batches:
                ids = self.tokenizer([texts[i] for i in idx])  # [B, L] on the CPU
                outs.append(self._out(encode_token_ids(self.model, ids, device=self.device), normalize, True))
        if not outs:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = torch.cat(outs)
        x = x[torch.from_numpy(back).to(x.device)]  # back to the input order
        return x if device_output else x.cpu().numpy().astype(np.float32)

    def encode_texts_with_pseudo_tokens(
        self,
        texts: Sequence[str],
        pseudo_tokens: Any,
        *,
        placeholder: str = "$",
        batch_size: int = 256,
        normalize: bool = True,
        device_output: bool = False,
        slot: int | None = 0,
    ) -> Any:
        """Encode prompts with ``pseudo_tokens[i]`` ``[N, W]`` at the placeholder slot of prompt ``i``.

        ``slot``: which placeholder token of a prompt gets the token: ``0`` the first (SEARLE, Pic2Word: the
        template's slot when it precedes the user text), a negative index counts from the end, ``None`` every one
        (LinCIR's evaluation). A user's own ``$`` elsewhere in the text keeps its word embedding. Batched by length
        as :meth:`encode_texts`.
        """
        torch = self._torch
        counts = self.token_counts(texts)
        check_text_lengths(texts, counts, self.context_length)
        pid = self.placeholder_id(placeholder)
        ids_all = self.tokenize(texts)
        missing = [t for t, ids in zip(texts, ids_all) if not (ids == pid).any()]
        if missing:
            raise ConfigError(
                f"prompt {missing[0]!r} has no placeholder token {placeholder!r} (after tokenization/truncation); "
                f"write the template with a free-standing {placeholder!r}, e.g. 'a photo of {placeholder} that {{}}'"
            )
        tokens = pseudo_tokens if isinstance(pseudo_tokens, torch.Tensor) else torch.as_tensor(
            np.asarray(pseudo_tokens, dtype=np.float32))
        batches, back = _by_length(counts, batch_size)
        outs = []
        with torch.no_grad():
            for idx in batches:
                marked, inject_id = mark_slot(ids_all[idx], pid, slot)
                tok = tokens[torch.from_numpy(idx)].to(self.device)
                feats = encode_token_ids(self.model, torch.from_numpy(marked), tok, inject_id, device=self.device)
                outs.append(self._out(feats, normalize, True))
        if not outs:
            x = torch.zeros(0, self.dim)
        else:
            x = torch.cat(outs)
            x = x[torch.from_numpy(back).to(x.device)]  # back to the input order
        return x if device_output else x.cpu().numpy().astype(np.float32)

    def set_threads(self, threads: int | None, *, spin: bool = True) -> tuple[int | None, bool]:
        """Set torch's intra-op threads on CPU (process-wide; ``None`` leaves them); returns the previous setting.

        :func:`cir_milvus.ingest.ingest` calls it with :func:`~cir_milvus.ingest.decode.encoder_threads` (every core;
        its decode workers run niced beside them) and restores the previous setting afterwards. ``spin`` is accepted
        for interface parity with the onnxruntime backend: torch's OpenMP threads cannot change their wait policy
        once loaded; ``import cir_milvus`` before torch makes them wait passively (:mod:`cir_milvus._runtime`).
        """
        prev = int(self._torch.get_num_threads())
        if threads is not None and not self.device.startswith("cuda") and threads != prev:
            self._torch.set_num_threads(int(threads))
        return prev, True

    def to_device(self, x: np.ndarray) -> Any:
        return self._torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)


def _cached_tag_sha256(spec: ModelSpec) -> str | None:
    try:
        from open_clip.pretrained import download_pretrained, get_pretrained_cfg

        path = download_pretrained(get_pretrained_cfg(spec.model, spec.pretrained or ""))
        return file_sha256(path) if path else None
    except Exception:  # noqa: BLE001 - a checksum is best effort for hub tags
        return None


def _rebuild_kwargs(r: Mapping[str, Any], options: RebuildOptions) -> dict[str, Any]:
    """``TorchEncoder`` arguments for a torch recipe: every file it names found by its checksum."""
    sha, model = r.get("weights_sha256"), str(r["model"])
    where: dict[str, Any] = {"base_dir": options.base_dir, "search_path": options.search_path}
    if model.startswith("local-dir:"):
        folder = locate(model[len("local-dir:"):], what="local-dir model folder", sha256=sha, want_dir=True,
                        checksum=local_dir_sha256, fix="open with model='local-dir:/path/to/folder'", **where)
        model = f"local-dir:{folder}"
    pretrained = r.get("pretrained")
    if pretrained is not None and (r.get("pretrained_kind") == "file" or looks_like_path(str(pretrained))):
        pretrained = str(locate(str(pretrained), what="checkpoint", sha256=sha, **where,
                                fix=f"open with model={model!r}, pretrained='/path/to/{Path(str(pretrained)).name}'"))
    tw = options.text_weights
    if tw is None and r.get("text_weights"):
        recorded = str(r["text_weights"])
        tw = str(locate(recorded, what="text tower", sha256=r.get("text_weights_sha256"), **where,
                        fix=f"open with text_weights='/path/to/{Path(recorded).name}'"))
    out: dict[str, Any] = {"model": model, "pretrained": pretrained, "device": options.device,
                           "precision": options.precision, **options.load_kwargs(r)}
    if tw:
        out["text_weights"] = tw
    # rebuild the recorded activation (recipes from before it was recorded had open_clip's config default)
    out["quick_gelu"] = recorded_activation(r) == "quick_gelu"
    return out
