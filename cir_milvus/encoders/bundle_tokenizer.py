"""The bundle's text side without torch: open_clip's text cleaning and its CLIP BPE from ``tokenizer.json``.

Part of the bundle format (:mod:`cir_milvus.bundle`): the export checks that it reproduces open_clip's token ids,
and the onnxruntime backend tokenizes with it.
"""

from __future__ import annotations

import html
import os
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from cir_milvus._optional import available, require
from cir_milvus.errors import ConfigError

__all__ = ["BundleTokenizer", "clean_text"]

_FTFY = available("ftfy")


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
