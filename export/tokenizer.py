"""open_clip's CLIP BPE tokenizer rebuilt as a Hugging Face ``tokenizers`` ``tokenizer.json`` (no torch needed to run it).

The pipeline mirrors ``open_clip.tokenizer.SimpleTokenizer`` (clean ``"lower"``, no reduction):

1. normalizer: the character fixes ftfy's ``fix_text`` applies to ordinary text (Latin ligatures, full-width
   characters, curly quotes, control characters), Unicode NFC, every run of Python whitespace → one space, strip,
   lowercase;
2. pre-tokenizer: CLIP's regex ``'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`` (matches kept,
   the rest dropped), then byte-level mapping (GPT-2's byte → unicode table, no prefix space);
3. model: BPE over 256 byte symbols, the same with ``</w>``, the 48,894 merges of ``bpe_simple_vocab_16e6.txt.gz``,
   then ``<start_of_text>`` = 49406 and ``<end_of_text>`` = 49407 (vocab 49,408), ``end_of_word_suffix="</w>"``;
4. post-processor: ``<start_of_text> … <end_of_text>``; truncation to the context length keeps the EOT last (as
   open_clip does); padding with id 0 to the context length.

What a ``tokenizer.json`` cannot do (exactly reproduced by :func:`cir_milvus.encoders.bundle_tokenizer.clean_text` in Python, which the onnxruntime
encoder runs before the tokenizer): ftfy's mojibake repair, HTML entity unescaping (``&amp;`` → ``&``), and the
context-dependent final sigma of Python's ``str.lower`` (``"ΟΔΟΣ"`` → ``"οδος"``; per-character lowercasing gives
``"οδοσ"``). Other runtimes (Node.js ...) using ``tokenizer.json`` alone differ from open_clip only on such text.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "CLIP_PRETOKENIZE_PATTERN",
    "EOT_ID",
    "SOT_ID",
    "build_clip_tokenizer",
    "default_bpe_path",
    "save_clip_tokenizer",
]

SOT_ID = 49406
EOT_ID = 49407
CLIP_PRETOKENIZE_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
"""open_clip's pre-tokenisation regex (its special-token alternatives are handled as added tokens instead)."""

# ftfy.chardata: SINGLE_QUOTE_RE / DOUBLE_QUOTE_RE (uncurl_quotes)
_SINGLE_QUOTES = "[\u02bc\u2018-\u201b]"
_DOUBLE_QUOTES = "[\u201c-\u201f]"


def default_bpe_path() -> Path:
    """open_clip's ``bpe_simple_vocab_16e6.txt.gz`` (found without importing open_clip, hence without torch)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        from cir_milvus.errors import BackendUnavailableError

        raise BackendUnavailableError(
            "open_clip is needed to find bpe_simple_vocab_16e6.txt.gz; pip install 'cir_milvus[export]' or pass "
            "bpe_path= explicitly"
        )
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP reversible byte → printable unicode table (same order as open_clip's)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _python_whitespace_class() -> str:
    """A regex character class of exactly the characters ``str.split()`` splits on."""
    chars = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    ranges: list[tuple[int, int]] = []
    for c in chars:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    body = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)
    return f"[{body}]+"


def _ftfy_char_maps() -> tuple[dict[str, str], str | None]:
    """ftfy's ligature + character-width tables and its control-character class, when ftfy is installed."""
    try:
        from ftfy.chardata import CONTROL_CHARS, LIGATURES, WIDTH_MAP
    except ImportError:
        return {}, None
    table: dict[str, str] = {}
    for mapping in (LIGATURES, WIDTH_MAP):
        for src, dst in mapping.items():
            table[chr(src)] = dst if isinstance(dst, str) else chr(dst)
    removed = sorted(c for c, v in CONTROL_CHARS.items() if v is None)
    control = "[" + "".join(f"\\x{{{c:x}}}" for c in removed) + "]" if removed else None
    return table, control


def build_clip_tokenizer(context_length: int = 77, bpe_path: str | os.PathLike[str] | None = None) -> Any:
    """Build a ``tokenizers.Tokenizer`` that reproduces open_clip's ``SimpleTokenizer`` ids.

    Args:
        context_length: padded/truncated length ``L`` (77 for CLIP, 32 for the demo model).
        bpe_path: the gzipped merges file; default open_clip's ``bpe_simple_vocab_16e6.txt.gz``.

    Returns:
        A ``tokenizers.Tokenizer`` whose ``encode(text).ids`` has length ``L``: SOT, BPE ids, EOT, zeros.

    Example:
        >>> tok = build_clip_tokenizer(8)  # doctest: +SKIP
        >>> tok.encode("a $ b").ids  # doctest: +SKIP
        [49406, 320, 259, 344, 49407, 0, 0, 0]
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    path = Path(bpe_path) if bpe_path is not None else default_bpe_path()
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]  # the 48,894 merges open_clip uses
    byte_syms = list(_bytes_to_unicode().values())
    vocab_list = byte_syms + [s + "</w>" for s in byte_syms] + ["".join(m) for m in merges]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    if len(vocab) != SOT_ID:
        raise ValueError(f"{path}: expected {SOT_ID} BPE entries, got {len(vocab)}")

    model = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix="")
    tok = Tokenizer(model)

    steps: list[Any] = []
    table, control = _ftfy_char_maps()
    for src, dst in table.items():  # ftfy fix_latin_ligatures + fix_character_width
        steps.append(normalizers.Replace(src, dst))
    steps.append(normalizers.Replace(Regex(_SINGLE_QUOTES), "'"))  # ftfy uncurl_quotes
    steps.append(normalizers.Replace(Regex(_DOUBLE_QUOTES), '"'))
    if control is not None:  # ftfy remove_control_chars
        steps.append(normalizers.Replace(Regex(control), ""))
    steps += [
        normalizers.NFC(),  # ftfy's final normalisation
        normalizers.Replace(Regex(_python_whitespace_class()), " "),  # whitespace_clean: " ".join(text.split())
        normalizers.Strip(),
        normalizers.Lowercase(),
    ]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_PRETOKENIZE_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.add_special_tokens(
        [AddedToken("<start_of_text>", special=True, normalized=True),
         AddedToken("<end_of_text>", special=True, normalized=True)]
    )
    if tok.token_to_id("<start_of_text>") != SOT_ID or tok.token_to_id("<end_of_text>") != EOT_ID:
        raise ValueError("special token ids do not match CLIP's 49406/49407")
    tok.post_processor = processors.TemplateProcessing(
        single="<start_of_text> $A <end_of_text>",
        special_tokens=[("<start_of_text>", SOT_ID), ("<end_of_text>", EOT_ID)],
    )
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    tok.enable_truncation(max_length=context_length)  # counts SOT/EOT: content is cut, EOT stays last
    tok.enable_padding(length=context_length, pad_id=0, pad_token=byte_syms[0])  # id 0 ("!"), as open_clip pads
    return tok


def save_clip_tokenizer(path: str | os.PathLike[str], context_length: int = 77,
                        bpe_path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``tokenizer.json`` (see :func:`build_clip_tokenizer`) and return its path."""
    out = Path(path)
    tok = build_clip_tokenizer(context_length, bpe_path)
    out.write_text(json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=None), encoding="utf-8")
    return out
