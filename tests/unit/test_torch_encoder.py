"""The torch backend on the random-weight demo architecture (``cir-demo-tiny``, 128-d, 64 px, CPU)."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")

import torch  # noqa: E402

from cir_milvus.encoders.torch import TorchEncoder, inject_pseudo_tokens  # noqa: E402
from cir_milvus.errors import ConfigError  # noqa: E402
from cir_milvus.preprocess import PreprocessConfig, preprocess_batch  # noqa: E402

DIM = 128


@pytest.fixture(scope="module")
def images():  # type: ignore[no-untyped-def]
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(64, 64), (80, 50), (50, 90), (70, 70), (100, 64)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


TEXTS = ["a red star", "a small blue circle on a black background", "x", "a photo of a cyan heart"]


def test_shapes_and_unit_norm(tiny_torch_encoder, images) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    assert enc.dim == DIM and enc.device == "cpu" and enc.precision == "fp32"
    img = enc.encode_images(images)
    txt = enc.encode_texts(TEXTS)
    assert img.shape == (len(images), DIM) and txt.shape == (len(TEXTS), DIM)
    assert img.dtype == np.float32 and txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)


def test_normalize_false_returns_raw_features(tiny_torch_encoder, images) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    raw_img = enc.encode_images(images, normalize=False)
    raw_txt = enc.encode_texts(TEXTS, normalize=False)
    for raw, unit in ((raw_img, enc.encode_images(images)), (raw_txt, enc.encode_texts(TEXTS))):
        norms = np.linalg.norm(raw, axis=1)
        assert np.all(np.abs(norms - 1.0) > 1e-3)
        np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-5)


def test_raw_image_features_equal_the_model_on_open_clip_preprocessing(tiny_torch_encoder, images) -> None:  # type: ignore[no-untyped-def]
    import open_clip

    enc = tiny_torch_encoder.with_decode("exact")  # the reference transform (the default decode is "reduce")
    transform = open_clip.image_transform(64, is_train=False)
    with torch.no_grad():
        expected = enc.model.encode_image(torch.stack([transform(im) for im in images])).numpy()
    np.testing.assert_allclose(enc.encode_images(images, normalize=False), expected, atol=1e-4)


def test_raw_text_features_equal_the_model(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    import open_clip

    enc = tiny_torch_encoder
    ids = open_clip.get_tokenizer("cir-demo-tiny")(TEXTS)
    assert ids.shape == (len(TEXTS), 32)
    with torch.no_grad():
        expected = enc.model.encode_text(ids).numpy()
    np.testing.assert_allclose(enc.encode_texts(TEXTS, normalize=False), expected, atol=1e-5)


def test_batching_invariance(tiny_torch_encoder, images) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    np.testing.assert_allclose(enc.encode_images(images, batch_size=2), enc.encode_images(images, batch_size=64), atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(TEXTS, batch_size=3), enc.encode_texts(TEXTS, batch_size=64), atol=1e-5)


def test_image_inputs_path_bytes_pil_equal(tiny_torch_encoder, images, tmp_path) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    img = images[1]
    path = tmp_path / "a.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = enc.encode_images([path, str(path), buf.getvalue(), img])
    for row in out[1:]:
        np.testing.assert_allclose(row, out[0], atol=1e-6)


def test_empty_inputs(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    assert enc.encode_images([]).shape == (0, DIM)
    assert enc.encode_texts([]).shape == (0, DIM)


def test_device_output_is_a_tensor(tiny_torch_encoder, images) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    t = enc.encode_texts(TEXTS[:2], device_output=True)
    assert isinstance(t, torch.Tensor) and t.device.type == "cpu"
    np.testing.assert_allclose(t.numpy(), enc.encode_texts(TEXTS[:2]), atol=1e-6)


def test_targetpad_preprocess_changes_only_wide_images(tiny_torch_encoder, images) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    square, wide = images[0], images[4]  # 64x64 and 100x64 (ratio 1.56)
    clip = enc.encode_images([square, wide])
    pad = enc.encode_images([square, wide], preprocess="targetpad")
    np.testing.assert_allclose(pad[0], clip[0], atol=1e-6)
    assert np.abs(pad[1] - clip[1]).max() > 1e-3
    cfg = PreprocessConfig(size=64, mode="targetpad")
    np.testing.assert_allclose(enc.pixels([wide], preprocess="targetpad"), preprocess_batch([wide], cfg))


def test_placeholder_ids(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    assert enc.placeholder_id("$") == 259
    assert enc.placeholder_id("*") == 265
    with pytest.raises(ConfigError, match="single token"):
        enc.placeholder_id("two words")


def test_pseudo_tokens_replace_the_placeholder_row(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    prompts = ["a photo of $ that is red", "a photo of $ that is blue"]
    width = enc.token_width()
    assert width == 128
    # feeding the placeholder's own embedding row back in must reproduce the plain text encoding
    own = enc.model.token_embedding.weight[259].detach().numpy()
    same = enc.encode_texts_with_pseudo_tokens(prompts, np.stack([own, own]), placeholder="$")
    np.testing.assert_allclose(same, enc.encode_texts(prompts), atol=1e-5)
    # a different token changes the result, and each prompt gets its own token
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((2, width)).astype(np.float32)
    out = enc.encode_texts_with_pseudo_tokens(prompts, tokens, placeholder="$")
    assert out.shape == (2, DIM) and np.abs(out - same).max() > 1e-3
    swapped = enc.encode_texts_with_pseudo_tokens(prompts, tokens[::-1].copy(), placeholder="$")
    assert np.abs(swapped - out).max() > 1e-3
    # batching does not change anything
    np.testing.assert_allclose(
        enc.encode_texts_with_pseudo_tokens(prompts, tokens, placeholder="$", batch_size=1), out, atol=1e-5
    )
    # the torch helper agrees with the public method
    ids = torch.from_numpy(enc.tokenize(prompts))
    with torch.no_grad():
        raw = inject_pseudo_tokens(enc.model, ids, torch.from_numpy(tokens), 259).numpy()
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), out, atol=1e-5)


def test_missing_placeholder_is_config_error(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    tokens = np.zeros((2, enc.token_width()), dtype=np.float32)
    with pytest.raises(ConfigError, match="no placeholder") as info:
        enc.encode_texts_with_pseudo_tokens(["a photo of $ that", "a photo of it"], tokens, placeholder="$")
    assert "a photo of it" in str(info.value)
    with pytest.raises(ConfigError, match="no placeholder"):
        enc.encode_texts_with_pseudo_tokens(["a photo of $ that"], tokens[:1], placeholder="*")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_gpu_is_config_error() -> None:
    with pytest.raises(ConfigError, match="cuda"):
        TorchEncoder("cir-demo-tiny", None, device="cuda")


def test_bad_precision_is_config_error() -> None:
    with pytest.raises(ConfigError, match="precision"):
        TorchEncoder("cir-demo-tiny", None, device="cpu", precision="int8")


def test_recipe(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    recipe = tiny_torch_encoder.recipe
    assert set(recipe) == {"backend", "model", "pretrained", "weights_sha256", "dim", "preprocess", "activation",
                           "random_weights"}
    assert recipe["random_weights"] is True  # untrained weights are recorded loudly
    assert recipe["activation"] == "gelu"  # the demo config has no quick_gelu
    assert recipe["backend"] == "torch" and recipe["model"] == "cir-demo-tiny"
    assert recipe["pretrained"] is None and recipe["weights_sha256"] is None  # random weights: no file
    assert recipe["dim"] == DIM
    # a new encoder decodes with the library default, and records it (collections made before recorded nothing: exact)
    assert recipe["preprocess"]["decode"] == "reduce"
    assert PreprocessConfig.from_dict(recipe["preprocess"]) == PreprocessConfig(size=64, decode="reduce")


def test_create_encoder_builds_the_torch_backend() -> None:
    from cir_milvus.encoders import create_encoder, list_encoders

    assert {"torch", "fake"} <= set(list_encoders())
    with pytest.raises(ConfigError, match="unknown encoder backend"):
        create_encoder("cir-demo-tiny", backend="tensorflow")
