"""List files as rows: the one reader of CSV / TSV, JSON Lines and Parquet lists.

Ingestion's :class:`~cir_milvus.ingest.sources.ListSource` (image lists with metadata) and training's caption, image
and triplet lists (:mod:`cir_milvus.train.data`, :mod:`cir_milvus.train.rtd`) read their files here, so a list that
one accepts the other reads the same way.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "c.jsonl").write_text('{"caption": "a red star"}\\n\\n{"caption": "a blue circle"}\\n')
    >>> [r["caption"] for r in read_rows(d / "c.jsonl")]
    ['a red star', 'a blue circle']
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from cir_milvus.collection.mixed import check_item_texts
from cir_milvus.errors import ConfigError, DatasetError

__all__ = ["LIST_FORMATS", "item_text", "list_format", "read_rows"]

LIST_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
"""List file suffixes and the format each is read as."""


def list_format(path: str | os.PathLike[str]) -> str:
    """``"csv"``, ``"jsonl"`` or ``"parquet"`` for a list file's suffix.

    Raises:
        ConfigError: any other suffix (the message lists the accepted ones).
    """
    fmt = LIST_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"list files must be .csv, .tsv, .jsonl/.ndjson or .parquet; got {Path(path).name}")
    return fmt


def read_rows(path: str | os.PathLike[str], *, typed_except: Collection[str] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a list file as dicts (blank JSON lines skipped).

    Args:
        path: ``.csv`` / ``.tsv`` (delimiter sniffed: a tab-separated sample without commas is TSV),
            ``.jsonl`` / ``.ndjson`` (one JSON object per line) or ``.parquet`` (needs pyarrow).
        typed_except: CSV only: ``None`` reads every value as text; a collection of column names infers the other
            columns' types with pyarrow (numbers stay numbers, so ``price < 20`` filters work) and keeps those
            columns text (falls back to text without pyarrow or when inference fails).

    Raises:
        DatasetError: the file is missing (at once); a JSON line that is not a JSON object (while iterating).
        ConfigError: not a list file suffix.
        BackendUnavailableError: a Parquet file without pyarrow.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"list file {path} does not exist")
    fmt = list_format(path)
    if fmt == "csv":
        return _csv_rows(path, typed_except)
    if fmt == "jsonl":
        return _jsonl_rows(path)
    return _parquet_rows(path)


def _csv_rows(path: Path, typed_except: Collection[str] | None) -> Iterator[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as f:
        sample = f.read(4096)
        f.seek(0)
        delim = "\t" if path.suffix.lower() == ".tsv" or ("\t" in sample and "," not in sample) else ","
        if typed_except is not None:
            header = next(csv.reader(f, delimiter=delim), [])
            f.seek(0)
            typed = _typed_csv_rows(path, delim, {c for c in header if c in typed_except})
            if typed is not None:
                yield from typed
                return
        yield from csv.DictReader(f, delimiter=delim)


def _typed_csv_rows(path: Path, delim: str, keep_str: set[str]) -> Iterator[dict[str, Any]] | None:
    """CSV rows with column types inferred by pyarrow, ``keep_str`` columns as strings; ``None`` without pyarrow or
    when inference fails (e.g. a column whose type changes past the first block)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    try:
        table = pacsv.read_csv(
            path, parse_options=pacsv.ParseOptions(delimiter=delim),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in keep_str},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
            read_options=pacsv.ReadOptions(block_size=1 << 26))
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    return iter(table.to_pylist())


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not valid JSON ({e})") from e
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{n}: each line must be a JSON object")
            yield row


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    from cir_milvus._optional import require

    pq = require("pyarrow.parquet", extra="ingest", purpose="reading Parquet lists")
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def item_text(value: Any, where: str, column: str) -> str | None:
    """An item's text from its ``column`` value: a string; ``None`` (null, a missing key) or a blank string is an item
    without text, as in ``col.add(texts=...)``.

    Raises:
        ConfigError: any other value (a number, a list...), naming ``where`` (the row).
    """
    if value is not None and not isinstance(value, str):
        shown = repr(value)
        raise ConfigError(f"{where}: the text column {column!r} holds a {type(value).__name__} "
                          f"({shown[:40] + '...' if len(shown) > 40 else shown}), not a string; give each item's text "
                          "as a string (null, a missing key or \"\" for an item without text)")
    (text,) = check_item_texts([value], 1, True, "") or [None]  # add()'s rule: blank is no text
    return text
