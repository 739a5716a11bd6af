"""Slerp maths (Jang et al. ECCV'24) and the baseline composers (image, text, sum)."""

from __future__ import annotations

import numpy as np
import pytest

from cir_milvus.composers import get_composer
from cir_milvus.composers.base import as_text
from cir_milvus.composers.baselines import ImageOnlyComposer, SumComposer, TextOnlyComposer
from cir_milvus.composers.slerp import DOT_THRESHOLD, SlerpComposer, slerp
from cir_milvus.errors import ConfigError


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _pair(n: int = 8, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _unit(rng.standard_normal((n, d))), _unit(rng.standard_normal((n, d)))


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(np.sum(_unit(a) * _unit(b), axis=-1), -1.0, 1.0))


# -- the function -----------------------------------------------------------------------------------------------


def test_endpoints_return_the_inputs() -> None:
    v0, v1 = _pair()
    np.testing.assert_allclose(slerp(v0, v1, 0.0), v0, atol=1e-6)
    np.testing.assert_allclose(slerp(v0, v1, 1.0), v1, atol=1e-6)


def test_output_is_unit_norm_float32_with_input_shape() -> None:
    v0, v1 = _pair(n=20, d=32, seed=1)
    for alpha in (0.1, 0.5, 0.8, 0.9):
        out = slerp(v0, v1, alpha)
        assert out.dtype == np.float32 and out.shape == v0.shape
        np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-6)
    single = slerp(v0[0], v1[0], 0.3)
    assert single.shape == (32,)


@pytest.mark.parametrize("seed", range(5))
def test_angle_to_v0_is_alpha_times_theta(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    v0, v1 = _pair(n=50, d=int(rng.integers(2, 64)), seed=seed)
    theta = _angle(v0, v1)
    assert (np.cos(theta) < DOT_THRESHOLD).all()  # the spherical branch
    alpha = float(rng.uniform(0, 1))
    out = slerp(v0, v1, alpha)
    np.testing.assert_allclose(_angle(out, v0), alpha * theta, atol=1e-5)
    np.testing.assert_allclose(_angle(out, v1), (1 - alpha) * theta, atol=1e-5)
    # and it stays in the plane of v0 and v1: the residual after projecting on span(v0, v1) is zero
    for i in range(3):
        basis, _ = np.linalg.qr(np.stack([v0[i], v1[i]], axis=1))
        residual = out[i] - basis @ (basis.T @ out[i])
        assert np.linalg.norm(residual) < 1e-5


def test_matches_the_closed_form() -> None:
    v0, v1 = _pair(n=4, d=8, seed=7)
    alpha = 0.35
    theta = _angle(v0, v1)[:, None]
    expected = _unit(np.sin((1 - alpha) * theta) / np.sin(theta) * v0 + np.sin(alpha * theta) / np.sin(theta) * v1)
    np.testing.assert_allclose(slerp(v0, v1, alpha), expected, atol=1e-6)


def test_near_parallel_inputs_use_normalised_lerp() -> None:
    rng = np.random.default_rng(3)
    v0 = _unit(rng.standard_normal((4, 16)))
    v1 = _unit(v0 + 1e-4 * rng.standard_normal((4, 16)))
    assert (np.sum(v0 * v1, axis=-1) > DOT_THRESHOLD).all()
    out = slerp(v0, v1, 0.4)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, _unit(v0 + 0.4 * (v1 - v0)), atol=1e-6)
    identical = slerp(v0, v0, 0.7)
    np.testing.assert_allclose(identical, v0, atol=1e-6)


def test_antipodal_inputs_do_not_nan() -> None:
    rng = np.random.default_rng(4)
    v0 = _unit(rng.standard_normal((3, 16)))
    nearly = _unit(-v0 + 1e-3 * rng.standard_normal((3, 16)))
    for v1 in (-v0, nearly):
        for alpha in (0.0, 0.3, 0.5, 1.0):
            out = slerp(v0, v1, alpha)
            assert np.isfinite(out).all()
    np.testing.assert_allclose(slerp(v0, -v0, 0.2), v0, atol=1e-6)  # lerp towards -v0 keeps v0's direction


def test_numpy_and_torch_agree() -> None:
    torch = pytest.importorskip("torch")
    v0, v1 = _pair(n=30, d=24, seed=9)
    v1[0] = _unit(v0[0] + 1e-5)  # one near-parallel row (lerp branch)
    for alpha in (0.0, 0.25, 0.8, 1.0):
        out_np = slerp(v0, v1, alpha)
        out_t = slerp(torch.from_numpy(v0).float(), torch.from_numpy(v1).float(), alpha)
        assert isinstance(out_t, torch.Tensor)
        np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-5)


