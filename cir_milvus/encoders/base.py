"""The encoder interface shared by the torch, onnxruntime and fake backends, and the backend registry."""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.preprocess import default_decode, recorded_decode
from cir_milvus.registry import Registry
from cir_milvus.types import Embeddings, ImageInput

_E = TypeVar("_E")

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderBackend",
    "RebuildOptions",
    "check_text_lengths",
    "copy_with_decode",
    "create_encoder",
    "l2_normalize",
    "list_encoders",
    "register_encoder",
    "text_truncation",
]


def copy_with_decode(encoder: _E, decode: str) -> _E:
    """``encoder`` decoding images with ``decode``: a shallow copy sharing everything (model, sessions, tokenizer)
    but ``preprocess_config``, or ``encoder`` itself when it already decodes so. The one implementation behind the
    backends' ``with_decode``.

    Raises:
        ConfigError: ``decode`` is not ``"exact"``, ``"reduce"`` or ``"draft"``.
    """
    current = encoder.preprocess_config  # type: ignore[attr-defined]
    cfg = current.with_decode(default_decode(current, decode))
    if cfg is current:
        return encoder
    out = copy.copy(encoder)
    out.preprocess_config = cfg  # type: ignore[attr-defined]
    return out


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> Embeddings:
    """Row-wise L2 normalisation of ``[N, D]`` (float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)


# -- over-long texts ------------------------------------------------------------------------------------------------
# Tokenizers silently cut texts at the context length (open_clip keeps the first L-1 tokens plus EOT). Encoders check
# the untruncated token count first and refuse over-long texts unless the caller asked for truncation, either per
# call (``encode_texts(..., truncate=True)``) or for a block of code (``with text_truncation(): ...``, which is how
# ``CIRCollection.search(..., truncate=True)`` reaches the encoder through the composers).
_TRUNCATE: ContextVar[bool] = ContextVar("cir_milvus_truncate_text", default=False)


@contextlib.contextmanager
def text_truncation(enabled: bool = True) -> Iterator[None]:
    """Allow (``enabled=True``) or refuse over-long texts in encoder calls made inside the block (this thread)."""
    token = _TRUNCATE.set(enabled)
    try:
        yield
    finally:
        _TRUNCATE.reset(token)


def check_text_lengths(texts: Sequence[str], counts: Sequence[int], context_length: int,
                       truncate: bool | None = None) -> None:
    """Refuse (or, when truncation is allowed, warn about) texts whose token count exceeds the context length.

    Args:
        texts: the texts.
        counts: their token counts without truncation, start and end tokens included (0 = unknown).
        context_length: the text tower's limit.
        truncate: allow truncation; ``None`` means the enclosing :func:`text_truncation` setting (default no).

    Raises:
        ConfigError: a text is too long and truncation was not requested (the message names the limit).
    """
    over = [(i, n) for i, n in enumerate(counts) if n > context_length]
    if not over:
        return
    i, n = over[0]
    preview = texts[i] if len(texts[i]) <= 60 else texts[i][:57] + "..."
    allow = _TRUNCATE.get() if truncate is None else truncate
    if not allow:
        raise ConfigError(
            f"text {preview!r} is {n} tokens but the text encoder's context length is {context_length} tokens "
            f"(start and end tokens included); shorten it, or pass truncate=True to keep its first "
            f"{context_length - 2} tokens" + (f" ({len(over)} of {len(texts)} texts are too long)" if len(over) > 1
                                                else "")
        )
    warnings.warn(
        f"{len(over)} text(s) longer than the context length of {context_length} tokens were truncated "
        f"(the first, {preview!r}, has {n} tokens)",
        UserWarning,
        stacklevel=3,
    )


@runtime_checkable
class Encoder(Protocol):
    """What every backend offers. Outputs are float32 numpy arrays ``[N, D]``.

    Attributes:
        dim: embedding dimension D.
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:0"``...).
        context_length: token sequence length of the text tower.
        recipe: a JSON-able description of the backbone (model, weights, checksum, preprocessing, dim) that the
            collection stores and compares on open. Weights are identified by ``weights_sha256`` plus a tag,
            ``hf-hub:`` id or file; local paths in it are only hints (a collection stores them portably, see
            :meth:`cir_milvus.storage.recipe.Recipe.portable`), and
            :func:`~cir_milvus.encoders.rebuild.encoder_from_recipe` rebuilds the encoder from it.
    """

    dim: int
    device: str
    context_length: int

    @property
    def recipe(self) -> dict[str, Any]: ...

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 64,
        normalize: bool = True,
        preprocess: str | None = None,
        progress: bool = False,
    ) -> Embeddings:
        """Encode images (paths, bytes or PIL). ``normalize=False`` returns the raw projected embedding."""
        ...

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 256, normalize: bool = True,
                     truncate: bool | None = None) -> Embeddings:
        """Encode texts with the text tower.

        Texts longer than ``context_length`` tokens raise :class:`~cir_milvus.errors.ConfigError` unless
        ``truncate=True`` (or inside :func:`text_truncation`), which warns and keeps the first tokens.
        """
        ...

    def encode_texts_with_pseudo_tokens(
        self,
        texts: Sequence[str],
        pseudo_tokens: np.ndarray,
        *,
        placeholder: str = "$",
        batch_size: int = 256,
        normalize: bool = True,
    ) -> Embeddings:
        """Encode prompts whose placeholder token row is overwritten by ``pseudo_tokens[i]`` (``[N, width]``)."""
        ...

    def token_width(self) -> int:
        """Width of the text tower's token embeddings (the dimension of a pseudo token)."""
        ...

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids ``[N, context_length]`` (int64)."""
        ...


@dataclass(frozen=True)
class RebuildOptions:
    """How :func:`~cir_milvus.encoders.rebuild.encoder_from_recipe` asks a backend to rebuild an encoder.

    Attributes:
        device: ``"cpu"``, ``"cuda"``... (``None``: the backend's default).
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` (backends that fix it at export ignore it).
        text_weights: a tuned text tower to swap in (backends that cannot refuse it with a ConfigError).
        base_dir: the collection's folder: relative hints in the recipe start there.
        search_path: extra folders to look for files in (see :mod:`cir_milvus.artifacts`).
    """

    device: str | None = None
    precision: str | None = None
    text_weights: str | None = None
    base_dir: str | os.PathLike[str] | None = None
    search_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None

    def load_kwargs(self, recipe: Mapping[str, Any]) -> dict[str, Any]:
        """The preprocessing options every backend rebuilds with: the recorded mode, image loading and decode
        mode (passed explicitly, since an encoder's own default may differ from what the gallery used)."""
        pre = recipe.get("preprocess") or {}
        out: dict[str, Any] = {"preprocess": pre.get("mode", "clip"), "decode": recorded_decode(pre)}
        if pre.get("loading"):  # benchmark collections decode as the official code does
            out["image_loading"] = pre["loading"]
        return out


class EncoderBackend(ABC):
    """The base of a registered encoder backend class: how it is built from a name and rebuilt from a recipe.

    A backend class also implements :class:`Encoder`. Register one with ``@register_encoder("name")``, or from
    another package through the ``cir_milvus.encoders`` entry-point group.
    """

    @classmethod
    @abstractmethod
    def from_name(cls, model: str, pretrained: str | None = None, **options: Any) -> Encoder:
        """Build the encoder :func:`create_encoder` asks for (``model`` / ``pretrained`` as given there)."""

    @classmethod
    @abstractmethod
    def from_recipe(cls, recipe: Mapping[str, Any], options: RebuildOptions) -> Encoder:
        """Rebuild the encoder a collection's recipe (its ``encoder`` dict, ``backend`` naming this class) records.

        Raises:
            ModelNotFoundError: a file the recipe names is not found with the recorded checksum.
            ConfigError: the recipe cannot be rebuilt by this backend (the message says what to pass instead).
        """


ENCODERS: Registry[type[EncoderBackend]] = Registry("encoder backend", EncoderBackend, group="cir_milvus.encoders")
"""The encoder backends (``torch``, ``onnx``, ``fake`` and plugins), by name."""

_EB = TypeVar("_EB", bound=type[EncoderBackend])


def register_encoder(name: str) -> Callable[[_EB], _EB]:
    """Class decorator registering an :class:`EncoderBackend` subclass under ``name`` (duplicates are rejected)."""

    def deco(cls: _EB) -> _EB:
        ENCODERS.add(name, cls)
        return cls

    return deco


def list_encoders() -> list[str]:
    """Names of the registered encoder backends."""
    return ENCODERS.list()


def create_encoder(model: str, pretrained: str | None = None, *, backend: str | None = None, **kwargs: Any) -> Encoder:
    """Build an encoder by name.

    Args:
        model: open_clip model name (``"ViT-B-32"``), ``"hf-hub:org/repo"``, the demo model ``"cir-demo-tiny"``,
            ``"bundle:PATH"`` for an exported ONNX bundle, or ``"fake"``.
        pretrained: open_clip tag (``"openai"``), a local checkpoint path, or ``"cir-demo"`` for the shipped demo
            weights. Ignored for ``hf-hub:`` and bundles.
        backend: ``"torch"``, ``"onnx"`` or ``"fake"``; inferred from ``model`` when omitted.
        **kwargs: backend options (``device``, ``precision``...).

    Raises:
        ConfigError: unknown backend.

    Example:
        >>> enc = create_encoder("fake", dim=8)
        >>> enc.encode_texts(["a red star"]).shape
        (1, 8)
    """
    if backend is None:
        backend = "onnx" if model.startswith("bundle:") else "fake" if model == "fake" else "torch"
    return ENCODERS.get(backend).from_name(model, pretrained, **kwargs)
