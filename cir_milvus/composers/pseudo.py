"""Pseudo-word-token composers: Pic2Word, SEARLE, LinCIR, and their slerp combination.

A projection head φ maps the RAW reference-image embedding to one token (methods.md §0). The token overwrites the
placeholder's embedding row in a prompt such as ``"a photo of $ that {text}"``; the text tower then encodes the
prompt and the L2-normalised feature is the query (Pic2Word, Saito et al. CVPR'23 §3; SEARLE, Baldrati et al.
ICCV'23 §4; LinCIR, Gu et al. CVPR'24 §3). One text-encoder pass per prompt.

FashionIQ-style queries carry two captions (a tuple/list instead of a string), joined as the papers do (§1):

- ``fiq_join="both"`` (SEARLE, LinCIR): strip ``.?, `` from each caption, encode ``"{c1} and {c2}"`` and
  ``"{c2} and {c1}"``, L2-normalise each, average, re-normalise.
- ``fiq_join="reversed"`` (Pic2Word): one prompt with ``"{c2} and {c1}"`` (captions as given).
- ``fiq_join="forward"``: one prompt with ``"{c1} and {c2}"``.

Example:
    >>> from cir_milvus.composers.pseudo import join_captions
    >>> join_captions(("is red.", "has long sleeves?"), "both")
    ['is red and has long sleeves', 'has long sleeves and is red']
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from cir_milvus.composers.base import Composer, register_composer
from cir_milvus.composers.slerp import _normalize, slerp, to_numpy
from cir_milvus.encoders.base import Encoder
from cir_milvus.encoders.capabilities import BundleHeadLike, SupportsDeviceOutput, SupportsPseudoTokens
from cir_milvus.errors import ConfigError, RecipeMismatchError
from cir_milvus.heads import Head, load_head
from cir_milvus.preprocess import MODES
from cir_milvus.types import Embeddings

__all__ = [
    "CombinedComposer",
    "LinCIRComposer",
    "Pic2WordComposer",
    "PseudoTokenComposer",
    "SearleComposer",
    "check_template",
    "composer_head",
    "join_captions",
    "template_slot",
]

FIQ_JOIN_STYLES = ("both", "reversed", "forward")
SLOT_RULES = ("template", "all")
OFFICIAL_SLOT_RULE = {"pic2word": "template", "searle": "template", "lincir": "all"}
"""What each method's official code overwrites: SEARLE/Pic2Word the first placeholder (the template's), LinCIR
every ``$`` of the prompt. The library default is ``"template"`` for all; the evaluation runner uses this table."""
_STRIP = ".?, "
Query = str | Sequence[str]


def join_captions(captions: Sequence[str], style: str) -> list[str]:
    """Join two relative captions into the text(s) that fill the template's ``{}``.

    Args:
        captions: ``(c1, c2)``.
        style: ``"both"`` (SEARLE/LinCIR: ``.?, `` stripped, both orders, averaged by the composer),
            ``"reversed"`` (Pic2Word: ``"{c2} and {c1}"``) or ``"forward"`` (``"{c1} and {c2}"``).

    Returns:
        One or two texts; the composer averages the normalised features of several.

    Raises:
        ConfigError: not exactly two strings, or an unknown style.
    """
    if isinstance(captions, str) or len(captions) != 2 or not all(isinstance(c, str) for c in captions):
        raise ConfigError(f"a two-caption query must be a tuple/list of two strings, got {captions!r}")
    c1, c2 = captions
    if style == "both":
        s1, s2 = c1.strip(_STRIP), c2.strip(_STRIP)
        return [f"{s1} and {s2}", f"{s2} and {s1}"]
    if style == "reversed":
        return [f"{c2} and {c1}"]
    if style == "forward":
        return [f"{c1} and {c2}"]
    raise ConfigError(f"fiq_join must be one of {list(FIQ_JOIN_STYLES)}, got {style!r}")


def check_template(template: Any, placeholder: str) -> str:
    """Validate a prompt template: exactly one ``{}`` and a free-standing ``placeholder`` word.

    Raises:
        ConfigError: the template is not a string, has no/several/named fields, or lacks the placeholder.
    """
    if not isinstance(template, str):
        raise ConfigError(f"template must be a string like 'a photo of {placeholder} that {{}}', got {template!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ConfigError(f"template {template!r} is not a valid format string: {e}") from e
    if fields != [""]:
        raise ConfigError(
            f"template {template!r} must contain exactly one '{{}}' where the modification text goes "
            f"(found fields {fields}); e.g. 'a photo of {placeholder} that {{}}'"
        )
    if placeholder not in template.replace("{}", " ").split():
        raise ConfigError(
            f"template {template!r} has no free-standing placeholder {placeholder!r} (the word whose embedding the "
            f"pseudo token replaces); e.g. 'a photo of {placeholder} that {{}}', or set placeholder=..."
        )
    return template


def template_slot(template: str, placeholder: str) -> int:
    """Index of the template's own placeholder among the placeholder tokens of a filled prompt.

    ``0`` (the first) when the placeholder comes before ``{}``, as in every method's template; otherwise counted
    from the end (``-k``, ``k`` = placeholder words from the template's one to the end), so a placeholder in the
    user's text never takes the pseudo token.

    Example:
        >>> template_slot("a photo of $ that {}", "$"), template_slot("{} , like $", "$")
        (0, -1)
    """
    before, _, after = template.partition("{}")
    if placeholder in before.split():
        return 0
    words = after.split()
    return -words[words.index(placeholder):].count(placeholder)


class PseudoTokenComposer(Composer):
    """Shared implementation of the pseudo-token methods; subclasses set ``head_kind``.

    Params:
        head: a :class:`~cir_milvus.heads.Head`, a source for :func:`~cir_milvus.heads.load_head` (local file,
            saved folder, ``"hf-hub:org/repo/filename"``), or a head config dict from a collection recipe
            (``{"source": ..., "weights_sha256": ...}``; a different checksum raises ``RecipeMismatchError``).
        template: prompt with the placeholder and one ``{}``; default: the head's (the method's) template.
        placeholder: the word replaced by the token (``$`` for SEARLE/LinCIR, ``*`` for Pic2Word).
        preprocess: query-image preprocessing (``"clip"``, ``"targetpad"`` or ``"hf_clip"``; LinCIR's default is
            ``"hf_clip"``, the Hugging Face ``CLIPImageProcessor`` its evaluation uses).
        fiq_join: how two-caption queries are joined (``"both"``, ``"reversed"``, ``"forward"``).
        slots: which placeholder tokens of the prompt get the pseudo token: ``"template"`` (default; only the
            template's, so a user's "under $50" keeps its ``$``; SEARLE's and Pic2Word's rule) or ``"all"``
            (LinCIR's official evaluation, which overwrites every ``$``).
    """

    head_kind: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {
        "head": None,
        "template": None,
        "placeholder": None,
        "preprocess": None,
        "fiq_join": None,
        "slots": "template",
    }

    def validate(self) -> None:
        p = self.params
        head = p["head"] = resolve_head(self.head_kind, p["head"], composer=self.name)
        p["placeholder"] = p["placeholder"] or head.placeholder
        if not isinstance(p["placeholder"], str) or len(p["placeholder"].split()) != 1:
            raise ConfigError(f"placeholder must be one word such as '$' or '*', got {p['placeholder']!r}")
        p["template"] = check_template(p["template"] or head.template, p["placeholder"])
        p["preprocess"] = p["preprocess"] or head.preprocess
        if p["preprocess"] not in MODES:
            raise ConfigError(f"preprocess must be one of {list(MODES)}, got {p['preprocess']!r}")
        if p["slots"] not in SLOT_RULES:
            raise ConfigError(f"slots must be one of {list(SLOT_RULES)}, got {p['slots']!r}")
        p["fiq_join"] = p["fiq_join"] or head.fiq_join
        if p["fiq_join"] not in FIQ_JOIN_STYLES:
            raise ConfigError(f"fiq_join must be one of {list(FIQ_JOIN_STYLES)}, got {p['fiq_join']!r}")

    @property
    def head(self) -> Any:
        return self.params["head"]

    @property
    def preprocess(self) -> str | None:
        return str(self.params["preprocess"])

    def config(self) -> dict[str, Any]:
        params = dict(self.params)
        params["head"] = self.head.config()
        return {"name": self.name, "params": params}

    def prompts(self, texts: Sequence[Query], template: str | None = None) -> tuple[list[str], np.ndarray]:
        """The prompts to encode and, for each, the index of its query (two-caption queries give 1 or 2 prompts).

        Returns:
            ``(prompts, owner)`` with ``owner`` int64 ``[P]``.
        """
        tpl = self.params["template"] if template is None else check_template(template, self.params["placeholder"])
        prompts: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            fills = [t] if isinstance(t, str) else join_captions(t, self.params["fiq_join"])
            prompts.extend(tpl.format(f) for f in fills)
            owner.extend([i] * len(fills))
        return prompts, np.asarray(owner, dtype=np.int64)

    def compose_device(
        self, encoder: Encoder, image_embeddings: Embeddings | None, texts: Sequence[Query], template: str | None = None
    ) -> Any:
        """Like :meth:`compose` but returns the encoder's device tensor when it offers one (torch), else numpy."""
        if image_embeddings is None:
            raise ConfigError(f"composer {self.name!r} needs a reference image (or ref_id)")
        if len(image_embeddings) != len(texts):
            raise ConfigError(f"got {len(image_embeddings)} reference embeddings for {len(texts)} texts")
        head = self.head
        width = encoder.token_width() if isinstance(encoder, SupportsPseudoTokens) else None
        if width is not None and width != head.output_dim:
            raise ConfigError(
                f"the {head.kind} head produces {head.output_dim}-d tokens but the encoder's text tower is "
                f"{width} wide; use the backbone the head was trained with"
            )
        prompts, owner = self.prompts(texts, template)
        placeholder = self.params["placeholder"]
        tpl = self.params["template"] if template is None else template
        slot = None if self.params["slots"] == "all" else template_slot(tpl, placeholder)
        slot_kw: dict[str, Any] = {} if slot == 0 else {"slot": slot}  # encoders without slots: first placeholder
        if isinstance(encoder, SupportsDeviceOutput):
            import torch

            if head.device != str(encoder.device):
                head.to(encoder.device)
            tok = head(encoder.to_device(image_embeddings))  # [N, W]
            idx = torch.as_tensor(owner, device=tok.device)
            dfeats: Any = encoder.encode_texts_with_pseudo_tokens(  # type: ignore[call-arg]
                prompts, tok[idx], placeholder=placeholder, normalize=True, device_output=True, **slot_kw
            )  # [P, D] unit rows on the encoder's device
            if len(prompts) == len(texts):
                return dfeats
            dout = torch.zeros(len(texts), dfeats.shape[-1], device=dfeats.device, dtype=dfeats.dtype)
            return _normalize(dout.index_add_(0, idx.to(dfeats.device), dfeats))  # [N, D]
        tok = np.asarray(head(np.asarray(image_embeddings, dtype=np.float32)))  # [N, W]
        feats = np.asarray(
            encoder.encode_texts_with_pseudo_tokens(prompts, tok[owner], placeholder=placeholder, normalize=True,
                                                    **slot_kw)
        )  # [P, D]
        if len(prompts) == len(texts):
            return feats
        out = np.zeros((len(texts), feats.shape[-1]), dtype=np.float64)
        np.add.at(out, owner, feats)  # sum of the unit vectors of each query's prompts
        return _normalize(out)

    def compose(
        self,
        encoder: Encoder,
        image_embeddings: Embeddings | None,
        texts: Sequence[Query],
        *,
        template: str | None = None,
    ) -> Embeddings:
        """Compose queries; ``template`` overrides the configured template for this call only.

        Args:
            encoder: the collection's encoder (same backbone as the head).
            image_embeddings: RAW reference-image embeddings ``[N, D]``.
            texts: ``N`` modification texts; an element may be a pair of captions (FashionIQ).
            template: per-call template (must contain the placeholder and one ``{}``).

        Returns:
            L2-normalised float32 ``[N, D]``.
        """
        return to_numpy(_normalize(self.compose_device(encoder, image_embeddings, texts, template)))


def resolve_head(kind: str, head: Any, composer: str = "") -> Any:
    """Turn a composer's ``head`` parameter into a :class:`~cir_milvus.heads.Head` of ``kind``."""
    name = composer or kind
    if head is None:
        raise ConfigError(
            f"composer {name!r} needs a {kind} projection head: pass composer_params={{'head': 'path/to/head.pt'}} "
            f"(a .pt/.safetensors file, a folder saved with Head.save(), or 'hf-hub:org/repo/filename'), a Head "
            f"from cir_milvus.heads.load_head({kind!r}, ...), or CIRCollection.create(..., "
            f"composer=ComposerSpec({name!r}, head=...))"
        )
    if isinstance(head, Head):
        if head.kind != kind:
            raise ConfigError(f"composer {name!r} got a {head.kind!r} head; use composer {head.kind!r} for it")
        return head
    if isinstance(head, (str, os.PathLike)):
        return load_head(kind, head)
    if not isinstance(head, Mapping) and isinstance(head, BundleHeadLike):
        # a head served from an ONNX bundle (cir_milvus.encoders.ort.BundleHead): numpy in, numpy out, no torch
        if head.kind != kind:
            raise ConfigError(f"composer {name!r} got a {head.kind!r} head; use composer {head.kind!r} for it")
        return head
    if isinstance(head, Mapping) and "source" in head:
        if head.get("kind", kind) != kind:
            raise ConfigError(f"composer {name!r} got a {head['kind']!r} head config; use composer {head['kind']!r}")
        if not head["source"]:
            raise ConfigError(
                f"the recipe's {kind} head has no source (it was built from in-memory weights); pass the head "
                "again: composer_params={'head': ...}"
            )
        loaded = load_head(kind, head["source"])
        want = head.get("weights_sha256")
        if want and loaded.weights_sha256 != want:
            raise RecipeMismatchError(
                f"the {kind} head at {head['source']!r} has weights sha256 {loaded.weights_sha256[:12]}… but the "
                f"recipe expects {str(want)[:12]}…; pass the head the collection was built with"
            )
        for key in ("template", "placeholder", "preprocess", "fiq_join"):
            if head.get(key):
                setattr(loaded, key, head[key])
        return loaded
    raise ConfigError(
        f"head must be a Head, a path, an 'hf-hub:org/repo/filename' id or a head config dict, got {type(head).__name__}"
    )


@register_composer("pic2word")
class Pic2WordComposer(PseudoTokenComposer):
    """Pic2Word (CVPR'23): ``"a photo of * , {}"``, CLIP preprocessing, FashionIQ ``"{c2} and {c1}"``."""

    head_kind: ClassVar[str] = "pic2word"


@register_composer("searle")
class SearleComposer(PseudoTokenComposer):
    """SEARLE / SEARLE-XL (ICCV'23): ``"a photo of $ that {}"``, targetpad preprocessing, both caption orders."""

    head_kind: ClassVar[str] = "searle"


@register_composer("lincir")
class LinCIRComposer(PseudoTokenComposer):
    """LinCIR (CVPR'24): ``"a photo of $ that {}"``, Hugging Face ``CLIPImageProcessor`` preprocessing
    (``hf_clip``), both caption orders; ``slots="all"`` reproduces its evaluation's every-``$`` injection."""

    head_kind: ClassVar[str] = "lincir"


_BASES: dict[str, type[PseudoTokenComposer]] = {
    "pic2word": Pic2WordComposer,
    "searle": SearleComposer,
    "lincir": LinCIRComposer,
}


@register_composer("combined")
class CombinedComposer(Composer):
    """Slerp between the normalised reference image and a pseudo-token composed vector.

    ``q = slerp(norm(image), pseudo(image, text), alpha)`` (Jang et al. ECCV'24 interpolation applied to the
    Pic2Word/SEARLE/LinCIR query instead of the bare text): ``alpha=0`` → image only, ``alpha=1`` → the base
    composer's query.

    Params:
        base: ``"pic2word"``, ``"searle"`` or ``"lincir"`` (inferred from a Head or head config when omitted).
        alpha: weight of the composed side in [0, 1] (default 0.8).
        head, template, placeholder, preprocess, fiq_join, slots: passed to the base composer.
    """

    defaults: ClassVar[dict[str, Any]] = {"base": None, "alpha": 0.8, **PseudoTokenComposer.defaults}

    def validate(self) -> None:
        p = self.params
        alpha = p["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"combined alpha must be a number in [0, 1] (it weights the composed side), got {alpha!r}")
        p["alpha"] = float(alpha)
        head = p["head"]
        base = p["base"] or (head.get("kind") if isinstance(head, Mapping) else
                             head.kind if isinstance(head, (Head, BundleHeadLike)) else None)
        if base not in _BASES:
            raise ConfigError(f"combined composer needs base= one of {sorted(_BASES)}, got {p['base']!r}")
        p["base"] = base
        self.inner = _BASES[base](**{k: p[k] for k in PseudoTokenComposer.defaults})
        p.update(self.inner.params)

    @property
    def preprocess(self) -> str | None:
        return self.inner.preprocess

    @property
    def head(self) -> Any:
        """The projection head of the pseudo-token side."""
        return self.inner.head

    def config(self) -> dict[str, Any]:
        params = dict(self.params)
        params["head"] = self.inner.head.config()
        return {"name": self.name, "params": params}

    def compose(
        self,
        encoder: Encoder,
        image_embeddings: Embeddings | None,
        texts: Sequence[Query],
        *,
        template: str | None = None,
    ) -> Embeddings:
        if image_embeddings is None:
            raise ConfigError("composer 'combined' needs a reference image (or ref_id)")
        composed = self.inner.compose_device(encoder, image_embeddings, texts, template)  # [N, D], unit rows
        img: Any = image_embeddings
        if isinstance(encoder, SupportsDeviceOutput) and not isinstance(composed, np.ndarray):
            img = encoder.to_device(image_embeddings)  # composed on the device: slerp there
        return to_numpy(slerp(_normalize(img), composed, self.params["alpha"]))


def composer_head(composer: Composer) -> Any | None:
    """The projection head a composer runs (a :class:`~cir_milvus.heads.Head` or a bundle's head), ``None`` for
    composers without one (slerp, the baselines, plugins)."""
    return composer.head if isinstance(composer, (PseudoTokenComposer, CombinedComposer)) else None
