"""Decoding user images: paths, bytes or PIL images → RGB PIL images, with clear errors for bad files.

Two loading modes (``load_image(..., mode=...)``), recorded in the encoder's preprocessing config because they
change the vectors:

- ``"product"`` (default, ingestion and queries of user data) follows the rules below.
- ``"official"`` decodes exactly as the research code's data sets do (``PIL.Image.open(path)`` handed to the
  transform): no EXIF rotation, the image keeps its own PIL mode, and the preprocessing converts it to RGB where
  the official transform does (``Image.convert("RGB")``: transparency is dropped, not composited). Used by the
  evaluation runner on benchmark images. The decoding guards (missing/empty/corrupt files, pixel cap, first
  frame of animations) apply to both.

Rules of the ``"product"`` mode:

- EXIF orientation is applied (``ImageOps.exif_transpose``).
- Any mode becomes RGB: palette and LA/RGBA images with transparency are composited on white, CMYK is
  converted, 16-bit greyscale (``I;16``) is scaled to 8 bits (``v / 257``). 32-bit integer (``I``) and float
  (``F``) greyscale are scaled by the data's range (:func:`to_rgb`): values within [0, 1] (floats) are the
  normalised convention (``v * 255``), values within [0, 255] are kept, values within [0, 65535] are 16-bit
  (``v / 257``), anything else is stretched linearly from its minimum to its maximum; NaN becomes black.
- AVIF and JPEG 2000 decode when this Pillow build has the codec (:func:`format_support`); when it lacks one the
  error says which codec is missing.
- Animated images (GIF, WebP, APNG) use their first frame.
- Images with more than :data:`MAX_PIXELS` pixels are refused (decompression-bomb guard).
- Zero-byte, truncated and non-image files raise :class:`~cir_milvus.errors.ImageDecodeError` naming the file.
- Only regular files are read: a FIFO, socket or device named ``x.jpg`` is refused at once, never read (the file
  is opened non-blocking and checked with ``fstat`` before any read, so a FIFO cannot block the caller).
- File names that are not valid UTF-8 (POSIX allows any bytes) are accepted; messages and stored paths use
  :func:`path_text`, a lossless, valid-UTF-8 spelling of the name (:func:`text_path` reverses it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL import features as _pil_features

from cir_milvus.errors import ConfigError, ImageDecodeError
from cir_milvus.types import ImageInput, SkipKind

MAX_PIXELS = 89_478_485
"""Pixel cap per image (Pillow's own default bomb threshold); larger images are refused."""

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "content_id", "describe", "file_problem", "format_support", "is_url", "load_image",
           "path_text", "read_bytes", "read_image_file", "refuse_url", "regular_file_problem", "strip_name",
           "text_path", "to_rgb"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".jp2", ".j2k", ".jpx",
                  ".jpf")
"""File name endings taken for images wherever folders are searched (ingestion, training); AVIF and JPEG 2000
need a Pillow built with them (:func:`format_support`)."""

# suffix → (Pillow feature that decodes it, format name); formats Pillow may be built without
_OPTIONAL_CODECS = {".avif": ("avif", "AVIF"), ".jp2": ("jpg_2000", "JPEG 2000"), ".j2k": ("jpg_2000", "JPEG 2000"),
                    ".jpx": ("jpg_2000", "JPEG 2000"), ".jpf": ("jpg_2000", "JPEG 2000"),
                    ".j2c": ("jpg_2000", "JPEG 2000"), ".webp": ("webp", "WebP")}