# -- composers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.5, -0.1, float("nan"), "0.5", True])
def test_slerp_composer_rejects_bad_alpha(alpha: object) -> None:
    with pytest.raises(ConfigError, match="alpha"):
        SlerpComposer(alpha=alpha)


def test_slerp_composer_alpha_default_and_registry() -> None:
    assert SlerpComposer().params["alpha"] == 0.8
    comp = get_composer("slerp", alpha=0.9)
    assert isinstance(comp, SlerpComposer) and comp.params["alpha"] == 0.9
    assert comp.config() == {"name": "slerp", "params": {"alpha": 0.9}}


def test_slerp_composer_equals_slerp_of_normalised_image_and_text(fake_encoder) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    raw_img = rng.standard_normal((3, fake_encoder.dim)) * 5.0  # raw, un-normalised embeddings
    texts = ["make it red", "turn it into a star", "now in blue"]
    txt = fake_encoder.encode_texts(texts)
    for alpha in (0.0, 0.6, 1.0):
        out = SlerpComposer(alpha=alpha).compose(fake_encoder, raw_img, texts)
        np.testing.assert_allclose(out, slerp(_unit(raw_img), txt, alpha), atol=1e-6)
    np.testing.assert_allclose(SlerpComposer(alpha=0.0).compose(fake_encoder, raw_img, texts), _unit(raw_img), atol=1e-6)
    np.testing.assert_allclose(SlerpComposer(alpha=1.0).compose(fake_encoder, raw_img, texts), txt, atol=1e-6)
    with pytest.raises(ConfigError, match="reference image"):
        SlerpComposer().compose(fake_encoder, None, texts)


def test_slerp_composer_on_torch_device_path_matches_numpy(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.encoders import SupportsDeviceOutput

    enc = tiny_torch_encoder
    assert isinstance(enc, SupportsDeviceOutput)
    rng = np.random.default_rng(1)
    raw_img = rng.standard_normal((2, enc.dim)).astype(np.float32)
    texts = ["a red star", "a small blue circle"]
    expected = slerp(_unit(raw_img), enc.encode_texts(texts), 0.7)
    np.testing.assert_allclose(SlerpComposer(alpha=0.7).compose(enc, raw_img, texts), expected, atol=1e-5)


def test_sum_composer(fake_encoder) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    raw_img = rng.standard_normal((2, fake_encoder.dim)) * 3.0
    texts = ["make it green", "as a heart"]
    raw_txt = fake_encoder.encode_texts(texts, normalize=False)
    expected = _unit(_unit(raw_img) + _unit(raw_txt))
    out = SumComposer().compose(fake_encoder, raw_img, texts)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    with pytest.raises(ConfigError, match="reference image"):
        SumComposer().compose(fake_encoder, None, texts)


def test_text_composer_ignores_the_image(fake_encoder) -> None:  # type: ignore[no-untyped-def]
    texts = ["make it green", "as a heart"]
    rng = np.random.default_rng(3)
    a = TextOnlyComposer().compose(fake_encoder, rng.standard_normal((2, fake_encoder.dim)), texts)
    b = TextOnlyComposer().compose(fake_encoder, None, texts)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, _unit(fake_encoder.encode_texts(texts, normalize=False)), atol=1e-6)
    assert TextOnlyComposer.needs_image is False


def test_image_composer_ignores_the_text(fake_encoder) -> None:  # type: ignore[no-untyped-def]
    raw_img = np.random.default_rng(4).standard_normal((2, fake_encoder.dim)) * 2.0
    a = ImageOnlyComposer().compose(fake_encoder, raw_img, ["x", "y"])
    b = ImageOnlyComposer().compose(fake_encoder, raw_img, ["totally", "different"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, _unit(raw_img), atol=1e-6)
    assert ImageOnlyComposer.needs_text is False


def test_fashioniq_pair_joins_with_and(fake_encoder) -> None:  # type: ignore[no-untyped-def]
    assert as_text(("is red.", "has long sleeves?")) == "is red and has long sleeves"
    assert as_text(["  is shorter, ", "."]) == "is shorter"
    with pytest.raises(ConfigError, match="string"):
        as_text(42)  # type: ignore[arg-type]
    raw_img = np.random.default_rng(5).standard_normal((1, fake_encoder.dim))
    pair = SlerpComposer(alpha=0.5).compose(fake_encoder, raw_img, [("is red.", "has long sleeves?")])  # type: ignore[list-item]
    joined = SlerpComposer(alpha=0.5).compose(fake_encoder, raw_img, ["is red and has long sleeves"])
    np.testing.assert_array_equal(pair, joined)
    text_pair = TextOnlyComposer().compose(fake_encoder, None, [("c1", "c2")])  # type: ignore[list-item]
    np.testing.assert_array_equal(text_pair, fake_encoder.encode_texts(["c1 and c2"]))
