"""Decoding user images: orientation, colour modes, animation, broken files, the pixel cap, ids."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cir_milvus.errors import ConfigError, ImageDecodeError
from cir_milvus.images import MAX_PIXELS, content_id, load_image, to_rgb

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _two_halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2] = left
    arr[:, width // 2 :] = right
    return Image.fromarray(arr)


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


# -- orientation and colour modes -------------------------------------------------------------------------------


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    # stored 40 wide x 20 high, left half red; orientation 6 = "rotate 90° clockwise to display"
    img = _two_halves(40, 20, RED, BLUE)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    img.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        assert raw.size == (40, 20)  # the file itself is landscape

    out = load_image(path)
    assert out.size == (20, 40)  # displayed portrait
    arr = np.asarray(out, dtype=np.int16)
    # clockwise rotation moves the stored left half (red) to the top
    assert np.abs(arr[5, 10] - RED).max() < 40
    assert np.abs(arr[35, 10] - BLUE).max() < 40


def test_palette_with_transparency_becomes_white() -> None:
    pal = Image.new("P", (8, 4))
    pal.putpalette([*RED, *BLUE] + [0, 0, 0] * 254)
    idx = np.zeros((4, 8), dtype=np.uint8)
    idx[:, 4:] = 1
    pal.putdata(idx.reshape(-1).tolist())
    data = _encode(pal, "PNG", transparency=0)  # palette index 0 (red) is fully transparent

    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and "transparency" in check.info
    arr = np.asarray(load_image(data))
    assert arr.shape == (4, 8, 3)
    assert (arr[:, :4] == WHITE).all()
    assert (arr[:, 4:] == BLUE).all()


def test_cmyk_becomes_rgb() -> None:
    cmyk = np.zeros((2, 3, 4), dtype=np.uint8)
    cmyk[0, 0] = (0, 0, 0, 0)  # no ink: white
    cmyk[0, 1] = (255, 0, 0, 0)  # full cyan: no red
    cmyk[0, 2] = (0, 0, 0, 255)  # full key: black
    cmyk[1, :] = (0, 255, 255, 0)  # magenta + yellow: red
    data = _encode(Image.fromarray(cmyk, mode="CMYK"), "TIFF")  # lossless
    out = load_image(data)
    assert out.mode == "RGB"
    arr = np.asarray(out)
    assert tuple(arr[0, 0]) == WHITE
    assert tuple(arr[0, 1]) == (0, 255, 255)
    assert tuple(arr[0, 2]) == (0, 0, 0)
    assert (arr[1] == RED).all()


def test_16_bit_greyscale_is_scaled_to_8_bit() -> None:
    levels = np.arange(256, dtype=np.uint16)
    sixteen = (levels * 257).reshape(16, 16)  # 257 * v is v on the 8-bit scale (65535 = 255 * 257)
    data = _encode(Image.fromarray(sixteen), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I")
    arr = np.asarray(load_image(data))
    assert arr.shape == (16, 16, 3)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    np.testing.assert_array_equal(arr[..., 0].reshape(-1), levels)


def test_16_bit_arbitrary_values_within_one_level() -> None:
    rng = np.random.default_rng(3)
    sixteen = rng.integers(0, 65536, size=(8, 8), dtype=np.uint16)
    arr = np.asarray(to_rgb(Image.fromarray(sixteen)), dtype=np.float64)[..., 0]
    assert np.abs(arr - sixteen / 257.0).max() <= 1.0


def test_rgba_composited_on_white() -> None:
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # transparent red: invisible
    rgba[0, 1] = (0, 0, 255, 255)  # opaque blue
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black over white
    out = np.asarray(load_image(_encode(Image.fromarray(rgba, mode="RGBA"), "PNG")), dtype=np.float64)
    assert tuple(out[0, 0]) == WHITE
    assert tuple(out[0, 1]) == BLUE
    expected_grey = 255.0 * (1 - 128 / 255)  # a*0 + (1-a)*255
    assert np.abs(out[0, 2] - expected_grey).max() <= 1.0


def test_la_composited_on_white() -> None:
    la = np.array([[[0, 0], [100, 255]]], dtype=np.uint8)  # transparent black, opaque grey 100
    out = np.asarray(load_image(Image.fromarray(la, mode="LA")))
    assert tuple(out[0, 0]) == WHITE
    assert tuple(out[0, 1]) == (100, 100, 100)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (6, 6), RED), Image.new("RGB", (6, 6), BLUE)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 2
    out = np.asarray(load_image(data))
    assert out.shape == (6, 6, 3)
    assert (out == RED).all()


def test_extreme_aspect_ratio_decodes() -> None:
    img = Image.new("RGB", (1, 4000), (10, 20, 30))
    out = load_image(_encode(img, "PNG"))
    assert out.size == (1, 4000)
    assert (np.asarray(out) == (10, 20, 30)).all()


# -- inputs -----------------------------------------------------------------------------------------------------


def test_path_bytes_and_pil_inputs_agree(tmp_path: Path, make_image) -> None:  # type: ignore[no-untyped-def]
    img = make_image(17, 11, seed=4)
    path = tmp_path / "a.png"
    img.save(path)
    data = path.read_bytes()
    expected = np.asarray(img)
    for source in (path, str(path), data, bytearray(data), memoryview(data), img):
        out = load_image(source)
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), expected)


def test_pil_input_in_other_mode_is_converted() -> None:
    grey = Image.new("L", (3, 2), 77)
    out = load_image(grey)
    assert out.mode == "RGB" and (np.asarray(out) == 77).all()


@pytest.mark.parametrize("bad", [123, 4.5, None, ["a.png"], np.zeros((2, 2, 3), dtype=np.uint8)])
def test_wrong_input_type_is_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="paths, bytes or PIL"):
        load_image(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="paths, bytes or PIL"):
        content_id(bad)  # type: ignore[arg-type]


# -- broken files -----------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageDecodeError, match="nope.png"):
        load_image(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty.png.*empty"):
        load_image(path)
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_file_names_the_file(tmp_path: Path, make_image, fmt: str, suffix: str) -> None:  # type: ignore[no-untyped-def]
    data = _encode(make_image(64, 64, seed=1), fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_text_file_renamed_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n" * 10)
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert "not a readable image" in str(info.value)


def test_pixel_cap_names_the_file(tmp_path: Path, make_image) -> None:  # type: ignore[no-untyped-def]
    img = make_image(20, 20)
    path = tmp_path / "big.png"
    img.save(path)
    with pytest.raises(ImageDecodeError) as info:
        load_image(path, max_pixels=100)
    msg = str(info.value)
    assert str(path) in msg and "20x20" in msg and "100" in msg
    # the same cap applies to bytes and PIL inputs, and exactly at the cap the image is accepted
    with pytest.raises(ImageDecodeError, match="20x20"):
        load_image(path.read_bytes(), max_pixels=399)
    with pytest.raises(ImageDecodeError, match="20x20"):
        load_image(img, max_pixels=399)
    assert load_image(path, max_pixels=400).size == (20, 20)


def test_default_pixel_cap_is_pillows_bomb_threshold() -> None:
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS


# -- content ids ------------------------------------------------------------------------------------------------


def test_content_id_deterministic_and_path_equals_bytes(tmp_path: Path, make_image) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.png"
    make_image(9, 9, seed=2).save(path)
    data = path.read_bytes()
    a, b = content_id(path), content_id(str(path))
    assert a == b == content_id(data) == content_id(bytearray(data)) == content_id(memoryview(data))
    assert len(a) == 32 and int(a, 16) >= 0

    other = tmp_path / "y.png"
    make_image(9, 9, seed=3).save(other)
    assert content_id(other) != a


def test_content_id_of_pil_depends_on_pixels_and_mode(make_image) -> None:  # type: ignore[no-untyped-def]
    img = make_image(5, 4, seed=0)
    assert content_id(img) == content_id(img.copy())
    assert content_id(img) != content_id(make_image(5, 4, seed=1))
    assert content_id(img) != content_id(img.convert("RGBA"))


def test_content_id_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="missing.png"):
        content_id(tmp_path / "missing.png")


# -- high bit depth, optional codecs ----------------------------------------------------------------------------


def test_float_tiff_in_unit_range_is_not_black(tmp_path: Path) -> None:
    # a real 32-bit float TIFF written by Pillow: normalised [0, 1] greyscale, as scientific / HDR tools write it
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    path = tmp_path / "float.tif"
    Image.fromarray(ramp, mode="F").save(path)
    with Image.open(path) as check:
        assert check.mode == "F"
    arr = np.asarray(load_image(path), dtype=np.float64)
    assert arr.shape == (8, 8, 3)
    assert np.abs(arr[..., 0] - ramp * 255.0).max() <= 0.5
    assert arr.max() == 255 and arr.min() == 0


def test_float_tiff_with_other_range_is_stretched_and_nan_is_black(tmp_path: Path) -> None:
    values = np.array([[-50.0, 0.0], [150.0, 350.0]], dtype=np.float32)  # outside every integer convention
    values_nan = values.copy()
    values_nan[0, 1] = np.nan
    for arr_in, name in ((values, "a.tif"), (values_nan, "b.tif")):
        Image.fromarray(arr_in, mode="F").save(tmp_path / name)
    out = np.asarray(load_image(tmp_path / "a.tif"), dtype=np.float64)[..., 0]
    expected = (values - values.min()) / (values.max() - values.min()) * 255.0
    assert np.abs(out - expected).max() <= 0.5
    out_nan = np.asarray(load_image(tmp_path / "b.tif"))[..., 0]
    assert out_nan[0, 1] == 0 and out_nan[1, 1] == 255


def test_32_bit_integer_image_keeps_8_and_16_bit_conventions() -> None:
    eight = np.array([[0, 128, 255]], dtype=np.int32)
    assert np.asarray(to_rgb(Image.fromarray(eight, mode="I")))[0, :, 0].tolist() == [0, 128, 255]
    sixteen = np.array([[0, 257 * 100, 65535]], dtype=np.int32)
    assert np.asarray(to_rgb(Image.fromarray(sixteen, mode="I")))[0, :, 0].tolist() == [0, 100, 255]
    wide = np.array([[0, 1 << 20, 1 << 21]], dtype=np.int32)
    assert np.asarray(to_rgb(Image.fromarray(wide, mode="I")))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("suffix,fmt", [(".avif", "AVIF"), (".jp2", "JPEG2000")])
def test_avif_and_jpeg2000_decode_or_name_the_missing_codec(tmp_path: Path, suffix: str, fmt: str) -> None:
    from PIL import features

    from cir_milvus.images import format_support

    feature = {"AVIF": "avif", "JPEG2000": "jpg_2000"}[fmt]
    supported, name = format_support(suffix)
    assert supported == features.check(feature)
    if not supported:  # this Pillow build cannot even write one: the folder source reports such files by suffix
        pytest.skip(f"{name} is not in this Pillow build")
    img = _two_halves(16, 8, RED, BLUE)
    path = tmp_path / f"x{suffix}"
    img.save(path, format=fmt, **({"quality": 100} if fmt == "AVIF" else {"irreversible": False}))
    out = np.asarray(load_image(path), dtype=np.int16)
    assert np.abs(out[:, :6] - RED).max() < 60 and np.abs(out[:, 10:] - BLUE).max() < 60


# -- files that are not regular, file names that are not UTF-8 ---------------------------------------------------


def test_fifo_named_jpg_is_refused_at_once(tmp_path: Path) -> None:
    import os
    import time

    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(ImageDecodeError, match="x.jpg: not a regular file \\(a FIFO\\)"):
        load_image(fifo)
    with pytest.raises(ImageDecodeError, match="FIFO"):
        content_id(fifo)
    assert time.monotonic() - start < 5  # a blocking read would never return (no writer)


def test_socket_folder_broken_symlink_and_loop_have_reasons(tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "s.jpg"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        with pytest.raises(ImageDecodeError, match="not a regular file \\(a socket\\)"):
            load_image(sock_path)
    finally:
        sock.close()
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(ImageDecodeError, match="not a regular file \\(a folder\\)"):
        load_image(tmp_path / "d.jpg")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageDecodeError, match="broken symlink"):
        load_image(tmp_path / "broken.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    with pytest.raises(ImageDecodeError, match="symlink loop"):
        content_id(tmp_path / "loop.jpg")


@pytest.mark.parametrize("raw", [b"caf\xe9.png", b"\xff\xfe.png", b"back\\slash.png", b"ok-\xc3\xa9.png",
                                 b"mixed\\x41\xe9.png"])
def test_path_text_is_valid_utf8_and_lossless(raw: bytes) -> None:
    import os

    from cir_milvus.images import path_text, text_path

    text = path_text(raw)
    text.encode("utf-8")  # valid UTF-8: no lone surrogates
    assert os.fsencode(text_path(text)) == raw
    assert path_text(os.fsdecode(raw)) == text  # the surrogate-escaped str spelling gives the same text


def test_non_utf8_file_name_decodes_and_errors_are_printable(tmp_path: Path, make_image) -> None:  # type: ignore[no-untyped-def]
    import os

    good = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    make_image(8, 8).save(os.fsdecode(good), format="PNG")
    assert load_image(os.fsdecode(good)).size == (8, 8)
    assert content_id(os.fsdecode(good)) == content_id(Path(os.fsdecode(good)).read_bytes())
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xff.jpg")
    with open(bad, "wb") as f:
        f.write(b"not an image")
    with pytest.raises(ImageDecodeError) as info:
        load_image(os.fsdecode(bad))
    msg = str(info.value)
    msg.encode("utf-8")  # printable and JSON/UTF-8 safe
    assert "bad\\xff.jpg" in msg
