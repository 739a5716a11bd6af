"""WebDataset tar shards as img2dataset writes them: shard specs (brace ranges, lists, globs) and their samples as
records (:class:`ShardSource`, re-exported by :mod:`cir_milvus.ingest.sources`)."""

from __future__ import annotations

import glob
import json
import re
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cir_milvus.collection.stage import Record
from cir_milvus.errors import ConfigError, DatasetError
from cir_milvus.ingest.rows import item_text
from cir_milvus.types import SkipKind

__all__ = ["ShardSource", "expand_shards"]

_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_BRACE_LIST = re.compile(r"\{([^{}]*,[^{}]*)\}")
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset: key = path up to the first dot of the basename


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """Shard paths from brace ranges (``data/{00000..00009}.tar``), brace lists (``{a,b}.tar``) and globs.

    Raises:
        ConfigError: nothing matches.

    Example:
        >>> expand_shards("s/{00..02}.tar")
        ['s/00.tar', 's/01.tar', 's/02.tar']
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for s in specs:
        for item in _expand_braces(s):
            if any(ch in item for ch in "*?["):
                out.extend(sorted(glob.glob(item)))
            else:
                out.append(item)
    if not out:
        raise ConfigError(f"no shards match {spec!r}")
    return out


def _expand_braces(s: str) -> list[str]:
    r, c = _BRACE_RANGE.search(s), _BRACE_LIST.search(s)
    m = r if r is not None and (c is None or r.start() < c.start()) else None
    if m:
        a, b = m.group(1), m.group(2)
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        lo, hi = int(a), int(b)
        step = 1 if hi >= lo else -1
        return [x for i in range(lo, hi + step, step)
                for x in _expand_braces(s[: m.start()] + str(i).zfill(width) + s[m.end():])]
    m = _BRACE_LIST.search(s)
    if m:
        return [x for part in m.group(1).split(",") for x in _expand_braces(s[: m.start()] + part + s[m.end():])]
    return [s]


def _check_end_marker(shard: str, offset: int) -> None:
    """An uncompressed tar cut at a block boundary reads as a shorter, valid archive: require the zero block that
    ends a complete one (compressed shards detect truncation in the decompressor)."""
    with open(shard, "rb") as f:
        head = f.read(6)
        if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
            return
        f.seek(offset)
        block = f.read(512)
    if len(block) < 512 or block.strip(b"\0"):
        raise tarfile.ReadError(f"no end-of-archive marker after byte {offset} (the file was cut short)")


class ShardSource:
    """Samples of WebDataset tar shards as img2dataset writes them (``key.jpg`` + ``key.json`` [+ ``key.txt``]).

    The id is the sample key; the metadata is the parsed ``key.json`` (plus ``{"caption": ...}`` from ``key.txt``
    when the JSON has none, and ``{"shard": name}``). Samples without an image are reported, not dropped
    silently; a corrupt shard stops at the corruption and reports it. Shards are read with the stdlib ``tarfile``
    in streaming mode (no ``webdataset`` dependency).

    Args:
        shards: a spec for :func:`expand_shards` or a list of paths.
        image_suffixes: member suffixes that hold the image (the first present is used).
        text_column: the metadata key of each item's text (:func:`item_text`; ``"caption"``: ``key.txt`` when the
            JSON has no caption).
    """

    def __init__(self, shards: str | Sequence[str], *, image_suffixes: Sequence[str] = ("jpg", "jpeg", "png", "webp",
                                                                                          "bmp", "gif", "tif", "tiff"),
                 text_column: str | None = None):
        self.shards = expand_shards(shards)
        missing = [s for s in self.shards if not Path(s).is_file()]
        if missing:
            raise DatasetError(f"shard {missing[0]} does not exist ({len(missing)} of {len(self.shards)} missing)")
        self.image_suffixes = tuple(image_suffixes)
        self.text_column = text_column

    def __iter__(self) -> Iterator[Record]:
        for shard in self.shards:
            yield from self._read(shard)

    def _read(self, shard: str) -> Iterator[Record]:
        name = Path(shard).name
        key: str | None = None
        parts: dict[str, bytes] = {}
        try:
            with tarfile.open(shard, "r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    m = _KEY.match(member.name)
                    if m is None:
                        continue
                    k, ext = m.group(1), m.group(2).lower()
                    if k != key:
                        if key is not None:
                            yield self._record(name, key, parts)
                        key, parts = k, {}
                    f = tar.extractfile(member)
                    parts[ext] = f.read() if f is not None else b""
                _check_end_marker(shard, tar.offset)
        except (tarfile.TarError, OSError, EOFError) as e:
            if key is not None:
                yield self._record(name, key, parts)
                key = None
            yield Record(None, None, {"shard": name}, f"{name}", f"corrupt or truncated shard ({e}); later samples "
                                                                   "of this shard are lost", SkipKind.CORRUPT_SHARD)
        if key is not None:
            yield self._record(name, key, parts)

    def _record(self, shard: str, key: str, parts: dict[str, bytes]) -> Record:
        origin = f"{shard}#{key}"
        md: dict[str, Any] = {}
        if "json" in parts:
            try:
                loaded = json.loads(parts["json"].decode("utf-8"))
                md = loaded if isinstance(loaded, dict) else {"json": loaded}
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                md = {"json_error": str(e)[:200]}
        if "txt" in parts and "caption" not in md:
            md["caption"] = parts["txt"].decode("utf-8", errors="replace")
        md.setdefault("shard", shard)
        img = next((parts[s] for s in self.image_suffixes if s in parts), None)
        if img is None:
            return Record(key, None, md, origin, f"sample has no image member (has {sorted(parts)})", SkipKind.NO_IMAGE)
        text = item_text(md.get(self.text_column), origin, self.text_column) if self.text_column else None
        return Record(key, img, md, origin, text=text)

    def __repr__(self) -> str:
        return f"ShardSource({len(self.shards)} shards)"
