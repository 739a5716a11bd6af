"""The baselines every ZS-CIR paper reports (Pic2Word ``eval_utils``): image only, text only, normalised sum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from cir_milvus.composers.base import Composer, as_text, register_composer
from cir_milvus.composers.slerp import _normalize, to_numpy
from cir_milvus.encoders.base import Encoder
from cir_milvus.errors import ConfigError
from cir_milvus.types import Embeddings

__all__ = ["ImageOnlyComposer", "SumComposer", "TextOnlyComposer"]


def _require_image(name: str, image_embeddings: Embeddings | None) -> Embeddings:
    if image_embeddings is None:
        raise ConfigError(f"composer {name!r} needs a reference image (or ref_id)")
    return image_embeddings


@register_composer("image")
class ImageOnlyComposer(Composer):
    """The normalised reference-image embedding (the text is ignored)."""

    needs_text: ClassVar[bool] = False

    def compose(self, encoder: Encoder, image_embeddings: Embeddings | None, texts: Sequence[str]) -> Embeddings:
        return to_numpy(_normalize(_require_image(self.name, image_embeddings)))


@register_composer("text")
class TextOnlyComposer(Composer):
    """The modification text encoded alone (the image is ignored)."""

    needs_image: ClassVar[bool] = False

    def compose(self, encoder: Encoder, image_embeddings: Embeddings | None, texts: Sequence[str]) -> Embeddings:
        return to_numpy(encoder.encode_texts([as_text(t) for t in texts], normalize=True))


@register_composer("sum")
class SumComposer(Composer):
    """``normalize(normalize(image) + normalize(text))``."""

    def text_features(self, encoder: Encoder, texts: Sequence[Any]) -> Any:
        return encoder.encode_texts([as_text(t) for t in texts], normalize=True)

    def compose(self, encoder: Encoder, image_embeddings: Embeddings | None, texts: Sequence[str], *,
                text_features: Any = None) -> Embeddings:
        img = _normalize(_require_image(self.name, image_embeddings))
        txt = text_features if text_features is not None else self.text_features(encoder, texts)
        return to_numpy(_normalize(img + txt))
