"""Head kinds and their defaults: the one table the loaders, composers, the CLI, the service and the demo read.

Each kind (``pic2word``, ``searle``, ``lincir``) is a :class:`HeadDefaults` in the :data:`HEADS` registry: the prompt
and preprocessing conventions its method was trained and evaluated with, the checkpoint key holding its state dict,
and the module class it is built as. Another package can add a kind through the ``cir_milvus.heads`` entry-point
group (an instance of :class:`HeadDefaults` whose ``arch`` is one of the module classes). Needs no torch.

Example:
    >>> list_heads()
    ['lincir', 'pic2word', 'searle']
    >>> head_defaults("searle").placeholder
    '$'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cir_milvus.errors import ConfigError
from cir_milvus.registry import Registry

__all__ = ["ARCHS", "HEADS", "HEAD_DEFAULTS", "HeadDefaults", "head_defaults", "list_heads"]

ARCHS = ("Pic2WordMapper", "SearlePhi")
"""The projection-network classes a head kind can be built as (:mod:`cir_milvus.heads.modules`)."""


@dataclass(frozen=True)
class HeadDefaults:
    """The prompt and preprocessing conventions a head was trained and evaluated with.

    Attributes:
        template: prompt with the placeholder and one ``{}`` for the modification text.
        placeholder: the single-BPE-token word whose embedding row is overwritten.
        preprocess: query/gallery image preprocessing (``"clip"``, ``"targetpad"`` or ``"hf_clip"``).
        fiq_join: how two captions are joined (see :func:`cir_milvus.composers.pseudo.join_captions`).
        wrapper_key: the checkpoint dict key holding the head's state dict.
        arch: the module class it is built as (one of :data:`ARCHS`).
    """

    template: str
    placeholder: str
    preprocess: str
    fiq_join: str
    wrapper_key: str
    arch: str = "SearlePhi"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"head arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")


HEADS: Registry[HeadDefaults] = Registry("head kind", HeadDefaults, group="cir_milvus.heads", instances=True)
"""The head kinds, by name (methods.md §2-4)."""

HEADS.add("pic2word", HeadDefaults("a photo of * , {}", "*", "clip", "reversed", "state_dict_img2text",
                                   arch="Pic2WordMapper"))
HEADS.add("searle", HeadDefaults("a photo of $ that {}", "$", "targetpad", "both", "Phi"))
HEADS.add("lincir", HeadDefaults("a photo of $ that {}", "$", "hf_clip", "both", "Phi"))  # HF CLIPImageProcessor

HEAD_DEFAULTS: Mapping[str, HeadDefaults] = HEADS.mapping()
"""Read-only view of :data:`HEADS`: kind → :class:`HeadDefaults`."""


def list_heads() -> list[str]:
    """The head kinds :func:`~cir_milvus.heads.load_head` understands (for choices in the CLI, service and demo)."""
    return HEADS.list()


def head_defaults(kind: str) -> HeadDefaults:
    """The defaults of head kind ``kind``.

    Raises:
        ConfigError: unknown kind (the message lists the known ones).
    """
    return HEADS.get(kind)
