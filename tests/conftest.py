"""Shared fixtures: the fake encoder, a random-weight demo-architecture torch encoder, ONNX bundles exported once per
session, image factories, and the Milvus server of the ``server`` tests."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cir_milvus.encoders.fake import FakeEncoder


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    """A deterministic 32-d fake encoder (cheap; a fresh one per test)."""
    return FakeEncoder(dim=32, seed=0)


@pytest.fixture(scope="session")
def tiny_torch_encoder():  # type: ignore[no-untyped-def]
    """The demo architecture (``cir-demo-tiny``, 128-d) with random weights on CPU, built once per session.

    Treat it as read-only: tests that need to change it must build their own.
    """
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    import torch

    from cir_milvus.encoders.torch import TorchEncoder

    torch.manual_seed(0)
    return TorchEncoder("cir-demo-tiny", None, device="cpu")


# -- ONNX bundles, exported once per session ---------------------------------------------------------------------------
# Exporting costs seconds per bundle (more with fused graphs); a dozen modules used to export the same tiny model.
# These bundles are shared and read-only: a test that edits, moves or deletes files works on ``copy(...)``. The
# session checks at its end that no shared bundle changed.


def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class BundleCache:
    """Bundles of one torch encoder, each exported on first use and then shared by the whole session."""

    def __init__(self, encoder: Any, root: Path, heads: dict[str, Any] | None = None) -> None:
        self.encoder = encoder
        self.heads = heads or {}
        self._root = root
        self._made: dict[tuple[str, bool, bool], tuple[Path, str]] = {}

    def get(self, *, precision: str = "fp32", fused: bool = True, heads: bool = False) -> Path:
        """The bundle exported with this precision, with or without fused graphs and the cache's heads (read-only)."""
        key = (precision, fused, heads)
        if key not in self._made:
            from cir_milvus_export.onnx_export import export_bundle

            out = self._root / f"{precision}{'-fused' if fused else ''}{'-heads' if heads else ''}"
            path = export_bundle(self.encoder, out, precision=precision, fused=fused,
                                 heads=self.heads if heads else None)
            self._made[key] = (path, _folder_digest(path))
        return self._made[key][0]

    def copy(self, dest: Path, **kwargs: Any) -> Path:
        """A private, writable copy of ``get(**kwargs)`` at ``dest``."""
        return Path(shutil.copytree(self.get(**kwargs), dest, copy_function=shutil.copyfile))

    def check_unchanged(self) -> None:
        changed = [str(path) for path, digest in self._made.values() if _folder_digest(path) != digest]
        assert not changed, f"a test changed a shared bundle (use copy(...) to change one): {changed}"


def _export_deps() -> None:
    for name in ("torch", "open_clip", "onnx", "onnxruntime", "tokenizers"):
        pytest.importorskip(name, reason=f"exporting a bundle needs {name}: pip install 'cir_milvus[export]'")


@pytest.fixture(scope="session")
def tiny_searle_head():  # type: ignore[no-untyped-def]
    """A random SEARLE head (seed 1) for ``tiny_torch_encoder``; the head of ``tiny_bundle``. Read-only."""
    pytest.importorskip("torch")
    import torch

    from cir_milvus.heads import Head, SearlePhi

    torch.manual_seed(1)
    return Head("searle", SearlePhi(128, 256, 128))


@pytest.fixture(scope="session")
def tiny_bundles(tiny_torch_encoder, tiny_searle_head, tmp_path_factory) -> Iterator[BundleCache]:  # type: ignore[no-untyped-def]
    """Bundles of ``tiny_torch_encoder`` (random weights): ``get(precision=, fused=, heads=)``, ``copy(dest, ...)``;
    ``heads=True`` adds ``tiny_searle_head``."""
    _export_deps()
    cache = BundleCache(tiny_torch_encoder, tmp_path_factory.mktemp("tiny-bundles"), {"searle": tiny_searle_head})
    yield cache
    cache.check_unchanged()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_bundles: BundleCache) -> Path:
    """The common bundle: ``tiny_torch_encoder`` in fp32 with fused graphs and the SEARLE head. Read-only."""
    return tiny_bundles.get(heads=True)


