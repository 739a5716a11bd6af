"""A composer's text-only work run early, in a thread of its own, while the reference image decodes and encodes."""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from typing import Any

from cir_milvus.composers.base import Composer

__all__ = ["TextFeatures"]


@functools.cache
def _takes_text_features(cls: type[Composer]) -> bool:
    """Whether a composer class does text-only work early AND its ``compose`` accepts the result (a subclass that
    overrides ``compose`` with the three-argument signature keeps working, without the overlap)."""
    if cls.text_features is Composer.text_features:
        return False
    return "text_features" in inspect.signature(cls.compose).parameters


class TextFeatures:
    """A composer's text-only work (:meth:`Composer.text_features`) in a thread of its own, started before the
    reference image is decoded and encoded so the two overlap (Pillow's decode and resize release the GIL).

    Measured with ``benchmarks/bench_peers.py`` (demo model, 2-core CPU): see the README's "Ingest speed" section.
    Errors surface from :meth:`result` exactly as they would have from the composer.
    """

    def __init__(self, comp: Composer, encoder: Any, texts: list[Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        if not (comp.needs_text and comp.needs_image) or not _takes_text_features(type(comp)):
            self._thread: threading.Thread | None = None
            return
        ctx = contextvars.copy_context()  # the caller's text_truncation setting

        def run() -> None:
            try:
                self._value = ctx.run(comp.text_features, encoder, texts)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = e

        self._thread = threading.Thread(target=run, name="cir-text-features", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        if self._thread is None:
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def discard(self) -> None:
        if self._thread is not None:
            self._thread.join()
