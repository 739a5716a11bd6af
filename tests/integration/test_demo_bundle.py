"""The ONNX bundle of the demo model and its heads that ships in the package: complete, verified, small, and the
same model as the torch demo (so the demo can run on onnxruntime alone)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from cir_milvus.bundle import load_manifest  # noqa: E402
from cir_milvus.encoders.ort import OrtEncoder  # noqa: E402
from cir_milvus.hashing import file_sha256  # noqa: E402
from cir_milvus.models import DEMO_MODEL, demo_bundle_path, demo_heads, demo_weights_path  # noqa: E402


def test_shipped_bundle_is_the_demo_model_with_its_heads() -> None:
    folder = demo_bundle_path()
    manifest = load_manifest(folder)
    assert manifest["source"]["model"] == DEMO_MODEL
    assert manifest["source"]["weights_sha256"] == file_sha256(demo_weights_path())  # exported from these weights
    assert set(manifest["heads"]) == set(demo_heads()) == {"lincir", "pic2word"}
    assert manifest["text_prefix"] == {"pool": "argmax"} and manifest["precision"] == "fp32"
    enc = OrtEncoder(folder)  # verify=True: every file's bytes match the manifest
    assert enc.dim == 128 and set(enc.heads) == {"lincir", "pic2word"}
    # one copy of the weights for all graphs, float16 where exact: about the size of the model and heads files
    shipped = demo_weights_path().stat().st_size + sum(p.stat().st_size for p in demo_heads().values())
    assert (folder / "weights.bin").stat().st_size < 1.1 * shipped


def test_shipped_bundle_matches_the_torch_demo(make_image) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from cir_milvus.encoders.agreement import check_reencode
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.heads import load_head

    torch_enc = TorchEncoder(DEMO_MODEL, "cir-demo", device="cpu", precision="fp32")
    ort = OrtEncoder(demo_bundle_path()).with_decode(torch_enc.preprocess_config.decode)
    images = [make_image(64 + 8 * i, 48, seed=i) for i in range(4)]
    assert check_reencode(ort, images, torch_enc.encode_images(images)) > 0.99999
    texts = ["a red star", "make it a large blue circle on a white background"]
    assert (ort.encode_texts(texts) * torch_enc.encode_texts(texts)).sum(1).min() > 0.99999
    raw = torch_enc.encode_images(images, normalize=False)
    for kind, path in demo_heads().items():
        head = load_head(kind, path)
        assert ort.heads[kind].config()["weights_sha256"] == head.weights_sha256
        a, b = ort.heads[kind](raw), head(raw)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cos.min() > 0.99999