_MAGIC = ((b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpg_2000", "JPEG 2000"), (b"\xff\x4f\xff\x51", "jpg_2000", "JPEG 2000"))


def format_support(suffix: str) -> tuple[bool, str]:
    """Whether this Pillow build decodes files with ``suffix`` (``".avif"``, ``".jp2"``...), and the format name.

    Formats Pillow always decodes (JPEG, PNG, GIF, BMP, TIFF) return ``(True, name)``; AVIF, JPEG 2000 and WebP
    depend on how Pillow was built (``PIL.features``).

    Example:
        >>> format_support(".png")
        (True, 'PNG')
    """
    s = suffix.lower()
    if s in _OPTIONAL_CODECS:
        feature, name = _OPTIONAL_CODECS[s]
        return bool(_pil_features.check(feature)), name
    return True, s.lstrip(".").upper() or "?"


def _missing_codec(data: bytes) -> str | None:
    """The format name when ``data`` is an AVIF / JPEG 2000 / WebP file this Pillow cannot decode."""
    head = data[:32]
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return None if _pil_features.check("avif") else "AVIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return None if _pil_features.check("webp") else "WebP"
    for magic, feature, name in _MAGIC:
        if head.startswith(magic):
            return None if _pil_features.check(feature) else name
    return None


# -- file names -----------------------------------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def path_text(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    r"""A file name as valid UTF-8 text, losslessly: the stored and printed spelling of paths.

    The name's bytes (``os.fsencode``) are decoded as UTF-8; each byte that is not part of valid UTF-8 becomes
    ``\xNN`` (lower-case hex) and a literal backslash becomes ``\\``. Names that are valid UTF-8 and contain no
    backslash (nearly all) are unchanged. :func:`text_path` gives the original name back.

    Example:
        >>> path_text(b"caf\xe9.jpg"), path_text("plain.jpg"), path_text("a\\b")
        ('caf\\xe9.jpg', 'plain.jpg', 'a\\\\b')
    """
    raw = os.fsencode(path)
    if b"\\" not in raw:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    out: list[str] = []
    i = 0
    while i < len(raw):
        try:
            text = raw[i:].decode("utf-8")
            out.append(text.replace("\\", "\\\\"))
            break
        except UnicodeDecodeError as e:
            out.append(raw[i : i + e.start].decode("utf-8").replace("\\", "\\\\"))
            out.extend(f"\\x{b:02x}" for b in raw[i + e.start : i + e.end])
            i += e.end
    return "".join(out)


def text_path(text: str) -> str:
    r"""The file name that :func:`path_text` spelled as ``text`` (a ``str`` for ``open()``, surrogate-escaped).

    Example:
        >>> text_path(path_text(b"caf\xe9.jpg")) == os.fsdecode(b"caf\xe9.jpg")
        True
    """
    if "\\" not in text:
        return text
    raw = _ESCAPE.sub(lambda m: "\\" if m.group(1) == "\\" else chr(0xDC00 + int(m.group(1)[1:], 16)), text)
    return os.fsdecode(raw.encode("utf-8", "surrogateescape"))


@contextlib.contextmanager
def _open_regular(path: str | os.PathLike[str], name: str) -> Iterator[BinaryIO]:
    """Open ``path`` for reading if it is a regular file; never blocks (see :func:`read_image_file`)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        kind, reason = _open_failure(path, e)
        raise ImageDecodeError(f"{name}: {reason}", kind) from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageDecodeError(f"{name}: not a regular file ({_file_kind(mode)}); only regular files are read",
                                   SkipKind.NOT_A_FILE)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _open_failure(path: str | os.PathLike[str], e: OSError) -> tuple[SkipKind, str]:
    """Why ``open`` failed, as a kind and in words: missing, broken symlink, symlink loop, a folder or socket,
    permissions."""
    if e.errno == errno.ELOOP:
        return SkipKind.SYMLINK_LOOP, "symlink loop (the link resolves to itself)"
    if isinstance(e, FileNotFoundError):
        if os.path.islink(path):
            return SkipKind.BROKEN_SYMLINK, "broken symlink (its target does not exist)"
        return SkipKind.MISSING, "image file not found"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode and not stat.S_ISREG(mode):
        return SkipKind.NOT_A_FILE, f"not a regular file ({_file_kind(mode)}); only regular files are read"
    return SkipKind.MISSING, f"cannot read ({e.strerror or e})"


def strip_name(message: str, name: str) -> str:
    """An :class:`ImageDecodeError` message without its leading ``"{name}: "`` (the reason alone, for reports that
    name the file in a column of their own)."""
    return message[len(name) + 2:] if message.startswith(name + ": ") else message


def file_problem(path: str | os.PathLike[str]) -> tuple[SkipKind, str] | None:
    """Why ``path`` is not a regular file that can be read, as ``(kind, reason)`` (``None`` when it is), from
    ``stat`` alone: nothing is opened. The reasons are those :func:`read_image_file` gives (missing, broken symlink,
    symlink loop, not a regular file)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return _open_failure(path, e)
    if not stat.S_ISREG(mode):
        return SkipKind.NOT_A_FILE, f"not a regular file ({_file_kind(mode)}); only regular files are read"
    return None


def regular_file_problem(path: str | os.PathLike[str]) -> str | None:
    """The reason of :func:`file_problem` alone."""
    problem = file_problem(path)
    return problem[1] if problem is not None else None


def read_image_file(path: str | os.PathLike[str], *, name: str | None = None) -> bytes:
    """The bytes of a regular file; anything else (FIFO, socket, device, folder) is refused without blocking.

    The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before the first read, so a FIFO named
    ``x.jpg`` (or a file swapped for one after a ``stat``) is refused at once instead of waiting for a writer.

    Raises:
        ImageDecodeError: missing, a broken symlink or loop, not a regular file, or unreadable (the message names
            the file and the reason).
    """
    name = name or path_text(path)
    with _open_regular(path, name) as f:
        try:
            return f.read()
        except OSError as e:
            raise ImageDecodeError(f"{name}: cannot read ({e.strerror or e})", SkipKind.MISSING) from e


def is_url(path: str) -> bool:
    """Whether ``path`` names an ``http(s)://`` image."""
    return path.lower().startswith(("http://", "https://"))


def refuse_url(path: str, where: str) -> None:
    """Raise the error for a remote image nobody allowed fetching (``allow_urls`` / ``--allow-urls``).

    Raises:
        ConfigError: always; the message says how to download first or allow it.
    """
    raise ConfigError(
        f"{where} names a remote image {path!r}; cir_milvus does not fetch URLs unless asked. Download the images "
        "first (e.g. with img2dataset, then use --shards), or pass allow_urls=True (--allow-urls) to fetch them"
    )


def read_bytes(source: str | bytes, *, allow_urls: bool = False, timeout: float = 30.0,
               max_bytes: int = 256 * 1024 * 1024) -> bytes:
    """The encoded image: the bytes themselves, a file's contents, or (only with ``allow_urls``) a download.

    Raises:
        OSError: a file that cannot be read or a failed download (the caller reports it as skipped).
        ConfigError: a URL without ``allow_urls``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if is_url(source):
        if not allow_urls:
            refuse_url(source, "a record")
        import urllib.request

        with urllib.request.urlopen(source, timeout=timeout) as resp:  # noqa: S310 - http(s) only, checked above
            data = resp.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise OSError(f"download larger than {max_bytes} bytes")
        return bytes(data)
    try:
        return read_image_file(source)  # regular files only: a FIFO never blocks the reader
    except ImageDecodeError as e:
        raise OSError(str(e)) from e


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def describe(image: ImageInput) -> str:
    """A short name for an image input, for messages (valid UTF-8 even for non-UTF-8 file names)."""
    if isinstance(image, (str, os.PathLike)):
        return path_text(image)
    if isinstance(image, bytes):
        return f"<{len(image)} bytes>"
    if isinstance(image, Image.Image):
        return f"<PIL {image.mode} {image.size[0]}x{image.size[1]}>"
    return f"<{type(image).__name__}>"


def _to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """High-bit-depth greyscale → uint8 by the data's range (the rules in the module docstring)."""
    arr = arr.astype(np.float64)  # [H, W]
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    arr = np.clip(np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo), lo, hi)  # NaN → black, ±inf → the extremes
    if mode.startswith("I;16"):
        scaled = arr / 257.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = arr
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = arr / 257.0
    else:
        scaled = (arr - lo) / (hi - lo) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (transparency composited on white, 16/32-bit and float scaled to 8-bit).

    Scaling of ``I;16``, ``I`` and ``F`` images: see the module docstring.
    """
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = Image.fromarray(_to_8bit(np.asarray(img), img.mode), mode="L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(
    image: ImageInput, max_pixels: int = MAX_PIXELS, *, name: str | None = None, mode: str = "product",
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image input into a PIL image.

    Args:
        image: a path, encoded bytes or a PIL image.
        max_pixels: refuse images with more pixels than this.
        name: what error messages call the image (default: the path, or "<N bytes>").
        mode: ``"product"`` (EXIF rotation, any mode to RGB with transparency on white) or ``"official"`` (the
            research code's ``Image.open``: no EXIF rotation, the PIL mode kept for the preprocessing to convert).
        draft: decode JPEGs at a reduced scale (DCT-domain 1/2, 1/4, 1/8) as long as both sides stay at least this
            ``(width, height)`` (``Image.draft``; see :func:`cir_milvus.preprocess.decode_size`). Other formats and
            PIL inputs are unaffected.

    Returns:
        A fully loaded image: RGB with EXIF orientation applied (``"product"``), or as decoded (``"official"``).

    Raises:
        ImageDecodeError: the file is missing, empty, truncated, not an image, or too large.
        ConfigError: the input is not a path, bytes or PIL image, or ``mode`` is unknown.
    """
    if mode not in ("product", "official"):
        raise ConfigError(f"image loading mode must be 'product' or 'official', got {mode!r}")
    name = name or describe(image)
    if isinstance(image, Image.Image):
        img = image
    else:
        if isinstance(image, (str, os.PathLike)):
            data = read_image_file(image, name=name)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
        else:
            raise ConfigError(f"images must be file paths, bytes or PIL images; got {type(image).__name__}")
        if not data:
            raise ImageDecodeError(f"{name}: empty file (0 bytes)", SkipKind.EMPTY)
        try:
            with warnings.catch_warnings():
                # Pillow's UserWarnings describe quirks of one file ("Corrupt EXIF data"...): the decode either
                # succeeds or raises, and one warning per file would flood an ingest log
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                if img.size[0] * img.size[1] > max_pixels:
                    raise ImageDecodeError(
                        f"{name}: {img.size[0]}x{img.size[1]} exceeds the pixel cap of {max_pixels:,} "
                        "(possible decompression bomb); resize it or raise max_pixels", SkipKind.TOO_LARGE
                    )
                if getattr(img, "is_animated", False):
                    img.seek(0)
                if draft is not None and img.format == "JPEG":
                    img.draft(img.mode, draft)  # DCT-domain scaling; the mode is kept
                img.load()
        except ImageDecodeError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            # Pillow refuses before our own check can run (its limit: MAX_IMAGE_PIXELS, an error at twice that)
            raise ImageDecodeError(f"{name}: exceeds the pixel cap, possible decompression bomb ({e})",
                                   SkipKind.TOO_LARGE) from e
        except UnidentifiedImageError as e:
            codec = _missing_codec(data)
            if codec is not None:
                raise ImageDecodeError(
                    f"{name}: unsupported format: this Pillow build has no {codec} decoder "
                    f"(PIL.features.check reports it missing); install a Pillow with {codec} support",
                    SkipKind.UNSUPPORTED_FORMAT,
                ) from e
            raise ImageDecodeError(f"{name}: not a readable image (no image format recognises its content; it "
                                   f"starts with {data[:12]!r})", SkipKind.NOT_AN_IMAGE) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageDecodeError(f"{name}: corrupt or truncated image ({e})", SkipKind.CORRUPT) from e
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageDecodeError(f"{name}: {img.size[0]}x{img.size[1]} exceeds the pixel cap of {max_pixels:,}",
                               SkipKind.TOO_LARGE)
    if img.size[0] == 0 or img.size[1] == 0:
        raise ImageDecodeError(f"{name}: image has zero width or height", SkipKind.EMPTY)
    if mode == "official":
        return img
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
        pass
    return to_rgb(img)


def content_id(image: ImageInput) -> str:
    """A deterministic id from the image's content: sha256 of the file bytes (or of the pixels of a PIL image).

    Re-adding the same file gives the same id, so upserts never duplicate it.
    """
    h = hashlib.sha256()
    if isinstance(image, (str, os.PathLike)):
        name = path_text(image)
        with _open_regular(image, name) as f:
            try:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            except OSError as e:
                raise ImageDecodeError(f"{name}: cannot read ({e.strerror or e})", SkipKind.MISSING) from e
    elif isinstance(image, (bytes, bytearray, memoryview)):
        h.update(bytes(image))
    elif isinstance(image, Image.Image):
        h.update(f"{image.mode}:{image.size}".encode())
        h.update(image.tobytes())
    else:
        raise ConfigError(f"images must be file paths, bytes or PIL images; got {type(image).__name__}")
    return h.hexdigest()[:32]
