"""An ONNX bundle is identified by the content of its files, not by what its manifest claims.

A bundle whose weights were replaced and whose manifest was rewritten to match passes the bundle's own checksum
check by construction; the collection built from the original bundle must still refuse it, and vectors built by
the torch encoder the manifest names do not re-encode from it (:func:`cir_milvus.encoders.agreement.check_reencode`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("milvus_lite")

from bundle_helpers import swap_weights_and_rewrite_manifest  # noqa: E402

from cir_milvus import CIRCollection  # noqa: E402
from cir_milvus.bundle import bundle_sha256  # noqa: E402
from cir_milvus.encoders.agreement import check_reencode, reencode_cosines  # noqa: E402
from cir_milvus.encoders.ort import OrtEncoder  # noqa: E402
from cir_milvus.errors import ConfigError, RecipeMismatchError  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tiny_bundles) -> Path:  # type: ignore[no-untyped-def]
    return tiny_bundles.get(fused=False)


def test_edited_manifest_with_other_weights_is_refused_by_the_collection(bundle: Path, tmp_path: Path,
                                                                          make_image) -> None:  # type: ignore[no-untyped-def]
    original = OrtEncoder(bundle)
    assert original.recipe["bundle_sha256"] == bundle_sha256(bundle)
    uri = str(tmp_path / "cir.db")
    col = CIRCollection.create(uri, "items", encoder=original)
    col.add([make_image(16, 16, seed=1)], ids=["a"])
    col.close()

    edited = Path(shutil.copytree(bundle, tmp_path / "edited"))
    swap_weights_and_rewrite_manifest(edited)
    other = OrtEncoder(edited)  # the bundle's own checks pass: its manifest matches its files
    img = make_image(16, 16, seed=1)
    assert not np.allclose(other.encode_images([img]), original.encode_images([img]), atol=1e-3)  # other weights
    assert other.recipe["weights_sha256"] == original.recipe["weights_sha256"]  # the manifest's claim is unchanged
    with pytest.raises(RecipeMismatchError, match="bundle_sha256") as info:
        CIRCollection.open(uri, "items", encoder=other)
    assert original.recipe["bundle_sha256"] in str(info.value) and other.recipe["bundle_sha256"] in str(info.value)

    # the same bytes at another path are the same bundle
    moved = Path(shutil.copytree(bundle, tmp_path / "moved"))
    reopened = CIRCollection.open(uri, "items", encoder=OrtEncoder(moved))
    assert reopened.search_vectors(original.encode_images([img]), k=1)[0][0].id == "a"
    reopened.close()


def test_content_hash_ignores_reports_and_is_computed_without_verify(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    want = bundle_sha256(bundle)
    (copy / "parity.json").write_text("{}")  # a report, not content
    assert bundle_sha256(copy) == want
    assert OrtEncoder(copy, verify=False).recipe["bundle_sha256"] == want
    tok = json.loads((copy / "tokenizer.json").read_text())
    (copy / "tokenizer.json").write_text(json.dumps(tok, indent=1))  # same tokens, other bytes: content changed
    assert bundle_sha256(copy) != want


def test_unlisted_graph_beside_the_manifest_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    shutil.copy(copy / "image.onnx", copy / "image_extra.onnx")
    with pytest.raises(ConfigError, match="image_extra.onnx which manifest.json does not list"):
        OrtEncoder(copy)


def test_tampered_bundle_does_not_reencode_torch_vectors(bundle: Path, tiny_torch_encoder, tmp_path: Path,
                                                         make_image) -> None:  # type: ignore[no-untyped-def]
    """A torch-built collection records no bundle id, so only re-encoding can tell a bundle that claims its weights
    from one exported from them: the genuine bundle agrees, the tampered one is refused."""
    images = [make_image(40 + 8 * i, 32, seed=i) for i in range(4)]
    stored = tiny_torch_encoder.encode_images(images)  # what a torch-built collection holds
    genuine = OrtEncoder(bundle).with_decode(tiny_torch_encoder.preprocess_config.decode)
    assert check_reencode(genuine, images, stored) > 0.99999

    edited = Path(shutil.copytree(bundle, tmp_path / "edited"))
    swap_weights_and_rewrite_manifest(edited)
    tampered = OrtEncoder(edited).with_decode(tiny_torch_encoder.preprocess_config.decode)  # its own checks pass
    assert tampered.recipe["weights_sha256"] == genuine.recipe["weights_sha256"]  # it claims the same weights
    assert reencode_cosines(tampered, images, stored).min() < 0.99
    with pytest.raises(RecipeMismatchError, match="not encoded by this encoder's weights") as info:
        check_reencode(tampered, images, stored, what="collection 'items'")
    assert "collection 'items'" in str(info.value) and "0.9999" in str(info.value)
    assert f"with the ONNX bundle {str(edited.resolve())!r}" in str(info.value)  # what was checked: the bundle
    assert "manifest claims" in str(info.value) and "Re-export the bundle" in str(info.value)
    with pytest.raises(ConfigError, match="no stored item"):
        check_reencode(tampered, [], stored[:0])

    # the other way round: a collection the tampered bundle built, checked with the torch model: no bundle in sight
    with pytest.raises(RecipeMismatchError, match="not encoded by this encoder's weights") as info:
        check_reencode(tiny_torch_encoder, images, tampered.encode_images(images), what="collection 'items'")
    model = tiny_torch_encoder.recipe["model"]
    assert f"with the torch model {model!r}" in str(info.value)
    assert "bundle" not in str(info.value) and "manifest" not in str(info.value)


def test_checksums_are_of_the_bytes_not_of_file_metadata(bundle: Path, tmp_path: Path) -> None:
    """Weights rewritten in place with the same size and modification time are still refused: every load hashes
    the bytes."""
    import os

    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    OrtEncoder(copy)  # hashes the genuine files once (a cache keyed on size and mtime would now be warm)
    weights = copy / "weights.bin"
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(4 - i for i in range(4))  # one float changed, same size
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ConfigError, match="weights.bin was altered after export"):
        OrtEncoder(copy)