@pytest.fixture(scope="session")
def demo_bundles(tmp_path_factory) -> Iterator[BundleCache]:  # type: ignore[no-untyped-def]
    """Bundles of the demo model with its trained weights (``cir-demo-tiny`` / ``cir-demo``, fp32 on CPU);
    ``heads=True`` adds its shipped LinCIR and Pic2Word heads."""
    _export_deps()
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.heads import load_head
    from cir_milvus.models.demo import DATA_DIR

    encoder = TorchEncoder("cir-demo-tiny", "cir-demo", device="cpu", precision="fp32")
    heads = {k: load_head(k, DATA_DIR / f"cir-demo-tiny.{k}.safetensors") for k in ("lincir", "pic2word")}
    cache = BundleCache(encoder, tmp_path_factory.mktemp("demo-bundles"), heads)
    yield cache
    cache.check_unchanged()


def _noise_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "CMYK": 4}[mode]
    arr = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    if channels == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr, mode=mode)


@pytest.fixture
def make_image() -> Callable[..., Image.Image]:
    """Factory: ``make_image(width=32, height=24, mode="RGB", seed=0)`` → a seeded random-noise PIL image."""

    def make(width: int = 32, height: int = 24, mode: str = "RGB", seed: int = 0) -> Image.Image:
        return _noise_image(width, height, mode, seed)

    return make


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    """Factory: ``image_bytes(img, format="PNG", **save_kwargs)`` → the encoded file contents."""

    def encode(img: Image.Image, format: str = "PNG", **save_kwargs: object) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=format, **save_kwargs)
        return buf.getvalue()

    return encode


@pytest.fixture
def image_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``image_file(img_or_bytes, name="img.png", **save_kwargs)`` → a file under ``tmp_path``."""

    def write(content: Image.Image | bytes, name: str = "img.png", **save_kwargs: object) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path, **save_kwargs)
        return path

    return write


@pytest.fixture(scope="session")
def synthetic_pngs(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[Path]]:
    """Factory: ``synthetic_pngs(n, seed=5)`` → the first ``n`` items of the synthetic world's gallery as PNG files,
    rendered once per session (read-only: copy before changing one)."""
    made: dict[tuple[int, int], list[Path]] = {}

    def make(n: int, seed: int = 5) -> list[Path]:
        if (n, seed) not in made:
            from cir_milvus.synthetic import SyntheticWorld

            root = tmp_path_factory.mktemp(f"synthetic-{seed}-{n}")
            made[(n, seed)] = []
            for it in SyntheticWorld(seed=seed, instances=1).gallery()[:n]:
                it.render().save(root / f"{it.id}.png")
                made[(n, seed)].append(root / f"{it.id}.png")
        return list(made[(n, seed)])

    return make


# -- the real Milvus server of the ``server``-marked tests (tests/server, tests/reliability), ONE per session -----
# The PyPI ``milvus`` 2.3.5 standalone. ``CIR_MILVUS_TEST_URI=http://host:19530`` uses an existing server instead
# (restart tests are then skipped). Without the ``milvus`` package the server tests are skipped (``pip install
# 'cir_milvus[server]'``); a server that is installed but fails to start fails the tests, with the tail of its log.


class ServerHandle:
    """The test server: ``uri``, and ``stop()`` / ``start()`` for restart tests (same ports, same data)."""

    def __init__(self, uri: str, embedded: Any = None) -> None:
        self._uri = uri
        self.embedded = embedded

    @property
    def uri(self) -> str:
        return self.embedded.uri if self.embedded is not None else self._uri

    @property
    def restartable(self) -> bool:
        return self.embedded is not None

    @property
    def running(self) -> bool:
        return self.embedded is None or self.embedded.running

    def start(self) -> None:
        self.embedded.start()

    def stop(self, graceful: float = 10.0) -> None:
        self.embedded.stop(graceful=graceful)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A running Milvus 2.3.5 (or the server named by ``CIR_MILVUS_TEST_URI``) for the whole session."""
    external = os.environ.get("CIR_MILVUS_TEST_URI")
    if external:
        yield ServerHandle(external)
        return
    pytest.importorskip("milvus", reason="the server tests need the PyPI Milvus server: pip install 'cir_milvus[server]'")
    from cir_milvus.storage.embedded import EmbeddedMilvus

    server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus-server"))
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield ServerHandle("", server)
    finally:
        server.stop(graceful=5)


@pytest.fixture
def server_uri(milvus_server: ServerHandle) -> Iterator[str]:
    """The server URI; collections created by the test are dropped afterwards."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_server.uri)
    before = set(client.list_collections())
    try:
        yield milvus_server.uri
    finally:
        if milvus_server.running:
            try:
                for name in set(client.list_collections()) - before:
                    client.drop_collection(name)
            except Exception:  # noqa: BLE001 - a test that stopped the server must not hide its own failure
                pass
        client.close()
