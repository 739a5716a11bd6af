"""The onnxruntime backend: serves an exported bundle (``cir-milvus export``) with numpy, onnxruntime and tokenizers.

This module never imports torch or open_clip. Images go through :mod:`cir_milvus.preprocess` (the same code the torch
backend uses), texts through the bundle's ``tokenizer.json`` after :func:`~cir_milvus.encoders.bundle_tokenizer.clean_text` (open_clip's text cleaning).

The bundle format (file names, manifest, checksums) is :mod:`cir_milvus.bundle`.

Example:
    >>> enc = create_encoder("bundle:./bundle")  # doctest: +SKIP
    >>> enc.encode_texts(["a red star"]).shape  # doctest: +SKIP
    (1, 128)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus._optional import require
from cir_milvus.artifacts import SearchPath, locate
from cir_milvus.bundle import (
    PREPROCESS,
    TOKENIZER,
    bundle_sha256,
    claimed_weights_sha256,
    load_manifest,
    session_options,
    verify_bundle,
)
from cir_milvus.encoders.base import (
    EncoderBackend,
    RebuildOptions,
    check_text_lengths,
    copy_with_decode,
    l2_normalize,
    register_encoder,
)
from cir_milvus.encoders.bundle_tokenizer import BundleTokenizer
from cir_milvus.encoders.prefix import length_batches
from cir_milvus.encoders.slots import mark_slot
from cir_milvus.errors import ConfigError
from cir_milvus.images import load_image
from cir_milvus.preprocess import PreprocessConfig, decode_size, default_decode, preprocess_batch
from cir_milvus.types import Embeddings, ImageInput

__all__ = ["BundleHead", "OrtEncoder", "locate_bundle"]

log = logging.getLogger(__name__)

def locate_bundle(recipe: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None,
                  search_path: SearchPath = None) -> Path:
    """The folder of the bundle an onnx recipe names, found by its content id (:func:`~cir_milvus.bundle.bundle_sha256`)
    through the collection's folder and the search path (see :mod:`cir_milvus.artifacts`).

    Raises:
        ConfigError: the recipe names no bundle location.
        ModelNotFoundError: no bundle with the recorded content id.
    """
    loc = str(recipe.get("location") or recipe.get("model") or "")
    hint = loc[len("bundle:"):] if loc.startswith("bundle:") else loc
    if not hint:
        raise ConfigError("the recipe's ONNX encoder has no bundle location; open with model='bundle:PATH'")
    fix = "open with model='bundle:NEW_PATH' (CLI: --model bundle:NEW_PATH)"
    if recipe.get("bundle_sha256"):
        return locate(hint, what="ONNX bundle", sha256=str(recipe["bundle_sha256"]), checksum=bundle_sha256,
                      want_dir=True, base_dir=base_dir, search_path=search_path, fix=fix)
    # recipes written before bundles had a content id: the manifest's claim names the bundle
    sha = recipe.get("weights_sha256")
    return locate(hint, what="ONNX bundle", sha256=str(sha) if sha else None, checksum=claimed_weights_sha256,
                  want_dir=True, base_dir=base_dir, search_path=search_path, fix=fix)


# -- sessions --------------------------------------------------------------------------------------------------------


def _pick_providers(ort: Any, device: str | None, providers: Sequence[Any] | None) -> tuple[list[Any], str]:
    """Execution providers and the resulting device name."""
    if providers is not None:
        provs = list(providers)
        first = provs[0] if provs else "CPUExecutionProvider"
        first = first[0] if isinstance(first, tuple) else first
        return provs, "cuda" if first == "CUDAExecutionProvider" else "cpu"
    have = ort.get_available_providers()
    want_gpu = device is not None and device.startswith("cuda")
    if device not in (None, "auto", "cpu") and not want_gpu:
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if device is not None and want_gpu:
        if "CUDAExecutionProvider" not in have:
            raise ConfigError(
                f"device={device!r} was requested but this onnxruntime has no CUDAExecutionProvider (available: "
                f"{', '.join(have)}); pip install 'cir_milvus[onnx-gpu]' (onnxruntime-gpu instead of onnxruntime), "
                "or use device='cpu'"
            )
        try:
            index = int(device.split(":", 1)[1]) if ":" in device else 0
        except ValueError:
            raise ConfigError(f"device must be 'cuda' or 'cuda:N', got {device!r}") from None
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], str(device)
    if device in (None, "auto") and "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"
    return ["CPUExecutionProvider"], "cpu"


class BundleHead:
    """A projection head served from a bundle's ``head_{name}.onnx`` (numpy in, numpy out).

    Mirrors the parts of :class:`cir_milvus.heads.Head` that composers read: ``kind``, ``template``,
    ``placeholder``, ``preprocess``, ``fiq_join``, ``input_dim``, ``output_dim``, ``config()`` and ``__call__``.
    """

    def __init__(self, encoder: OrtEncoder, name: str, meta: dict[str, Any]) -> None:
        self._encoder = encoder
        self.name = name
        self.meta = meta
        self.kind = str(meta.get("kind", name))
        self.template = str(meta["template"])
        self.placeholder = str(meta["placeholder"])
        self.preprocess = str(meta.get("preprocess", "clip"))
        self.fiq_join = str(meta.get("fiq_join", "both"))
        self.input_dim = int(encoder.dim)
        self.output_dim = int(encoder.token_width())
        self.device = encoder.device

    def __call__(self, image_embeddings: np.ndarray) -> np.ndarray:
        """Raw image embeddings ``[N, D]`` → pseudo tokens ``[N, W]`` (float32)."""
        return self._encoder.run_head(self.name, image_embeddings)

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.meta.items() if k not in ("file", "fused")}

    def __repr__(self) -> str:
        return f"BundleHead(name={self.name!r}, kind={self.kind!r}, {self.input_dim}->{self.output_dim})"


@register_encoder("onnx")
class OrtEncoder(EncoderBackend):
    """Image and text towers from an exported ONNX bundle behind the :class:`~cir_milvus.encoders.Encoder` interface.

    Args:
        bundle_dir: the folder written by :func:`cir_milvus_export.export_bundle` (or ``"bundle:PATH"``).
        providers: onnxruntime execution providers; default CUDA (when onnxruntime-gpu sees a GPU) then CPU.
        device: ``"cpu"``, ``"cuda"``/``"cuda:N"`` (an error if onnxruntime has no CUDA provider) or ``None``/``"auto"``.
        preprocess: gallery image preprocessing (``"clip"``, ``"targetpad"`` or ``"hf_clip"``); default the bundle's.
        image_loading: ``"product"`` or ``"official"`` (see :func:`cir_milvus.images.load_image`); default the
            bundle's.
        verify: check the sha256 of every bundle file against the manifest on load. Either way the bundle's content
            id is computed from the files (:func:`~cir_milvus.bundle.bundle_sha256`) and recorded in the recipe, so a collection built
            from this bundle refuses other weights even behind an edited manifest.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        decode: ``"exact"``, ``"reduce"`` or ``"draft"``; see :mod:`cir_milvus.preprocess`. Default (``None``): the
            mode the bundle's ``preprocess.json`` records, else the library default
            (:func:`~cir_milvus.preprocess.default_decode`: ``"reduce"`` for ``clip``/``targetpad`` with
            ``resize_mode="shortest"``, ``"exact"`` otherwise; see :func:`~cir_milvus.bundle.bundle_preprocess`). Recorded in the
            recipe; an existing collection decodes with its recorded mode whatever this one (:meth:`with_decode`).

    Raises:
        ModelNotFoundError: no bundle at ``bundle_dir``.
        ConfigError: a file was altered (checksum), or a GPU was asked for and is not available.
        BackendUnavailableError: onnxruntime or tokenizers is not installed.

    Example:
        >>> enc = OrtEncoder("bundle/")  # doctest: +SKIP
        >>> enc.encode_images(["cat.jpg"]).shape  # doctest: +SKIP
        (1, 512)
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike[str],
        providers: Sequence[Any] | None = None,
        device: str | None = None,
        *,
        preprocess: str | None = None,
        decode: str | None = None,
        verify: bool = True,
        threads: int | None = None,
        image_loading: str | None = None,
    ) -> None:
        self._ort = require("onnxruntime", purpose="the onnxruntime encoder backend")
        folder = os.fspath(bundle_dir)
        self.bundle_dir = Path(folder[len("bundle:"):] if folder.startswith("bundle:") else folder)
        self.manifest = load_manifest(self.bundle_dir)
        hashes = verify_bundle(self.bundle_dir, self.manifest) if verify else None
        # computed from the files as loaded, never read from the manifest (see bundle_sha256)
        self._bundle_sha256 = bundle_sha256(self.bundle_dir, self.manifest, file_hashes=hashes)
        m = self.manifest
        self.dim = int(m["dims"]["embed"])
        self.context_length = int(m["dims"]["context_length"])
        self._width = int(m["dims"]["token_width"])
        self.precision = str(m.get("precision", "fp32"))
        pre = json.loads((self.bundle_dir / m.get("preprocess", PREPROCESS)).read_text(encoding="utf-8"))
        cfg = PreprocessConfig.from_dict(pre).with_mode(preprocess).with_loading(image_loading)
        # None: the bundle's recorded mode, else the library default (the bundle rule, see bundle_preprocess)
        self.preprocess_config = cfg.with_decode(default_decode(cfg, decode if decode is not None else pre.get("decode")))
        self.tokenizer = BundleTokenizer(self.bundle_dir / m.get("tokenizer", TOKENIZER), self.context_length)
        self.providers, self.device = _pick_providers(self._ort, device, providers)
        self._want_gpu = device is not None and device.startswith("cuda")
        self._threads = threads
        self._spin = True
        self._sessions: dict[str, Any] = {}

    @classmethod
    def from_name(cls, model: str, pretrained: str | None = None, **options: Any) -> OrtEncoder:
        """``create_encoder("bundle:PATH", **options)`` (``precision`` is fixed at export and ignored).

        Raises:
            ConfigError: ``model`` is not ``"bundle:PATH"``.
        """
        if not model.startswith("bundle:"):
            raise ConfigError(f"the onnx backend takes model='bundle:PATH' (an exported bundle folder), got {model!r}")
        options.pop("precision", None)  # fixed at export time
        return cls(model[len("bundle:"):], **options)

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any], options: RebuildOptions) -> OrtEncoder:
        """Rebuild from an onnx recipe: the bundle is found by its content id (:func:`locate_bundle`).

        Raises:
            ConfigError: ``options.text_weights`` is set (a bundle's text tower is fixed at export).
            ModelNotFoundError: no bundle with the recorded content id.
        """
        if options.text_weights is not None:
            raise ConfigError(
                "text_weights= swaps a text tower in a torch encoder, but this collection is served by an ONNX "
                "bundle; export a bundle from TorchEncoder(model, pretrained, text_weights=PATH) and open with "
                "model='bundle:PATH' (or encoder=) instead"
            )
        folder = locate_bundle(recipe, options.base_dir, options.search_path)
        return cls(folder, device=options.device, **options.load_kwargs(recipe))

    def with_decode(self, decode: str) -> OrtEncoder:
        """This encoder decoding images with ``decode``: a shallow copy sharing the bundle, tokenizer and
        onnxruntime sessions, with only ``preprocess_config.decode`` replaced (``self`` when it already decodes so).

        :class:`~cir_milvus.CIRCollection` uses it to serve a collection with the mode its recipe records.

        Raises:
            ConfigError: ``decode`` is not ``"exact"``, ``"reduce"`` or ``"draft"``.
        """
        return copy_with_decode(self, decode)

    # -- metadata -------------------------------------------------------------------------------------------------
    @property
    def recipe(self) -> dict[str, Any]:
        src = self.manifest["source"]
        out = {
            "backend": "onnx",
            "location": f"bundle:{self.bundle_dir.resolve()}",  # a hint: collections store it portably
            "bundle_sha256": self._bundle_sha256,  # the bundle's content id
            "model": src["model"],
            "pretrained": src.get("pretrained"),
            "weights_sha256": src.get("weights_sha256"),
            "dim": self.dim,
            "preprocess": self.preprocess_config.to_dict(),
        }
        if src.get("activation"):  # QuickGELU or GELU in the exported towers (bundles before it: GELU)
            out["activation"] = src["activation"]
        if src.get("random_weights"):  # exported from random weights (export --random-weights): recorded loudly
            out["random_weights"] = True
        if src.get("text_weights_sha256"):  # exported with a swapped (RTD) text tower; the text graphs hold it
            out["text_weights_sha256"] = src["text_weights_sha256"]
        return out

    @property
    def graphs(self) -> list[str]:
        """Names of the graphs in the bundle (``image``, ``text``, ``text_pseudo``, ``head_*``, ``fused_*``)."""
        return sorted(self.manifest["graphs"])

    @property
    def heads(self) -> dict[str, BundleHead]:
        """The projection heads exported into the bundle, by name."""
        return {name: BundleHead(self, name, meta) for name, meta in self.manifest.get("heads", {}).items()}

    def token_width(self) -> int:
        return self._width

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        return self.tokenizer(texts)

    def placeholder_id(self, placeholder: str) -> int:
        """The single BPE id of a placeholder word (``$`` → 259, ``*`` → 265)."""
        known = self.manifest.get("placeholders", {})
        if placeholder in known:
            return int(known[placeholder])
        ids = self.tokenize([placeholder])[0]
        nz = ids[ids != 0]
        if len(nz) != 3:
            raise ConfigError(f"placeholder {placeholder!r} is not a single token for this tokenizer")
        return int(nz[1])

    # -- sessions -------------------------------------------------------------------------------------------------
    def set_threads(self, threads: int | None, *, spin: bool = True) -> tuple[int | None, bool]:
        """Change the intra-op threads (``None``: onnxruntime's choice) and spinning; returns the previous pair.

        Sessions are re-created on next use when anything changed. :func:`cir_milvus.ingest.ingest` calls this so
        that the encoder and the decode workers together use the machine's cores once, without busy-waiting.
        """
        prev = (self._threads, self._spin)
        if (threads, spin) != prev:
            self._threads, self._spin = threads, spin
            self._sessions.clear()
        return prev

    def session(self, name: str) -> Any:
        """The onnxruntime ``InferenceSession`` of graph ``name`` (created on first use)."""
        if name in self._sessions:
            return self._sessions[name]
        graphs = self.manifest["graphs"]
        if name not in graphs:
            raise ConfigError(f"bundle {self.bundle_dir} has no graph {name!r}; it has {', '.join(sorted(graphs))}")
        opts = session_options(self._ort, self.manifest, self._threads, self._spin)
        sess = self._ort.InferenceSession(str(self.bundle_dir / graphs[name]["file"]), sess_options=opts,
                                          providers=self.providers)
        used = sess.get_providers()
        if self.device.startswith("cuda") and "CUDAExecutionProvider" not in used:
            msg = (f"onnxruntime could not start the CUDA provider for {name!r} (no usable GPU / CUDA libraries); "
                   f"running on {used}")
            if self._want_gpu:
                raise ConfigError(msg + "; use device='cpu' or fix the CUDA installation")
            log.warning(msg)
            self.device = "cpu"
        self._sessions[name] = sess
        return sess

    def run(self, name: str, **inputs: np.ndarray) -> np.ndarray:
        """Run graph ``name`` on numpy inputs and return its (single) output as float32."""
        return np.asarray(self.session(name).run(None, inputs)[0], dtype=np.float32)

    # -- encoding -------------------------------------------------------------------------------------------------
    def _batched(self, name: str, n: int, batch_size: int, feed: Any, width: int | None = None) -> np.ndarray:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        outs = [self.run(name, **feed(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, width or self.dim), dtype=np.float32)

    def _out(self, x: np.ndarray, normalize: bool) -> Embeddings:
        return l2_normalize(x) if normalize else x.astype(np.float32)

    def pixels(self, images: Sequence[ImageInput], preprocess: str | None = None) -> np.ndarray:
        """Decode and preprocess images to float32 ``[N, 3, S, S]`` (the exact input of ``image.onnx``)."""
        cfg = self.preprocess_config.with_mode(preprocess)
        return preprocess_batch([load_image(im, mode=cfg.loading, draft=decode_size(cfg)) for im in images], cfg)

    def encode_pixels(self, pixels: np.ndarray, *, normalize: bool = True, batch_size: int = 64) -> Embeddings:
        """Encode preprocessed pixels ``[N, 3, S, S]``."""
        pix = np.ascontiguousarray(pixels, dtype=np.float32)
        out = self._batched("image", len(pix), batch_size, lambda a, b: {"pixels": pix[a:b]})
        return self._out(out, normalize)

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 64,
        normalize: bool = True,
        preprocess: str | None = None,
        progress: bool = False,
    ) -> Embeddings:
        from tqdm.auto import tqdm

        outs = []
        for s in tqdm(range(0, len(images), batch_size), desc="encode images", unit="batch", disable=not progress):
            outs.append(self.encode_pixels(self.pixels(images[s : s + batch_size], preprocess), normalize=False))
        out = np.concatenate(outs) if outs else np.zeros((0, self.dim), dtype=np.float32)
        return self._out(out, normalize)

    def _text_batched(self, name: str, ids: np.ndarray, batch_size: int, feed: Any) -> np.ndarray:
        """Run a text graph over ``ids`` ``[N, L]`` in batches; ``feed(rows, n)`` gives the inputs of ``ids[rows]``
        cut to ``n`` positions. Bundles whose text graphs take any length (``text_prefix`` in the manifest) batch
        rows of similar length and run only their pooled prefix, as the torch encoder does; older bundles run all
        ``L`` positions in input order."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        prefix = self.manifest.get("text_prefix")
        pool = str(prefix.get("pool", "argmax")) if isinstance(prefix, dict) else "full"  # "full": no cut
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for rows, n in length_batches(ids, batch_size, pool):
            out[rows] = self.run(name, **feed(rows, n))  # [len(rows), D]
        return out

    def encode_ids(self, input_ids: np.ndarray, *, normalize: bool = True, batch_size: int = 256) -> Embeddings:
        """Encode token ids ``[N, L]`` (int64) with ``text.onnx`` (over their pooled prefix when the bundle can)."""
        ids = self._check_ids(input_ids)
        out = self._text_batched("text", ids, batch_size, lambda rows, n: {"input_ids": ids[rows, :n]})
        return self._out(out, normalize)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.token_counts(texts)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 256, normalize: bool = True,
                     truncate: bool | None = None) -> Embeddings:
        """Encode texts. Over-long texts raise ``ConfigError`` unless ``truncate=True`` (warns, then truncates)."""
        check_text_lengths(texts, self.token_counts(texts), self.context_length, truncate)
        return self.encode_ids(self.tokenize(texts), normalize=normalize, batch_size=batch_size)

    def encode_texts_with_pseudo_tokens(
        self,
        texts: Sequence[str],
        pseudo_tokens: np.ndarray,
        *,
        placeholder: str = "$",
        batch_size: int = 256,
        normalize: bool = True,
        slot: int | None = 0,
    ) -> Embeddings:
        """As :meth:`TorchEncoder.encode_texts_with_pseudo_tokens`: ``slot`` picks the placeholder token that
        gets the pseudo token (``0`` first, negative from the end, ``None`` all); the graph injects at the id
        :func:`~cir_milvus.encoders.slots.mark_slot` marks, so bundles exported before slots existed agree too."""
        check_text_lengths(texts, self.token_counts(texts), self.context_length)
        pid = self.placeholder_id(placeholder)
        ids = self.tokenize(texts)
        missing = [t for t, row in zip(texts, ids, strict=True) if not (row == pid).any()]
        if missing:
            raise ConfigError(
                f"prompt {missing[0]!r} has no placeholder token {placeholder!r} (after tokenization/truncation); "
                f"write the template with a free-standing {placeholder!r}, e.g. 'a photo of {placeholder} that {{}}'"
            )
        tok = np.ascontiguousarray(pseudo_tokens, dtype=np.float32)
        if tok.shape != (len(texts), self._width):
            raise ConfigError(f"pseudo_tokens must have shape [{len(texts)}, {self._width}], got {list(tok.shape)}")

        def feed(rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
            marked, inject_id = mark_slot(ids[rows], pid, slot)  # the sentinel id is below EOT: same prefix
            return {"input_ids": np.ascontiguousarray(marked[:, :n]), "pseudo_token": tok[rows],
                    "placeholder_id": np.asarray([inject_id], dtype=np.int64)}

        return self._out(self._text_batched("text_pseudo", ids, batch_size, feed), normalize)

    def run_head(self, name: str, image_embeddings: np.ndarray) -> np.ndarray:
        """Pseudo tokens ``[N, W]`` from raw image embeddings ``[N, D]`` with ``head_{name}.onnx``."""
        x = np.ascontiguousarray(image_embeddings, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]  # [D] -> [1, D]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(f"head {name!r} takes raw image embeddings [N, {self.dim}], got {list(x.shape)}")
        return self._batched(f"head_{name}", len(x), 1024, lambda a, b: {"image_embeds": x[a:b]}, self._width)

    def compose_slerp(self, pixels: np.ndarray, texts: Sequence[str], alpha: float | np.ndarray = 0.8) -> Embeddings:
        """One fused pass: slerp(normalised image, normalised text, alpha) → L2-normalised queries ``[N, D]``.

        ``alpha`` weights the text (Jang et al., ECCV'24); a scalar or one value per query.
        """
        ids = self.tokenize(texts)
        a = np.asarray(alpha, dtype=np.float32).reshape(-1)  # [1] or [N]
        return self.run("fused_slerp", pixels=np.ascontiguousarray(pixels, dtype=np.float32), input_ids=ids, alpha=a)

    def compose_head(self, name: str, pixels: np.ndarray, prompts: Sequence[str]) -> Embeddings:
        """One fused pass of ``fused_{name}.onnx``: image → head → pseudo token in the prompt → normalised query.

        The fused graph injects at every placeholder token, so prompts must hold exactly one (a user's own ``$``
        would take the token too); use :meth:`encode_texts_with_pseudo_tokens` for prompts with more.
        """
        ids = self.tokenize(prompts)
        head = self.heads.get(name)
        if head is not None:
            counts = (ids == self.placeholder_id(head.placeholder)).sum(axis=1)
            if (counts != 1).any():
                bad = int(np.flatnonzero(counts != 1)[0])
                raise ConfigError(
                    f"prompt {prompts[bad]!r} has {int(counts[bad])} placeholder tokens {head.placeholder!r}; the "
                    "fused graph needs exactly one (use encode_texts_with_pseudo_tokens, which fills the template's)"
                )
        return self.run(f"fused_{name}", pixels=np.ascontiguousarray(pixels, dtype=np.float32), input_ids=ids)

    def _check_ids(self, input_ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] != self.context_length:
            raise ConfigError(f"input_ids must be [N, {self.context_length}] int64, got {list(ids.shape)}")
        return ids

    def __repr__(self) -> str:
        src = self.manifest["source"]
        return (f"OrtEncoder({str(self.bundle_dir)!r}, model={src['model']!r}, dim={self.dim}, "
                f"precision={self.precision!r}, device={self.device!r})")
