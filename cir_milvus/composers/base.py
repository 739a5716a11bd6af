"""The composer interface and its registry (extensible through the ``cir_milvus.composers`` entry-point group).

A composer turns a batch of reference-image embeddings and modification texts into query vectors. Third-party
packages add composers by subclassing :class:`Composer` and declaring an entry point::

    [project.entry-points."cir_milvus.composers"]
    mine = "my_pkg.composers:MyComposer"

Example:
    >>> from cir_milvus.composers import get_composer, list_composers
    >>> "slerp" in list_composers()
    True
    >>> get_composer("slerp", alpha=0.9).params["alpha"]
    0.9
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from cir_milvus.encoders.base import Encoder, l2_normalize
from cir_milvus.errors import ConfigError
from cir_milvus.registry import Registry
from cir_milvus.types import Embeddings

__all__ = ["COMPOSERS", "Composer", "get_composer", "list_composers", "register_composer"]

ENTRY_POINT_GROUP = "cir_milvus.composers"


class Composer(ABC):
    """Turns (reference image embeddings, texts) into query vectors.

    Subclasses set ``name``, ``defaults`` (their parameters and default values) and implement :meth:`compose`.

    Attributes:
        name: registry name.
        defaults: parameter names and default values; unknown parameters are rejected.
        needs_image: whether a reference image is required.
        needs_text: whether a text is required.
        preprocess: query-side image preprocessing (``None`` = the collection's).
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    needs_image: ClassVar[bool] = True
    needs_text: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ConfigError(
                f"composer {self.name!r} got unknown parameter(s) {sorted(unknown)}; "
                f"it accepts {sorted(self.defaults) or 'none'}"
            )
        self.params: dict[str, Any] = {**self.defaults, **{k: v for k, v in params.items() if v is not None}}
        self.validate()

    @property
    def preprocess(self) -> str | None:
        return None

    def validate(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Check ``self.params``; raise :class:`ConfigError` on bad values."""

    def with_params(self, **overrides: Any) -> Composer:
        """A copy with some parameters replaced (``None`` values are ignored)."""
        merged = {**self.params, **{k: v for k, v in overrides.items() if v is not None}}
        return type(self)(**merged)

    def config(self) -> dict[str, Any]:
        """JSON-able description stored in the collection recipe."""
        return {"name": self.name, "params": dict(self.params)}

    def text_features(self, encoder: Encoder, texts: Sequence[Any]) -> Any:
        """Work on the texts alone, independent of the image; ``None`` (the default) when there is none.

        :meth:`CIRCollection.compose <cir_milvus.CIRCollection.compose>` runs it while the reference image decodes
        and encodes, and hands the result back as ``compose(..., text_features=...)``; a composer that returns
        something here must accept that keyword.
        """
        return None

    @abstractmethod
    def compose(self, encoder: Encoder, image_embeddings: Embeddings | None, texts: Sequence[str]) -> Embeddings:
        """Compose query vectors.

        Args:
            encoder: the collection's encoder (text tower, device, pseudo-token injection).
            image_embeddings: RAW (un-normalised) reference embeddings ``[N, D]``, or ``None`` when
                ``needs_image`` is False.
            texts: ``N`` modification texts.

        Returns:
            L2-normalised float32 query vectors ``[N, D]``.
        """


C = TypeVar("C", bound=type[Composer])


def _set_name(name: str, cls: type[Composer]) -> None:
    cls.name = name


COMPOSERS: Registry[type[Composer]] = Registry("composer", Composer, group=ENTRY_POINT_GROUP, on_register=_set_name)
"""The composer registry (built-ins register on import of :mod:`cir_milvus.composers`; plugins through the
``cir_milvus.composers`` entry-point group)."""


def register_composer(name: str) -> Callable[[C], C]:
    """Class decorator registering a :class:`Composer` subclass under ``name`` (sets its ``name``).

    Raises:
        ConfigError: the name is taken or the class is not a Composer subclass.
    """

    def deco(cls: C) -> C:
        COMPOSERS.add(name, cls)
        return cls

    return deco


def list_composers() -> list[str]:
    """Names of every available composer (built-in and plugins)."""
    return COMPOSERS.list()


def get_composer(name: str, **params: Any) -> Composer:
    """Instantiate a registered composer.

    Raises:
        ConfigError: unknown name (the message lists the available ones) or bad parameters.
    """
    return COMPOSERS.get(name)(**params)


def normalized(x: np.ndarray) -> Embeddings:
    return l2_normalize(x)


def as_text(text: Any) -> str:
    """A query text; a pair of captions (FashionIQ) becomes ``"{c1} and {c2}"`` with ``.?,`` stripped."""
    if isinstance(text, (tuple, list)):
        parts = [str(t).strip(" .?,") for t in text if str(t).strip(" .?,")]
        return " and ".join(parts)
    if not isinstance(text, str):
        raise ConfigError(f"a query text must be a string (or a pair of captions), got {type(text).__name__}")
    return text
