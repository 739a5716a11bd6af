"""The input zoo: good images in every mode and container we accept, and every kind of entry we must report.

``build_zoo(folder)`` writes the entries and returns them as :class:`ZooEntry` rows: the path, whether the entry is
a good image (it must be stored) and, for the others, the skip kind a folder ingest reports
(the :class:`~cir_milvus.types.SkipKind` of the skip). ``METADATA_KINDS`` and ``ID_KINDS`` are the
metadata values and ids the store must accept or refuse per record.

The benchmark ``benchmarks/bench_faults.py`` builds the same zoo, so the README's table and the tests count the
same entries.
"""

from __future__ import annotations

import datetime
import decimal
import io
import math
import os
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cir_milvus.images import format_support, path_text


@dataclass(frozen=True)
class ZooEntry:
    """One entry of the zoo folder.

    Attributes:
        path: the absolute path (a ``str``; surrogate-escaped when the name is not UTF-8).
        good: a decodable image that must be stored.
        kind: for the other entries, the skip kind a folder ingest reports (``""`` for good ones).
        top: the entry sits directly in the zoo folder (``add()`` is given these plus the deep good one).
    """

    path: str
    good: bool
    kind: str = ""

    @property
    def text(self) -> str:
        """The path as messages and skip reports spell it (valid UTF-8)."""
        return path_text(self.path)


