"""A composed query encodes its text while the reference image decodes and encodes (CIRCollection.compose)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cir_milvus import CIRCollection
from cir_milvus.composers import get_composer, register_composer
from cir_milvus.composers.slerp import SlerpComposer
from cir_milvus.encoders.fake import FakeEncoder
from cir_milvus.errors import ConfigError, ImageDecodeError

pytestmark = pytest.mark.integration

LONG = " ".join(f"w{i}" for i in range(100))  # over the 77-token context


class Handshake(FakeEncoder):
    """The image encode waits for the text encode to have started: it only finishes in time if they overlap."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.text_started = threading.Event()
        self.text_threads: list[str] = []
        self.waited_ok: list[bool] = []

    def encode_texts(self, texts: Any, **kw: Any) -> Any:
        self.text_threads.append(threading.current_thread().name)
        self.text_started.set()
        return super().encode_texts(texts, **kw)

    def encode_images(self, images: Any, **kw: Any) -> Any:
        self.waited_ok.append(self.text_started.wait(timeout=5))
        return super().encode_images(images, **kw)


@pytest.fixture()
def photo(tmp_path: Path) -> str:
    p = tmp_path / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(p)
    return str(p)


def _col(tmp_path: Path, enc: Any) -> CIRCollection:
    return CIRCollection.create(str(tmp_path / "q.db"), "q", encoder=enc)


@pytest.mark.parametrize("composer", ["slerp", "sum"])
def test_text_and_image_overlap_and_the_query_is_unchanged(tmp_path: Path, photo: str, composer: str) -> None:
    enc = Handshake()
    col = _col(tmp_path, enc)
    try:
        q = col.compose([photo], ["make it red"], composer=composer)
    finally:
        col.close()
    assert enc.waited_ok == [True]  # the text encode started while the image encode was running
    assert enc.text_threads == ["cir-text-features"]
    plain = FakeEncoder(dim=16)
    comp = get_composer(composer, **({"alpha": 0.8} if composer == "slerp" else {}))
    expected = comp.compose(plain, np.asarray(plain.encode_images([photo], normalize=False)), ["make it red"])
    np.testing.assert_allclose(q, expected, rtol=1e-6, atol=1e-6)


def test_the_image_error_wins_and_truncation_reaches_the_text_thread(tmp_path: Path, photo: str) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    col = _col(tmp_path, FakeEncoder(dim=16))
    try:
        with pytest.raises(ImageDecodeError):  # both inputs are bad: the reference's problem is reported
            col.compose([str(bad)], [LONG])
        with pytest.raises(ConfigError, match="context length"):
            col.compose([photo], [LONG])
        with pytest.warns(UserWarning, match="truncated"):
            q = col.compose([photo], [LONG], truncate=True)  # the caller's setting holds in the text thread
        assert q.shape == (1, 16)
        hits = col.search(photo, "fine", k=1)
        assert isinstance(hits, list)
    finally:
        col.close()


class HalvedSlerp(SlerpComposer):
    """A plugin written against the three-argument compose (before text_features existed)."""

    def compose(self, encoder: Any, image_embeddings: Any, texts: Any) -> Any:  # type: ignore[override]
        return super().compose(encoder, image_embeddings, texts) * 0.5


def test_a_subclass_with_the_old_compose_signature_still_works(tmp_path: Path, photo: str) -> None:
    """A plugin that subclasses SlerpComposer and overrides compose(encoder, image_embeddings, texts) is called the
    old way (no text_features keyword), so it keeps working, without the overlap."""
    from cir_milvus.composers import COMPOSERS

    register_composer("test-halved-slerp")(HalvedSlerp)
    col = _col(tmp_path, FakeEncoder(dim=16))
    try:
        q = col.compose([photo], ["make it red"], composer="test-halved-slerp", alpha=0.8)
    finally:
        col.close()
        COMPOSERS.unregister("test-halved-slerp")  # this test's plugin does not outlive it
    plain = FakeEncoder(dim=16)
    expected = SlerpComposer(alpha=0.8).compose(plain, np.asarray(plain.encode_images([photo], normalize=False)),
                                                ["make it red"]) * 0.5
    np.testing.assert_allclose(q, expected, rtol=1e-6, atol=1e-6)
