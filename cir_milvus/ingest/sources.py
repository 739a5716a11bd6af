"""Where images come from: folder trees, file lists (CSV / JSON Lines / Parquet) and WebDataset tar shards.

A source is an iterable of :class:`Record` ``(id, source, metadata, origin, error)``:

- ``id``: the primary key to store, or ``None`` for a content hash (sha256 of the file bytes).
- ``source``: a file path (``str``) or the encoded bytes; never a decoded image. Decoding happens in the
  ingestion workers.
- ``metadata``: a JSON-able dict stored with the vector (filterable as ``metadata["key"]``).
- ``origin``: a name for messages and the skip report (``path``, ``list.csv:17``, ``shard.tar#key``).
- ``error``: set when the source itself could not produce the image (a tar sample without an image, a corrupt
  shard); the pipeline reports it as skipped.

Item texts (mixed galleries, ``IngestOptions(text_column=...)``): each source reads a record's ``text`` from one
column (:func:`with_text_column`): a list file's column, a WebDataset sample's ``key.json`` key (``"caption"`` also
reads ``key.txt``), the metadata of an iterable's tuples. A string is the item's text; a null, a missing key or a
blank string is an item without text (the rule of ``col.add(texts=...)``); any other value raises
:class:`~cir_milvus.errors.ConfigError` naming the row. A list file is checked before anything is read for storing:
a column no row has, or a Parquet column that is not text, raises at once.

Remote URLs are refused unless ``allow_urls=True``: a list that names ``http(s)://`` images raises
:class:`~cir_milvus.errors.ConfigError` by default, so an ingestion job never fetches from the network by surprise.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "list.csv").write_text("path,brand\\na.jpg,acme\\n")
    >>> [(r.id, pathlib.Path(r.source).name, r.metadata) for r in ListSource(d / "list.csv")]
    [(None, 'a.jpg', {'brand': 'acme'})]
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cir_milvus.collection.stage import Record
from cir_milvus.errors import ConfigError, DatasetError
from cir_milvus.images import IMAGE_SUFFIXES, format_support, is_url, path_text, refuse_url
from cir_milvus.ingest.rows import item_text, list_format, read_rows
from cir_milvus.ingest.shards import ShardSource, expand_shards
from cir_milvus.types import SkipKind

__all__ = [
    "FolderSource",
    "ListSource",
    "Record",
    "ShardSource",
    "expand_shards",
    "item_text",
    "open_source",
    "with_text_column",
]

log = logging.getLogger(__name__)

PATH_COLUMNS = ("path", "image", "image_path", "filepath", "file", "url")
ID_COLUMNS = ("id", "key")


# -- folders --------------------------------------------------------------------------------------------------------


class FolderSource:
    """Every image file under a folder (sorted, recursive), with ``{"path": relative path}`` as metadata; every
    other entry is yielded as a :class:`Record` with ``error`` set, so an ingest reports it instead of dropping it.

    Reported entries (each with its reason): files whose suffix is not an image suffix, image formats this Pillow
    build cannot decode (AVIF, JPEG 2000: see :func:`cir_milvus.images.format_support`), broken symlinks, symlink
    loops (a link to itself, or to a folder above it), folders named like an image (``x.jpg/``; their contents are
    still walked), FIFOs, sockets and devices (never opened), and folders that cannot be listed. Symlinked folders
    are followed once per path, never into a folder above them.

    File names that are not valid UTF-8 are kept: ``source`` is the name as the OS gives it (a surrogate-escaped
    ``str`` that ``open()`` accepts), while ``origin`` and ``metadata["path"]`` use
    :func:`cir_milvus.images.path_text`, a lossless valid-UTF-8 spelling (undecodable bytes as ``\\xNN``, a
    backslash as ``\\\\``; :func:`cir_milvus.images.text_path` reverses it).

    Args:
        root: the folder.
        suffixes: file name endings of images (case-insensitive); other files are reported as not images.
        recursive: descend into sub-folders.
    """

    def __init__(self, root: str | os.PathLike[str], *, suffixes: Sequence[str] = IMAGE_SUFFIXES,
                 recursive: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"{self.root} is not a folder")
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.recursive = recursive
        self._records: list[Record] | None = None

    def records(self) -> list[Record]:
        """All entries, sorted by path: images to store and reported entries (``error`` set)."""
        if self._records is None:
            out: list[Record] = []
            root_st = os.stat(self.root)
            self._walk(os.fspath(self.root), "", {(root_st.st_dev, root_st.st_ino)}, out)
            self._records = out
        return self._records

    def files(self) -> list[Path]:
        """The image files that will be decoded (reported entries excluded)."""
        return [Path(r.source) for r in self.records() if r.error is None and isinstance(r.source, str)]

    def _walk(self, folder: str, rel: str, ancestors: set[tuple[int, int]], out: list[Record]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as e:
            out.append(self._report(folder, rel or ".", SkipKind.MISSING,
                                    f"cannot list this folder ({e.strerror or e})"))
            return
        for entry in entries:
            path, relpath = entry.path, f"{rel}{entry.name}"
            suffix = os.path.splitext(entry.name)[1].lower()
            try:
                st = os.stat(path)  # follows symlinks: the kind of what the name points at
            except OSError as e:
                out.append(self._report(path, relpath, *_stat_failure(path, e)))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    out.append(self._report(path, relpath, SkipKind.SYMLINK_LOOP,
                                            "symlink loop (links to a folder above it; not followed)"))
                    continue
                if suffix in self.suffixes:
                    out.append(self._report(path, relpath, SkipKind.NOT_A_FILE,
                                            "not a regular file (a folder named like an image)"
                                            + ("; its contents are walked" if self.recursive else "")))
                if self.recursive:
                    self._walk(path, relpath + "/", ancestors | {key}, out)
                continue
            if not stat.S_ISREG(st.st_mode):
                out.append(self._report(path, relpath, SkipKind.NOT_A_FILE,
                                        f"not a regular file ({_file_kind(st.st_mode)}); never opened"))
                continue
            if suffix not in self.suffixes:
                shown = f"suffix {suffix!r}" if suffix else "no suffix"
                out.append(self._report(path, relpath, SkipKind.UNSUPPORTED_FORMAT,
                                        f"unsupported format: not an image file name ({shown}; images end in "
                                        f"{', '.join(self.suffixes)})"))
                continue
            ok, fmt = format_support(suffix)
            if not ok:
                out.append(self._report(path, relpath, SkipKind.UNSUPPORTED_FORMAT,
                                        f"unsupported format: this Pillow build has no {fmt} decoder "
                                        f"(PIL.features); install a Pillow with {fmt} support"))
                continue
            out.append(Record(None, path, {"path": path_text(relpath)}, path_text(path)))

    @staticmethod
    def _report(path: str, relpath: str, kind: SkipKind, reason: str) -> Record:
        return Record(None, None, {"path": path_text(relpath)}, path_text(path), reason, kind)

    def __len__(self) -> int:
        return len(self.records())

    def __iter__(self) -> Iterator[Record]:
        yield from self.records()

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r})"


def _stat_failure(path: str, e: OSError) -> tuple[SkipKind, str]:
    if e.errno == errno.ELOOP:
        return SkipKind.SYMLINK_LOOP, "symlink loop (the link resolves to itself)"
    if isinstance(e, FileNotFoundError) and os.path.islink(path):
        try:
            target = path_text(os.readlink(path))
        except OSError:
            target = "?"
        return SkipKind.BROKEN_SYMLINK, f"broken symlink (its target {target} does not exist)"
    if e.errno == errno.ENAMETOOLONG:
        return SkipKind.OTHER, f"path too long for the operating system ({len(os.fsencode(path))} bytes)"
    return SkipKind.MISSING, f"cannot read ({e.strerror or e})"


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


# -- lists ----------------------------------------------------------------------------------------------------------


class ListSource:
    """Images named in a CSV, JSON Lines or Parquet file.

    Columns: a path column (``path``, or ``image``/``image_path``/``filepath``/``file``/``url``), an optional
    ``id`` (or ``key``) column, an optional ``metadata`` column (a JSON object, or a JSON string in CSV), and any
    other columns, which are added to the metadata. Relative paths are resolved against ``root`` (default: the
    list file's folder). Empty ids mean "use the content hash".

    Args:
        path: ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson`` or ``.parquet``.
        root: folder that relative paths are relative to.
        allow_urls: accept ``http(s)://`` paths (they are fetched by the workers); refused by default.
        path_column, id_column: override the column names.
        text_column: the column of each item's text (:func:`item_text`), checked here: no row has it, or a Parquet
            column whose values are not strings, raises at once.

    Raises:
        DatasetError: the file is missing, has no path column, or a row is malformed.
        ConfigError: a row names a URL and ``allow_urls`` is False; a ``text_column`` the list lacks, or a text
            value that is not a string (naming the row).
    """

    def __init__(self, path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
                 allow_urls: bool = False, path_column: str | None = None, id_column: str | None = None,
                 text_column: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"image list {self.path} does not exist")
        self.format = list_format(self.path)
        self.root = Path(root) if root is not None else self.path.parent
        self.allow_urls = allow_urls
        self.path_column = path_column
        self.id_column = id_column
        self.text_column = text_column
        self._len: int | None = None
        if text_column is not None:
            self._check_text_column(text_column)

    def _check_text_column(self, column: str) -> None:
        """Refuse a text column that no row has (CSV: the header; JSON Lines: read until a row has it) or, in
        Parquet, whose type is not text: before anything is stored."""
        if self.format == "parquet":
            schema = _pyarrow_parquet().ParquetFile(self.path).schema_arrow
            names = list(schema.names)
            if column in names:
                pa = require_pyarrow()
                t = schema.field(column).type
                t = t.value_type if pa.types.is_dictionary(t) else t  # pandas categoricals
                if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
                        or getattr(pa.types, "is_string_view", lambda _: False)(t)):
                    raise ConfigError(f"{self.path.name}: the text column {column!r} holds {t} values, not strings; "
                                      "store each item's text as a string (null for an item without text)")
                return
        else:
            seen: dict[str, None] = {}
            for row in read_rows(self.path):
                if column in row:
                    return
                seen.update(dict.fromkeys(str(k) for k in row))
                if self.format == "csv":
                    break  # every CSV row has the header's columns
            else:
                if not seen:
                    return  # no rows: nothing to store
            names = list(seen)
        raise ConfigError(f"{self.path.name} has no column {column!r} (its columns: {', '.join(names)}); pass the "
                          "column that holds the item texts as text_column (--text-column)")

    def __len__(self) -> int:
        if self._len is None:
            if self.format == "parquet":
                pq = _pyarrow_parquet()
                self._len = int(pq.ParquetFile(self.path).metadata.num_rows)
            else:
                with self.path.open("rb") as f:
                    lines = sum(1 for line in f if line.strip())
                self._len = max(lines - (1 if self.format == "csv" else 0), 0)
        return self._len

    def _rows(self) -> Iterator[dict[str, Any]]:
        """The list's rows (:func:`~cir_milvus.ingest.rows.read_rows`); CSV columns typed, path/id/metadata text."""
        keep_str = {*PATH_COLUMNS, *ID_COLUMNS, "metadata"} | {c for c in (self.path_column, self.id_column,
                                                                            self.text_column) if c}
        return read_rows(self.path, typed_except=keep_str)

    def field_types(self) -> dict[str, str]:
        """Store field types for the list's extra columns (``{"price": "double", "year": "int64"}``), inferred by
        pyarrow from Parquet / CSV: pass them as ``fields=`` to ``CIRCollection.create`` so they filter as numbers.
        """
        pa = require_pyarrow()
        if self.format == "parquet":
            schema = _pyarrow_parquet().ParquetFile(self.path).schema_arrow
        elif self.format == "csv":
            rows = iter(self._rows())
            first = next(rows, None)
            if first is None:
                return {}
            schema = pa.Table.from_pylist([first, *[r for _, r in zip(range(999), rows)]]).schema
        else:
            return {}
        path_col = self.path_column or next((c for c in PATH_COLUMNS if c in schema.names), None)
        id_col = self.id_column or next((c for c in ID_COLUMNS if c in schema.names), None)
        out: dict[str, str] = {}
        for f in schema:
            if f.name in (path_col, id_col, "metadata"):
                continue
            t = f.type
            if pa.types.is_boolean(t):
                out[f.name] = "bool"
            elif pa.types.is_integer(t):
                out[f.name] = "int64"
            elif pa.types.is_floating(t):
                out[f.name] = "double"
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                out[f.name] = "varchar"
        return out

    def _columns(self, row: dict[str, Any]) -> tuple[str, str | None]:
        path_col = self.path_column or next((c for c in PATH_COLUMNS if c in row), None)
        if path_col is None or path_col not in row:
            raise DatasetError(
                f"{self.path} has no path column; expected one of {list(PATH_COLUMNS)} (got {sorted(row)}); "
                "or pass path_column="
            )
        id_col = self.id_column or next((c for c in ID_COLUMNS if c in row), None)
        return path_col, id_col

    def __iter__(self) -> Iterator[Record]:
        cols: tuple[str, str | None] | None = None
        for n, row in enumerate(self._rows(), 1):
            if cols is None:
                cols = self._columns(row)
            path_col, id_col = cols
            where = f"{self.path.name}:{n}"
            raw_path = row.get(path_col)
            if raw_path is None or str(raw_path).strip() == "":
                yield Record(None, None, {}, where, f"row {n} has no {path_col!r}")
                continue
            p = str(raw_path).strip()
            if is_url(p):
                if not self.allow_urls:
                    refuse_url(p, f"{self.path}:{n}")
                src = p
            else:
                src = str(Path(p) if Path(p).is_absolute() else self.root / p)
            rid = row.get(id_col) if id_col else None
            rid = str(rid).strip() if rid is not None and str(rid).strip() != "" else None
            text = item_text(row.get(self.text_column), where, self.text_column) if self.text_column else None
            yield Record(rid, src, _row_metadata(row, path_col, id_col, where), f"{where} ({p})", text=text)

    def __repr__(self) -> str:
        return f"ListSource({str(self.path)!r})"


def _row_metadata(row: dict[str, Any], path_col: str, id_col: str | None, where: str) -> dict[str, Any]:
    md: dict[str, Any] = {}
    for k, v in row.items():
        if k in (path_col, id_col) or k is None:
            continue
        if k == "metadata":
            if isinstance(v, str) and v.strip():
                try:
                    v = json.loads(v)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{where}: the metadata column is not JSON ({e})") from e
            if isinstance(v, dict):
                md.update(v)
            elif v not in (None, ""):
                raise DatasetError(f"{where}: the metadata column must be a JSON object, got {type(v).__name__}")
            continue
        md[k] = v
    return md


def require_pyarrow() -> Any:
    from cir_milvus._optional import require

    return require("pyarrow", extra="ingest", purpose="typed columns from image lists")


def _pyarrow_parquet() -> Any:
    from cir_milvus._optional import require

    return require("pyarrow.parquet", extra="ingest", purpose="reading Parquet image lists")


# -- in-memory ------------------------------------------------------------------------------------------------------


class IterableSource:
    """Wrap paths, bytes, ``(id, source, metadata)`` tuples or :class:`Record` objects (``text_column``: the
    metadata key of each item's text; a :class:`Record` without that key keeps its own ``text``)."""

    def __init__(self, items: Iterable[Any], *, allow_urls: bool = False, text_column: str | None = None) -> None:
        self.items = items
        self.allow_urls = allow_urls
        self.text_column = text_column

    def __len__(self) -> int:
        if hasattr(self.items, "__len__"):
            return len(self.items)  # type: ignore[arg-type]
        raise TypeError("length unknown")

    def __iter__(self) -> Iterator[Record]:
        for item in self.items:
            rec = _as_record(item)
            if isinstance(rec.source, str) and is_url(rec.source) and not self.allow_urls:
                refuse_url(rec.source, "the input")
            if self.text_column is not None:
                md = rec.metadata if isinstance(rec.metadata, dict) else {}
                rec = rec._replace(text=item_text(md.get(self.text_column, rec.text), rec.name or "an input",
                                                  self.text_column))
            yield rec


def _as_record(item: Any) -> Record:
    if isinstance(item, Record):
        return item
    if isinstance(item, (str, os.PathLike)):
        s = os.fspath(item)
        return Record(None, s, {}, s)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return Record(None, bytes(item), {})
    if isinstance(item, tuple) and len(item) == 3:
        rid, src, md = item
        src = os.fspath(src) if isinstance(src, os.PathLike) else src
        return Record(rid, src, dict(md or {}), src if isinstance(src, str) else "")
    raise ConfigError(f"cannot ingest {type(item).__name__}: give paths, bytes, (id, source, metadata) or Records")


def with_text_column(source: Any, column: str | None) -> Any:
    """``source`` with each record's ``text`` read from ``column`` (``None``: ``source`` as it is).

    Raises:
        ConfigError: a folder (it has no text column: list the images in a CSV / JSON Lines / Parquet file, or use
            WebDataset shards with ``key.txt``); a list file without that column (checked at once).
    """
    if column is None or getattr(source, "text_column", None) == column:
        return source
    if isinstance(source, FolderSource):
        raise ConfigError(f"a folder of images has no text column ({column!r}): list the images and their texts in a "
                          "CSV / JSON Lines / Parquet file, or use WebDataset shards with key.txt captions")
    if isinstance(source, ListSource):
        return ListSource(source.path, root=source.root, allow_urls=source.allow_urls, path_column=source.path_column,
                          id_column=source.id_column, text_column=column)
    if isinstance(source, ShardSource):
        return ShardSource(source.shards, image_suffixes=source.image_suffixes, text_column=column)
    if isinstance(source, IterableSource):
        return IterableSource(source.items, allow_urls=source.allow_urls, text_column=column)
    return IterableSource(source, text_column=column)


def warn_textless(report: Any, column: str | None) -> None:
    """Log a warning when a run with a text column stored rows but none with a text (shards and iterables are not
    read ahead, so a key that no sample has shows here)."""
    if column is not None and report.stored and not report.with_text:
        log.warning("stored %d rows but none has an item text: no record had a text in %r; check the text column's "
                    "name (a WebDataset key.txt is read as 'caption')", report.stored, column)


def open_source(spec: Any, *, allow_urls: bool = False, root: str | os.PathLike[str] | None = None,
                text_column: str | None = None) -> Any:
    """Turn a user argument into a source.

    Folder → :class:`FolderSource`; ``.csv``/``.tsv``/``.jsonl``/``.parquet`` → :class:`ListSource`; ``.tar``
    (or a brace/glob shard spec) → :class:`ShardSource`; an existing source (anything with ``__iter__`` yielding
    records) or a list of paths/bytes/tuples → :class:`IterableSource`. ``text_column``: see
    :func:`with_text_column`.
    """
    return with_text_column(_open(spec, allow_urls, root, text_column), text_column)


def _open(spec: Any, allow_urls: bool, root: str | os.PathLike[str] | None, text_column: str | None) -> Any:
    """A source for ``spec``, one that it builds already reading ``text_column`` (a source given is returned as is)."""
    if isinstance(spec, (FolderSource, ListSource, ShardSource, IterableSource)):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        s = os.fspath(spec)
        if is_url(s) and not allow_urls:
            refuse_url(s, "the source")
        p = Path(s)
        if p.is_dir():
            return FolderSource(p)
        low = s.lower()
        if low.endswith((".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")):
            return ListSource(p, root=root, allow_urls=allow_urls, text_column=text_column)
        if low.endswith((".tar", ".tar.gz", ".tgz")) or "{" in s or any(ch in s for ch in "*?["):
            return ShardSource(s, text_column=text_column)
        raise ConfigError(f"{s!r} is not a folder, an image list (.csv/.jsonl/.parquet) or tar shards")
    if hasattr(spec, "__iter__"):
        return IterableSource(spec, allow_urls=allow_urls, text_column=text_column)
    raise ConfigError(f"cannot ingest from {type(spec).__name__}")


def batched(records: Iterable[Record], n: int) -> Iterator[list[Record]]:
    it = iter(records)
    while True:
        chunk = list(itertools.islice(it, n))
        if not chunk:
            return
        yield chunk
