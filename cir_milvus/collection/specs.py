"""Typed option groups for the collection layer: each kind of option is given once, as one value.

- :class:`EncoderSpec`: which encoder, and how to run it (model, pretrained, backend, device, precision, decode...).
- :class:`ComposerSpec`: the collection's default composer and its parameters (alpha, head...).
- :class:`IndexSpec`: the vector index type and its build parameters.
- :class:`FieldSpec`: typed scalar fields and the partition key.
- :class:`ConnectOptions`: how to reach Milvus (token, timeout, consistency, retries, TLS); given to
  :func:`cir_milvus.connect` once.

Example:
    >>> spec = EncoderSpec("cir-demo-tiny", "cir-demo", device="cpu")
    >>> spec.with_model("ViT-B-32", "openai").model
    'ViT-B-32'
    >>> ComposerSpec.of("pic2word").name
    'pic2word'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cir_milvus.errors import ConfigError
from cir_milvus.storage.retry import RetryPolicy
from cir_milvus.storage.store import Consistency

if TYPE_CHECKING:
    from cir_milvus.encoders.base import Encoder

__all__ = ["ComposerSpec", "ConnectOptions", "EncoderSpec", "FieldSpec", "IfExists", "IndexSpec", "ItemText"]

IfExists = Literal["fail", "open", "overwrite"]
"""What creating a collection that exists does: ``"fail"`` (ConfigError), ``"open"`` it (the recipe must match) or
``"overwrite"`` it (dropped only after everything new was validated)."""

IF_EXISTS: tuple[str, ...] = ("fail", "open", "overwrite")

ItemText = bool | Literal["full_text"]
"""A mixed gallery: ``True`` embeds each item's text in a second vector field; ``"full_text"`` also keeps the text
for BM25 full-text search (target ``"bm25"``)."""

DEFAULT_HNSW: dict[str, Any] = {"M": 16, "efConstruction": 200}


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder, and how to run it. Built by :meth:`build`; on ``open`` a spec without ``model`` means "the
    encoder the collection's recipe describes", run with this spec's ``device``/``precision``/``text_weights``.

    Attributes:
        model: open_clip name (``"ViT-B-32"``), ``"hf-hub:org/repo"``, ``"bundle:PATH"``, ``"cir-demo-tiny"``,
            ``"fake"``; ``None``: rebuild from the recipe (open) .
        pretrained: open_clip tag, checkpoint path, or ``"cir-demo"``.
        backend: ``"torch"``, ``"onnx"``, ``"fake"`` or a plugin's; inferred from ``model`` when ``None``.
        device: ``"cuda"``, ``"cpu"``...; default CUDA when available.
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"``; default fp16 on CUDA, else fp32.
        decode: image decode mode (``"exact"``, ``"reduce"``, ``"draft"``; see :mod:`cir_milvus.preprocess`).
        text_weights: a tuned text tower (RTD checkpoint) swapped into a torch encoder.
        options: other backend options (e.g. ``{"dim": 8}`` for ``"fake"``, ``{"image_loading": "official"}``).
    """

    model: str | None = None
    pretrained: str | None = None
    backend: str | None = None
    device: str | None = None
    precision: str | None = None
    decode: str | None = None
    text_weights: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def with_model(self, model: str | None, pretrained: str | None = None) -> EncoderSpec:
        """This spec naming ``model``/``pretrained`` (``None`` keeps the spec's own)."""
        if model is None and pretrained is None:
            return self
        if self.model is not None and model is not None and model != self.model:
            raise ConfigError(f"model={model!r} and EncoderSpec(model={self.model!r}) disagree: give the model once")
        return dataclasses.replace(self, model=model or self.model, pretrained=pretrained or self.pretrained)

    def build_options(self) -> dict[str, Any]:
        """Keyword arguments for the backend (``device`` and ``precision`` always; the others when set)."""
        kw: dict[str, Any] = {"device": self.device, "precision": self.precision}
        kw.update((k, v) for k, v in (("decode", self.decode), ("text_weights", self.text_weights)) if v is not None)
        kw.update(self.options)
        return kw

    def build(self) -> Encoder:
        """The encoder (:func:`cir_milvus.create_encoder`).

        Raises:
            ConfigError: no ``model``.
        """
        from cir_milvus.encoders.base import create_encoder

        if self.model is None:
            raise ConfigError("name the encoder: model='ViT-B-32', pretrained='openai' (or encoder=EncoderSpec(...) "
                              "or a ready encoder)")
        return create_encoder(self.model, self.pretrained, backend=self.backend, **self.build_options())


