"""The onnxruntime backend: serves an exported bundle (``cir-milvus export``) with numpy, onnxruntime and tokenizers.

This module never imports torch or open_clip. Images go through :mod:`cir_milvus.preprocess` (the same code the torch
backend uses), texts through the bundle's ``tokenizer.json`` after :func:`clean_text` (open_clip's text cleaning).

Bundle layout (see ``export/README.md``)::

    manifest.json      source model, dims, placeholder ids, composer defaults, sha256 of every file
    image.onnx         pixels float32 [B, 3, S, S]            -> image_embeds float32 [B, D] (raw)
    text.onnx          input_ids int64 [B, L]                 -> text_embeds float32 [B, D] (raw)
    text_pseudo.onnx   input_ids, pseudo_token [B, W], placeholder_id int64 [1] -> text_embeds [B, D] (raw)
    head_{name}.onnx   image_embeds [B, D]                    -> pseudo_token [B, W]
    fused_slerp.onnx   pixels, input_ids, alpha float32 [1]   -> query [B, D] (L2-normalised)
    fused_{name}.onnx  pixels, input_ids (prompt with the placeholder) -> query [B, D] (L2-normalised)
    weights.bin        the graphs' weights, shared between graphs (ONNX external data)
    tokenizer.json, preprocess.json, reference.npz, parity.json

Example:
    >>> enc = create_encoder("bundle:./bundle")  # doctest: +SKIP
    >>> enc.encode_texts(["a red star"]).shape  # doctest: +SKIP
    (1, 128)
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cir_milvus._optional import available, require
from cir_milvus.encoders.base import check_text_lengths, copy_with_decode, l2_normalize, register_encoder
from cir_milvus.encoders.slots import mark_slot
from cir_milvus.errors import ConfigError, ModelNotFoundError
from cir_milvus.images import load_image
from cir_milvus.preprocess import PreprocessConfig, decode_size, default_decode, preprocess_batch
from cir_milvus.types import Embeddings, ImageInput

__all__ = ["BUNDLE_FORMAT", "BundleHead", "BundleTokenizer", "OrtEncoder", "bundle_preprocess", "bundle_sha256",
           "clean_text", "load_manifest", "session_options", "verify_bundle"]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "cir_milvus-onnx-bundle"
"""The ``format`` field of a bundle's ``manifest.json``."""
MANIFEST = "manifest.json"
_FTFY = available("ftfy")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``manifest.json`` of a bundle.

    Raises:
        ModelNotFoundError: the folder or its manifest does not exist.
        ConfigError: the manifest is not a cir_milvus bundle manifest.
    """
    folder = Path(bundle_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelNotFoundError(
            f"no ONNX bundle at {folder} ({MANIFEST} missing); create one with "
            "`cir-milvus export --model ... --out DIR` (or cir_milvus_export.export_bundle)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{path} is not a cir_milvus bundle manifest (format != {BUNDLE_FORMAT!r})")
    return manifest


_CONTENT_SUFFIXES = (".onnx", ".bin", ".data")
"""Files whose bytes compute the embeddings: graphs and their external weights (plus the tokenizer and
preprocessing files the manifest names)."""


def _content_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    names = {p.name for p in folder.iterdir() if p.is_file() and p.suffix in _CONTENT_SUFFIXES}
    names.update(str(manifest.get(key, default)) for key, default in (("tokenizer", "tokenizer.json"),
                                                                       ("preprocess", "preprocess.json")))
    return sorted(names)


def bundle_sha256(bundle_dir: str | os.PathLike[str], manifest: dict[str, Any] | None = None, *,
                  file_hashes: dict[str, str] | None = None) -> str | None:
    """The content id of a bundle, computed from its files (never taken from the manifest); ``None`` when the
    folder holds no bundle manifest. Collections record it to refuse other weights and to find a moved bundle.

    sha256 over ``name\0sha256(file)\n`` for every ONNX graph, every external-data file (``*.bin``, ``*.data``)
    and the tokenizer and preprocessing files, sorted by name. Any change of weights, graphs, tokenizer or
    preprocessing changes it; the manifest, reports (``parity.json``, ``reference.npz``) and other files do not.
    The encoder recipe records it as ``bundle_sha256``: a collection built from a bundle refuses a bundle whose
    manifest was edited to match other weights (the manifest's own checksums agree with such files by construction).

    Args:
        bundle_dir: the bundle folder.
        manifest: its manifest (read when omitted).
        file_hashes: sha256 by file name already computed from the files (by :func:`verify_bundle`).

    Raises:
        ConfigError: a content file named by the manifest is missing.
    """
    folder = Path(bundle_dir)
    if manifest is None:
        if not (folder / MANIFEST).is_file():
            return None
        manifest = load_manifest(folder)
    h = hashlib.sha256()
    for name in _content_files(folder, manifest):
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"bundle {folder} is incomplete: {name} is missing")
        digest = (file_hashes or {}).get(name) or _sha256(path)
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def verify_bundle(bundle_dir: str | os.PathLike[str], manifest: dict[str, Any] | None = None) -> dict[str, str]:
    """Check every file listed in the manifest against its sha256, and that every graph and weights file in the
    folder is listed (an unlisted ``.onnx`` / ``.bin`` cannot slip in beside an edited manifest).

    This catches files altered after export. A manifest rewritten to match other weights passes this check by
    construction: that case is caught by the collection's recipe, which records :func:`bundle_sha256`.

    Returns:
        sha256 by file name, computed from the files.

    Raises:
        ConfigError: a file is missing, unlisted, or was altered after export (the message names it).
    """
    folder = Path(bundle_dir)
    manifest = manifest if manifest is not None else load_manifest(folder)
    listed = manifest.get("files", {})
    if not isinstance(listed, dict) or not listed:
        raise ConfigError(f"{folder / MANIFEST} lists no files with checksums; re-export the bundle")
    unlisted = sorted(n for n in _content_files(folder, manifest) if n not in listed)
    if unlisted:
        raise ConfigError(
            f"bundle {folder} holds {', '.join(unlisted)} which {MANIFEST} does not list with a checksum; remove "
            "them or re-export the bundle (or pass verify=False if you changed it on purpose)"
        )
    hashes: dict[str, str] = {}
    for name, want in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"bundle {folder} is incomplete: {name} is listed in {MANIFEST} but missing")
        got = _sha256(path)
        if got != want:
            raise ConfigError(
                f"bundle file {path} was altered after export: sha256 {got[:16]}… != {want[:16]}… in {MANIFEST}; "
                "re-export the bundle (or pass verify=False if you changed it on purpose)"
            )
        hashes[name] = got
    return hashes


def bundle_preprocess(cfg: PreprocessConfig) -> dict[str, Any]:
    """The ``preprocess.json`` of a bundle exported from an encoder preprocessing with ``cfg``.

    The bundle rule for the decode mode: a ``"decode"`` key is written only when ``cfg.decode`` differs from the
    library default for ``cfg`` (:func:`~cir_milvus.preprocess.default_decode`), and :class:`OrtEncoder` reads a
    missing key as that default. So a bundle exported from a default encoder holds the same ``preprocess.json``
    (and keeps the same :func:`bundle_sha256`) as one exported before the default changed, and serves with the
    same mode as the torch encoder it came from; an encoder built with another mode on purpose records it.
    Collections record their own mode either way (a bundle's only sets the default of new collections).
    """
    d = cfg.to_dict()
    d.pop("decode", None)
    if cfg.decode != default_decode(cfg):
        d["decode"] = cfg.decode
    return d


# -- text ------------------------------------------------------------------------------------------------------------


def clean_text(text: str, normalizer: Any = None) -> str:
    """open_clip's ``"lower"`` text cleaning: ftfy, HTML unescaping (twice), whitespace collapsing, lowercasing.

    Without ftfy installed, ``normalizer`` (the bundle tokenizer's, which holds ftfy's character tables: ligatures,
    full-width forms, curly quotes, control characters) stands in for it; only mojibake repair is lost.
    """
    if _FTFY:
        import ftfy

        text = ftfy.fix_text(text)
    elif normalizer is not None:
        text = normalizer.normalize_str(text.lower())  # str.lower first: it knows the final sigma
    else:
        text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


class BundleTokenizer:
    """open_clip's CLIP tokenizer without torch: :func:`clean_text` then the bundle's ``tokenizer.json``.

    Args:
        path: the ``tokenizer.json`` written by the export (padding and truncation to ``L`` built in).
        context_length: ``L``; checked against the file.

    Example:
        >>> tok = BundleTokenizer("bundle/tokenizer.json", 77)  # doctest: +SKIP
        >>> tok(["a $ b"])[0, :5]  # doctest: +SKIP
        array([49406,   320,   259,   344, 49407])
    """

    def __init__(self, path: str | os.PathLike[str], context_length: int) -> None:
        tokenizers = require("tokenizers", purpose="tokenizing text for the onnxruntime backend")
        self._tok = tokenizers.Tokenizer.from_file(str(path))
        self.context_length = int(context_length)
        self._normalizer = self._tok.normalizer
        # clean_text does all the normalizer does (exactly as open_clip, with ftfy), so the tokenizer skips it
        self._tok.normalizer = tokenizers.normalizers.Sequence([])
        self._tok.enable_truncation(max_length=self.context_length)
        self._tok.enable_padding(length=self.context_length, pad_id=0, pad_token="!")

    def clean(self, text: str) -> str:
        return clean_text(text, self._normalizer)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids ``[N, L]`` int64: SOT, BPE ids, EOT, zero padding (the EOT is kept when truncating)."""
        if isinstance(texts, str):
            texts = [texts]
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise ConfigError(f"texts must be strings, got {type(bad[0]).__name__}")
        if not texts:
            return np.zeros((0, self.context_length), dtype=np.int64)
        enc = self._tok.encode_batch([self.clean(t) for t in texts])
        return np.asarray([e.ids for e in enc], dtype=np.int64)  # [N, L]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text before truncation (start and end tokens included; approximate beyond ``L``)."""
        if not texts:
            return []
        enc = self._tok.encode_batch([self.clean(t) for t in texts])
        return [sum(e.attention_mask) + sum(sum(o.attention_mask) for o in e.overflowing) for e in enc]


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


def session_options(ort: Any, manifest: dict[str, Any], threads: int | None = None, spin: bool = True) -> Any:
    """``SessionOptions`` honouring the manifest's runtime hints (fp16 bundles use the "extended" level).

    ``spin=False`` stops idle intra-op threads from busy-waiting, which only costs when the cores are shared (decode
    workers beside the encoder during ingestion).
    """
    opts = ort.SessionOptions()
    level = manifest.get("runtime", {}).get("graph_optimization_level")
    if level is not None:
        opts.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


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


class OrtEncoder:
    """Image and text towers from an exported ONNX bundle behind the :class:`~cir_milvus.encoders.Encoder` interface.

    Args:
        bundle_dir: the folder written by :func:`cir_milvus_export.export_bundle` (or ``"bundle:PATH"``).
        providers: onnxruntime execution providers; default CUDA (when onnxruntime-gpu sees a GPU) then CPU.
        device: ``"cpu"``, ``"cuda"``/``"cuda:N"`` (an error if onnxruntime has no CUDA provider) or ``None``/``"auto"``.
        preprocess: gallery image preprocessing (``"clip"``, ``"targetpad"`` or ``"hf_clip"``); default the bundle's.
        image_loading: ``"product"`` or ``"official"`` (see :func:`cir_milvus.images.load_image`); default the
            bundle's.
        verify: check the sha256 of every bundle file against the manifest on load. Either way the bundle's content
            id is computed from the files (:func:`bundle_sha256`) and recorded in the recipe, so a collection built
            from this bundle refuses other weights even behind an edited manifest.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        decode: ``"exact"``, ``"reduce"`` or ``"draft"``; see :mod:`cir_milvus.preprocess`. Default (``None``): the
            mode the bundle's ``preprocess.json`` records, else the library default
            (:func:`~cir_milvus.preprocess.default_decode`: ``"reduce"`` for ``clip``/``targetpad`` with
            ``resize_mode="shortest"``, ``"exact"`` otherwise; see :func:`bundle_preprocess`). Recorded in the
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

    supports_device_output = False

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
        pre = json.loads((self.bundle_dir / m.get("preprocess", "preprocess.json")).read_text(encoding="utf-8"))
        cfg = PreprocessConfig.from_dict(pre).with_mode(preprocess).with_loading(image_loading)
        # None: the bundle's recorded mode, else the library default (the bundle rule, see bundle_preprocess)
        self.preprocess_config = cfg.with_decode(default_decode(cfg, decode if decode is not None else pre.get("decode")))
        self.tokenizer = BundleTokenizer(self.bundle_dir / m.get("tokenizer", "tokenizer.json"), self.context_length)
        self.providers, self.device = _pick_providers(self._ort, device, providers)
        self._want_gpu = device is not None and device.startswith("cuda")
        self._threads = threads
        self._spin = True
        self._sessions: dict[str, Any] = {}

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

    def encode_ids(self, input_ids: np.ndarray, *, normalize: bool = True, batch_size: int = 256) -> Embeddings:
        """Encode token ids ``[N, L]`` (int64) with ``text.onnx``."""
        ids = self._check_ids(input_ids)
        return self._out(self._batched("text", len(ids), batch_size, lambda a, b: {"input_ids": ids[a:b]}), normalize)

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

        def feed(a: int, b: int) -> dict[str, np.ndarray]:
            marked, inject_id = mark_slot(ids[a:b], pid, slot)
            return {"input_ids": marked, "pseudo_token": tok[a:b],
                    "placeholder_id": np.asarray([inject_id], dtype=np.int64)}

        out = self._batched("text_pseudo", len(ids), batch_size, feed)
        return self._out(out, normalize)

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


@register_encoder("onnx")
def _create_ort(model: str, pretrained: str | None = None, **kwargs: Any) -> OrtEncoder:
    if not model.startswith("bundle:"):
        raise ConfigError(f"the onnx backend takes model='bundle:PATH' (an exported bundle folder), got {model!r}")
    kwargs.pop("precision", None)  # fixed at export time
    return OrtEncoder(model[len("bundle:"):], **kwargs)
