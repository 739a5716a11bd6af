"""Optional encoder capabilities, as runtime-checkable Protocols.

Every encoder implements :class:`~cir_milvus.encoders.base.Encoder`. Some offer more, and callers ask with
``isinstance(encoder, SupportsPixels)`` rather than probing attributes by name:

- :class:`HasPreprocessConfig`: ``preprocess_config``, how its images are decoded (torch, onnx).
- :class:`SupportsDecodeModes`: ``with_decode(mode)``, a copy decoding another way (torch, onnx).
- :class:`SupportsPixels`: ``pixels(images)`` and ``encode_pixels(pixels)`` (torch, onnx).
- :class:`SupportsUint8`: ``encode_uint8(pixels)``, normalising on its device (torch).
- :class:`SupportsThreads`: ``set_threads(n, spin=)``, to share the cores (torch, onnx).
- :class:`SupportsDeviceOutput`: ``to_device(x)`` and ``device_output=True`` results (torch).
- :class:`SupportsPseudoTokens`: ``token_width()``, ``encode_texts_with_pseudo_tokens`` (torch, onnx, fake).
- :class:`HasBundleHeads`: ``heads``, projection heads shipped with the weights (onnx).
- :class:`HasExecutionProviders`: ``providers``, the onnxruntime providers, best first (onnx).

Example:
    >>> from cir_milvus.encoders import FakeEncoder
    >>> enc = FakeEncoder(dim=8)
    >>> isinstance(enc, SupportsPseudoTokens), isinstance(enc, SupportsPixels)
    (True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from cir_milvus.types import Embeddings, ImageInput

if TYPE_CHECKING:
    from cir_milvus.preprocess import PreprocessConfig

__all__ = [
    "BundleHeadLike",
    "HasBundleHeads",
    "HasExecutionProviders",
    "HasPrecision",
    "HasPreprocessConfig",
    "SupportsDecodeModes",
    "SupportsDeviceOutput",
    "SupportsPixelInput",
    "SupportsPixels",
    "SupportsPseudoTokens",
    "SupportsThreads",
    "SupportsUint8",
]


@runtime_checkable
class HasPreprocessConfig(Protocol):
    """An encoder that decodes and preprocesses images itself, as its ``preprocess_config`` says."""

    preprocess_config: PreprocessConfig


@runtime_checkable
class SupportsDecodeModes(HasPreprocessConfig, Protocol):
    """An encoder that can decode images another way (``"exact"``, ``"reduce"``, ``"draft"``)."""

    def with_decode(self, decode: str) -> Any:
        """A copy sharing the model, decoding with ``decode`` (``self`` when it already does)."""
        ...


@runtime_checkable
class SupportsPixelInput(HasPreprocessConfig, Protocol):
    """An encoder that takes images preprocessed elsewhere (decode workers, as its ``preprocess_config`` says)."""

    def encode_pixels(self, pixels: np.ndarray, *, normalize: bool = True) -> Any:
        """Encode preprocessed pixels ``[N, 3, S, S]``."""
        ...


@runtime_checkable
class SupportsPixels(SupportsPixelInput, Protocol):
    """An encoder that also preprocesses images to pixels itself (:meth:`pixels`), for callers without workers."""

    def pixels(self, images: Sequence[ImageInput], preprocess: str | None = None) -> np.ndarray:
        """Decode and preprocess images to float32 ``[N, 3, S, S]``."""
        ...


@runtime_checkable
class HasPrecision(Protocol):
    """An encoder that runs at a named precision (``"fp32"``, ``"fp16"``, ``"bf16"``, ``"int8"``)."""

    precision: str


@runtime_checkable
class SupportsUint8(Protocol):
    """An encoder that normalises uint8 pixels ``[N, S, S, 3]`` itself (on its device)."""

    def encode_uint8(self, pixels: Any, *, normalize: bool = True) -> Any:
        """Encode uint8 pixels ``[N, S, S, 3]`` (resized and cropped, not normalised)."""
        ...


@runtime_checkable
class SupportsThreads(Protocol):
    """An encoder whose CPU threads can be set, so that it shares the cores with decode workers."""

    def set_threads(self, threads: int | None, *, spin: bool = True) -> tuple[int | None, bool]:
        """Set the intra-op threads and spinning; returns the previous pair."""
        ...


@runtime_checkable
class SupportsDeviceOutput(Protocol):
    """An encoder that can keep results on its device: its ``encode_*`` methods take ``device_output=True`` and
    return device tensors, and ``to_device`` moves numpy arrays there (torch)."""

    device: str

    def to_device(self, x: np.ndarray) -> Any:
        """``x`` as a float32 tensor on the encoder's device."""
        ...


@runtime_checkable
class SupportsPseudoTokens(Protocol):
    """An encoder whose text tower takes a pseudo word token in place of a placeholder (Pic2Word, SEARLE, LinCIR)."""

    def token_width(self) -> int:
        """Width of the text tower's token embeddings (the dimension of a pseudo token)."""
        ...

    def encode_texts_with_pseudo_tokens(self, texts: Sequence[str], pseudo_tokens: np.ndarray, *,
                                        placeholder: str = "$", batch_size: int = 256,
                                        normalize: bool = True) -> Embeddings:
        """Encode prompts whose placeholder row is overwritten by ``pseudo_tokens[i]``."""
        ...


@runtime_checkable
class BundleHeadLike(Protocol):
    """A projection head served with the encoder's weights (an ONNX bundle's ``head_{name}.onnx``)."""

    kind: str
    template: str
    placeholder: str

    def __call__(self, image_embeddings: np.ndarray) -> np.ndarray: ...

    def config(self) -> dict[str, Any]: ...


@runtime_checkable
class HasBundleHeads(Protocol):
    """An encoder that ships projection heads with its weights (ONNX bundles exported with ``--head``)."""

    @property
    def heads(self) -> Mapping[str, BundleHeadLike]:
        """The heads, by name."""
        ...


@runtime_checkable
class HasExecutionProviders(Protocol):
    """An encoder that runs on onnxruntime execution providers (what serves it, for ``/info`` and logs)."""

    providers: list[Any]