@dataclass(frozen=True)
class ComposerSpec:
    """A composer and its parameters: the collection's default (``create``), or an override (``open``).

    Attributes:
        name: ``slerp``, ``pic2word``, ``searle``, ``lincir``, ``combined``, ``image``, ``text``, ``sum`` or a plugin.
        alpha: shortcut for ``params["alpha"]``.
        head: shortcut for ``params["head"]``: a projection head (file, ``hf-hub:`` id or
            :class:`~cir_milvus.heads.Head`) for the pseudo-token composers.
        params: other composer parameters (``template``...).
    """

    name: str = "slerp"
    alpha: float | None = None
    head: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: str | ComposerSpec) -> ComposerSpec:
        """A spec from a composer name or a spec."""
        if isinstance(value, ComposerSpec):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"composer must be a composer name such as 'slerp' or a ComposerSpec; got {value!r}")
        return cls(value)

    def all_params(self) -> dict[str, Any]:
        """``params`` with ``alpha`` and ``head`` merged in (when set)."""
        out = dict(self.params)
        if self.alpha is not None:
            out["alpha"] = self.alpha
        if self.head is not None:
            out["head"] = self.head
        return out


@dataclass(frozen=True)
class IndexSpec:
    """The vector index: ``type`` (``HNSW``, ``IVF_FLAT``, ``FLAT``...; validated against the backend) and its build
    parameters (HNSW default ``{"M": 16, "efConstruction": 200}``)."""

    type: str = "HNSW"
    params: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, value: str | IndexSpec) -> IndexSpec:
        return value if isinstance(value, IndexSpec) else cls(str(value))

    def to_recipe(self) -> dict[str, Any]:
        kind = self.type.upper()
        params = self.params if self.params is not None else DEFAULT_HNSW if kind == "HNSW" else {}
        return {"type": kind, "params": dict(params)}


@dataclass(frozen=True)
class FieldSpec:
    """Typed scalar fields of a new collection, and the one to partition by.

    Attributes:
        types: ``{name: type}``, e.g. ``{"price": "double", "product": ("varchar", 64)}``: metadata keys of these names
            are stored in them (numeric filters such as ``price < 20``, ``group_by``).
        partition_key: one of ``types`` to partition by (multi-tenant catalogues).
    """

    types: Mapping[str, Any] = field(default_factory=dict)
    partition_key: str | None = None

    @classmethod
    def of(cls, value: Mapping[str, Any] | FieldSpec | None) -> FieldSpec:
        """A spec from ``{name: type}`` (no partition key), a spec, or ``None`` (no typed fields)."""
        if isinstance(value, FieldSpec):
            return value
        return cls(dict(value or {}))


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach Milvus, given once to :func:`cir_milvus.connect`.

    Attributes:
        token: ``"user:password"`` or an API key (servers only); never logged.
        timeout: seconds to wait for the server when connecting.
        consistency: consistency level of searches and lookups.
        retry: the retry policy of every storage call (default: 300 s of backoff).
        client_options: other ``MilvusClient`` arguments (TLS: ``secure``, ``server_pem_path``, ``db_name``...).
    """

    token: str | None = None
    timeout: float | None = 10.0
    consistency: Consistency = "Session"
    retry: RetryPolicy | None = None
    client_options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # the token never shows
        return (f"ConnectOptions(token={'***' if self.token else None}, timeout={self.timeout}, "
                f"consistency={self.consistency!r}, retry={self.retry!r})")


def check_if_exists(value: str) -> str:
    """``value`` if it is one of :data:`IfExists`.

    Raises:
        ConfigError: anything else.
    """
    if value not in IF_EXISTS:
        raise ConfigError(f"if_exists must be one of {', '.join(map(repr, IF_EXISTS))}; got {value!r}")
    return value