def _photo(w: int, h: int, seed: int) -> Image.Image:
    """A smooth photo-like RGB image (gradients + noise), distinct per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / max(w, 1), y / max(h, 1), (x + y) / max(w + h, 1)], -1) * 255.0  # [H, W, 3]
    arr = np.clip(base * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 12, (h, w, 3)) + rng.uniform(0, 60, 3), 0, 255)
    return Image.fromarray(arr.astype(np.uint8))


def _encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header claims 3.6 billion pixels (no pixel data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _png_chunk(b"IEND", b"")


def _jpeg_bomb() -> bytes:
    """A small JPEG whose frame header (SOF0) claims 65,000 x 65,000 pixels."""
    data = bytearray(_encode(_photo(16, 16, 0), "JPEG", quality=80))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", 65_000, 65_000)
    return bytes(data)


def build_zoo(folder: str | os.PathLike[str]) -> list[ZooEntry]:
    """Write the zoo into ``folder`` (created) and return its entries (good ones first, then the rest).

    Sockets stay socket files after this returns (the listening socket is closed; the file remains).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    good: list[ZooEntry] = []
    bad: list[ZooEntry] = []
    seed = iter(range(1000, 2000))

    def put(name: str | bytes, data: bytes) -> str:
        path = os.path.join(os.fsencode(root), os.fsencode(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return os.fsdecode(path)

    def ok(name: str | bytes, data: bytes) -> None:
        good.append(ZooEntry(put(name, data), True))

    def img(w: int = 48, h: int = 36) -> Image.Image:
        return _photo(w, h, next(seed))

    # -- good: JPEG ------------------------------------------------------------------------------------------------
    ok("jpeg_rgb.jpg", _encode(img(), "JPEG", quality=90))
    ok("jpeg_grey.jpg", _encode(img().convert("L"), "JPEG"))
    ok("jpeg_cmyk.jpg", _encode(img().convert("CMYK"), "JPEG"))
    ok("jpeg_progressive.jpg", _encode(img(), "JPEG", progressive=True))
    exif = Image.Exif()
    exif[0x0112] = 6
    ok("jpeg_exif_rotate6.jpg", _encode(img(40, 20), "JPEG", exif=exif.tobytes()))
    ok("jpeg_1x1.jpg", _encode(img(1, 1), "JPEG"))
    ok("jpeg_strip_3000x4.jpg", _encode(img(3000, 4), "JPEG"))
    ok("UPPER_CASE.JPG", _encode(img(), "JPEG"))
    ok("photo.jpeg", _encode(img(), "JPEG"))
    # -- good: PNG -------------------------------------------------------------------------------------------------
    ok("png_rgb.png", _encode(img(), "PNG"))
    ok("png_rgba.png", _encode(img().convert("RGBA"), "PNG"))
    ok("png_la.png", _encode(img().convert("LA"), "PNG"))
    pal = img().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    ok("png_palette_transparent.png", _encode(pal, "PNG", transparency=0))
    sixteen = (np.asarray(img().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    ok("png_16bit_grey.png", _encode(Image.fromarray(sixteen), "PNG"))
    ok("png_1bit.png", _encode(img().convert("1"), "PNG"))
    frames = [img(24, 24) for _ in range(3)]
    ok("apng_animated.png", _encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=40))
    # -- good: WebP, GIF, BMP --------------------------------------------------------------------------------------
    ok("webp_lossy.webp", _encode(img(), "WEBP", quality=80))
    ok("webp_lossless_alpha.webp", _encode(img().convert("RGBA"), "WEBP", lossless=True))
    frames = [img(24, 24) for _ in range(3)]
    ok("webp_animated.webp", _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=40))
    ok("gif_static.gif", _encode(img(), "GIF"))
    frames = [img(24, 24) for _ in range(3)]
    ok("gif_animated.gif", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0))
    ok("bmp_rgb.bmp", _encode(img(), "BMP"))
    # -- good: TIFF incl. high bit depth ---------------------------------------------------------------------------
    ok("tiff_rgb.tif", _encode(img(), "TIFF"))
    grey = np.asarray(img().convert("L"), dtype=np.float32)
    ok("tiff_float32.tif", _encode(Image.fromarray(grey / 255.0, mode="F"), "TIFF"))
    ok("tiff_int32.tif", _encode(Image.fromarray(grey.astype(np.int32) * 4096, mode="I"), "TIFF"))
    ok("tiff_16bit.tiff", _encode(Image.fromarray(sixteen), "TIFF"))
    # -- AVIF / JPEG 2000: good when this Pillow decodes them, else reported ---------------------------------------
    for name, fmt, kw in (("image.avif", "AVIF", {"quality": 80}), ("image.jp2", "JPEG2000", {})):
        supported, _ = format_support(Path(name).suffix)
        if supported:
            ok(name, _encode(img(), fmt, **kw))
        else:
            bad.append(ZooEntry(put(name, b"\0\0\0\x1cftypavif" + bytes(64)), False, "unsupported_format"))
    # -- good: names -----------------------------------------------------------------------------------------------
    ok(b"caf\xe9 latin-1.jpg", _encode(img(), "JPEG"))  # not valid UTF-8
    ok("写真 ✓.png", _encode(img(), "PNG"))
    ok("it's \"quoted\" \\ back.png", _encode(img(), "PNG"))
    deep = "/".join(["é" * 120] * 9) + "/deep.png"  # the path is over 2,048 bytes (the source field's limit)
    ok(deep, _encode(img(), "PNG"))

    # -- not images ------------------------------------------------------------------------------------------------
    def ko(name: str | bytes, data: bytes, kind: str) -> None:
        bad.append(ZooEntry(put(name, data), False, kind))

    jpeg, png, tif = (_encode(img(64, 64), fmt) for fmt in ("JPEG", "PNG", "TIFF"))
    ko("empty.jpg", b"", "empty")
    ko("truncated.jpg", jpeg[: len(jpeg) // 2], "corrupt")
    ko("truncated.png", png[: len(png) // 2], "corrupt")
    ko("text_named.jpg", b"this is a text file, not a JPEG\n" * 20, "not_an_image")
    ko("page.png", b"<!doctype html><html><body>404 Not Found</body></html>\n", "not_an_image")
    ko("random_bytes.webp", np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
       "not_an_image")
    ko("truncated.tif", tif[: len(tif) // 2], "corrupt")
    ko("soi_only.jpg", b"\xff\xd8\xff", "not_an_image")
    ko("gif_header_only.gif", b"GIF89a" + bytes(7), "not_an_image")
    ko("png_header_only.png", png[:33], "not_an_image")
    ko("bomb.png", _png_bomb(), "too_large")
    ko("bomb.jpg", _jpeg_bomb(), "too_large")
    ko("notes.txt", b"a caption file\n", "unsupported_format")
    ko("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>', "unsupported_format")
    # -- not regular files -----------------------------------------------------------------------------------------
    fifo = root / "fifo.jpg"
    os.mkfifo(fifo)
    bad.append(ZooEntry(str(fifo), False, "not_a_file"))
    sock_path = root / "socket.png"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()
    bad.append(ZooEntry(str(sock_path), False, "not_a_file"))
    (root / "folder.jpg").mkdir()
    bad.append(ZooEntry(str(root / "folder.jpg"), False, "not_a_file"))
    (root / "broken_link.jpg").symlink_to(root / "no_such_target.jpg")
    bad.append(ZooEntry(str(root / "broken_link.jpg"), False, "broken_symlink"))
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    bad.append(ZooEntry(str(root / "loop.jpg"), False, "symlink_loop"))
    return good + bad


# -- metadata and ids --------------------------------------------------------------------------------------------


class _Custom:
    def __str__(self) -> str:
        return "custom-object"


def metadata_kinds() -> list[tuple[str, Any, bool]]:
    """``(name, metadata dict, storable)``: 18 kinds. Storable ones must be stored (made JSON-safe: NaN/inf →
    null, numpy scalars → numbers, surrogates replaced); the others must be reported per record, not sink the call.
    """
    cyclic: dict[str, Any] = {"name": "cycle"}
    cyclic["self"] = cyclic
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):  # deeper than the recursion limit of a naive serialiser
        node["d"] = {}
        node = node["d"]
    return [
        ("empty", {}, True),
        ("flat", {"brand": "acme", "price": 9.5, "stock": 3, "new": True, "tag": None}, True),
        ("nested", {"a": {"b": {"c": [1, 2, {"d": "e"}]}}}, True),
        ("unicode", {"name": "Grüße 日本 😀", "rtl": "שלום"}, True),
        ("quotes_and_escapes", {"q": "it's \"x\" \\ \n\t", "k'ey": "v"}, True),
        ("nan_inf", {"nan": math.nan, "inf": math.inf, "ninf": -math.inf}, True),
        ("numpy_scalars", {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True)}, True),
        ("numpy_array", {"v": np.arange(3)}, True),
        ("big_int", {"n": 2**70}, True),  # beyond int64 (Milvus JSON integers): stored as its decimal string
        ("datetime", {"t": datetime.datetime(2024, 1, 2, 3, 4, 5)}, True),
        ("decimal", {"d": decimal.Decimal("1.25")}, True),
        ("tuple_and_set", {"t": (1, 2), "s": {3}}, True),
        ("non_str_keys", {1: "one", (2, 3): "pair"}, True),
        ("lone_surrogate", {"s": "bad \udc80 text"}, True),
        ("custom_object", {"o": _Custom()}, True),
        ("cyclic", cyclic, False),
        ("too_deep", deep, False),
        ("over_64kb", {"blob": "x" * 70_000}, False),
    ]


def id_kinds() -> list[tuple[str, str, bool | None]]:
    """``(name, id, valid)``: 13 kinds. Valid ids must store, look up and delete exactly their own row; invalid
    ones (empty, over the 512-byte limit counted in bytes as the server counts) are reported per record."""
    return [
        ("plain", "sku-123", True),
        ("single_quote", "it's", True),
        ("double_quote", 'say "hi"', True),
        ("backslash", "a\\b\\", True),
        ("newline_tab", "line1\nline2\tx", True),
        ("unicode", "商品-ü-😀", True),
        ("injection_in", "x'] or id not in ['", True),
        ("injection_eq", "x\" or id != \"", True),
        ("nul", "nul\x00byte", None),  # either stored (and exact) or reported: the store decides
        ("ascii_512", "a" * 512, True),
        ("utf8_over_512_bytes", "é" * 300, False),  # 300 characters, 600 bytes
        ("empty", "", False),
        ("too_long", "z" * 5000, False),
    ]
