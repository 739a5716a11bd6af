"""A deterministic, dependency-free encoder for tests: hashes pixels and words into fixed random directions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cir_milvus.encoders.base import EncoderBackend, RebuildOptions, check_text_lengths, l2_normalize, register_encoder
from cir_milvus.errors import ConfigError
from cir_milvus.images import load_image
from cir_milvus.types import Embeddings, ImageInput

__all__ = ["FakeEncoder"]


def _direction(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim)


@register_encoder("fake")
class FakeEncoder(EncoderBackend):
    """Deterministic stand-in for a CLIP encoder.

    Images map to a fixed projection of their 8×8 thumbnail; a text is the sum of one random direction per word.
    Pseudo-token prompts add the pseudo token (projected to ``dim``) to the text vector. Same input, same output,
    in any process.

    Args:
        dim: embedding dimension.
        seed: changes every direction (a "different model").
    """

    context_length = 77

    def __init__(self, dim: int = 32, seed: int = 0, **_: Any) -> None:
        if dim < 2:
            raise ConfigError(f"dim must be >= 2, got {dim}")
        self.dim = dim
        self.seed = seed
        self.device = "cpu"
        rng = np.random.default_rng(seed)
        self._pixel_proj = rng.standard_normal((8 * 8 * 3, dim)) / 8.0
        self._token_proj = rng.standard_normal((dim, dim)) / np.sqrt(dim)

    @classmethod
    def from_name(cls, model: str = "fake", pretrained: str | None = None, **options: Any) -> FakeEncoder:
        """``create_encoder("fake", dim=..., seed=...)``."""
        return cls(**options)

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any], options: RebuildOptions) -> FakeEncoder:
        """Refused: a fake encoder is a test double, passed explicitly.

        Raises:
            ConfigError: always (the message says what to pass).
        """
        raise ConfigError("this collection was built with a FakeEncoder; pass encoder=FakeEncoder(dim=..., seed=...)")

    @property
    def recipe(self) -> dict[str, Any]:
        return {"backend": "fake", "model": "fake", "pretrained": f"seed={self.seed}", "weights_sha256": None,
                "dim": self.dim, "preprocess": {"image_size": 8, "resize": "bilinear"}}

    def token_width(self) -> int:
        return self.dim

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for i, t in enumerate(texts):
            ids = [int.from_bytes(hashlib.sha256(w.encode()).digest()[:2], "little") + 1 for w in t.split()]
            ids = ids[: self.context_length]
            out[i, : len(ids)] = ids
        return out

    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 64,
        normalize: bool = True,
        preprocess: str | None = None,
        progress: bool = False,
    ) -> Embeddings:
        rows = []
        for im in images:
            thumb = np.asarray(load_image(im).resize((8, 8)), dtype=np.float64).reshape(-1) / 255.0 - 0.5
            rows.append(thumb @ self._pixel_proj)
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)
        return l2_normalize(x) if normalize else x * 3.0

    def _text_vec(self, text: str) -> np.ndarray:
        words = text.lower().split() or [""]
        return np.sum([_direction(f"{self.seed}:{w}", self.dim) for w in words], axis=0)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text without truncation (one per word, plus start and end tokens)."""
        return [len(t.split()) + 2 for t in texts]

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 256, normalize: bool = True,
                     truncate: bool | None = None) -> Embeddings:
        check_text_lengths(texts, self.token_counts(texts), self.context_length, truncate)
        texts = [" ".join(t.split()[: self.context_length - 2]) for t in texts]
        x = np.asarray([self._text_vec(t) for t in texts], dtype=np.float32).reshape(len(texts), self.dim)
        return l2_normalize(x) if normalize else x

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
        check_text_lengths(texts, self.token_counts(texts), self.context_length)
        tokens = np.asarray(pseudo_tokens, dtype=np.float64).reshape(len(texts), -1)
        rows = []
        for t, tok in zip(texts, tokens):
            words = t.split()
            where = [i for i, w in enumerate(words) if w == placeholder]
            if not where:
                raise ConfigError(f"prompt {t!r} has no placeholder token {placeholder!r}")
            slots = where if slot is None else [where[slot]]  # the slot's word gets the token, others stay words
            for i in slots:
                words[i] = ""
            rows.append(self._text_vec(" ".join(words)) + 4.0 * len(slots) * (tok @ self._token_proj))
        x = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return l2_normalize(x) if normalize else x


