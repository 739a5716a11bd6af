"""Finding weights files, heads, text towers and bundles by content: a recipe stores hints, never a machine's paths.

A collection's recipe identifies every file it depends on by its sha256 plus a name (an open_clip tag, an
``hf-hub:`` id, or a file name). Paths are only *hints*: relative to the collection's own folder when the file
was inside it at creation (Milvus Lite), otherwise just the file name. When a collection is opened on another
machine or from another folder, a hint is looked up, in this order:

1. the hint itself when it is an absolute path (recipes written before hints existed stored paths as typed);
2. the collection's folder (``base_dir``, the folder holding a Lite ``.db``);
3. every folder of the search path: the ``search_path=`` argument, then the ``CIR_MILVUS_PATH`` environment
   variable (folders separated by ``os.pathsep``), then the package's own data folder (shipped demo weights and
   heads), each tried with the hint and with its file name alone;
4. the current directory (older recipes stored relative paths as typed);
5. where this machine last saw a file with that checksum: when a recipe is made portable, each local path it
   drops is remembered in a small per-user index (``$CIR_MILVUS_CACHE/known_files.json``, default
   ``~/.cache/cir_milvus``), so reopening on the machine that created a collection needs no search path.

A candidate is accepted only when its checksum equals the recorded one, so a file with the same name but other
bytes is never used silently: the error names both checksums.

Example:
    >>> path_hint("/data/models/w.safetensors", base_dir="/data")
    'models/w.safetensors'
    >>> path_hint("/elsewhere/w.safetensors", base_dir="/data")
    'w.safetensors'
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TypeAlias

from cir_milvus.errors import ModelNotFoundError
from cir_milvus.hashing import file_sha256

__all__ = [
    "CACHE_ENV_VAR",
    "ENV_VAR",
    "PACKAGE_DATA_DIR",
    "SearchPath",
    "candidates",
    "hint_name",
    "known_paths",
    "locate",
    "looks_like_path",
    "path_hint",
    "remember",
    "search_dirs",
]

ENV_VAR = "CIR_MILVUS_PATH"
"""Environment variable listing folders (``os.pathsep``-separated) where recipe files are looked up."""

CACHE_ENV_VAR = "CIR_MILVUS_CACHE"
"""Environment variable naming the folder of the per-user index of known files (empty: no index)."""

SearchPath: TypeAlias = "str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None"
"""Folders to search: one path, an ``os.pathsep``-separated string, or a sequence of paths."""

PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "data"
"""The package's own data folder (shipped demo weights, heads and bundle): the last folder of the search path."""
_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt", ".onnx")
_INDEX_NAME = "known_files.json"
_MAX_PATHS_PER_SHA = 8
_MAX_SHAS = 2000


def looks_like_path(value: str) -> bool:
    """Whether a ``pretrained``-style value names a file rather than a tag (``"openai"``) or a hub id."""
    if value.startswith(("hf-hub:", "bundle:", "local-dir:")):
        return False
    return (value.endswith(_CHECKPOINT_SUFFIXES) or "/" in value or os.sep in value or value.startswith(".")
            or value.startswith("~"))


def path_hint(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None) -> str:
    """The portable hint of a local path: POSIX-style relative to ``base_dir`` when inside it, else the name.

    Args:
        path: a file or folder (absolute, or relative to the current directory).
        base_dir: the collection's folder (Milvus Lite), or ``None`` for servers.
    """
    p = Path(os.fspath(path)).expanduser()
    absolute = Path(os.path.abspath(p))
    if base_dir is not None:
        base = Path(os.path.abspath(Path(os.fspath(base_dir)).expanduser()))
        for a, b in ((absolute, base), (absolute.resolve(), base.resolve())):
            try:
                rel = a.relative_to(b)
            except ValueError:
                continue
            if rel.parts:
                return rel.as_posix()
    return absolute.name


def _split(search_path: SearchPath) -> list[str]:
    if search_path is None:
        return []
    if isinstance(search_path, (str, os.PathLike)):
        return [s for s in os.fspath(search_path).split(os.pathsep) if s]
    return [os.fspath(s) for s in search_path]


def search_dirs(search_path: SearchPath = None, base_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders a hint is looked up in: ``base_dir``, ``search_path``, ``$CIR_MILVUS_PATH``, then the package's
    data folder (no duplicates)."""
    out: list[Path] = []
    raw = ([os.fspath(base_dir)] if base_dir is not None else []) + _split(search_path) + _split(
        os.environ.get(ENV_VAR)) + [os.fspath(PACKAGE_DATA_DIR)]
    for s in raw:
        p = Path(s).expanduser()
        if p not in out:
            out.append(p)
    return out


# -- the per-user index of known files ------------------------------------------------------------------------------


def _index_path() -> Path | None:
    folder = os.environ.get(CACHE_ENV_VAR)
    if folder is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(xdg, "cir_milvus")
    return Path(folder) / _INDEX_NAME if folder else None


def _read_index(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [str(p) for p in v] for k, v in data.items() if isinstance(v, list)}


def known_paths(sha256: str) -> list[Path]:
    """Paths where this machine last saw a file (or bundle / head folder) with this checksum, newest first."""
    path = _index_path()
    return [Path(p) for p in _read_index(path).get(sha256, [])] if path is not None else []


def remember(path: str | os.PathLike[str], sha256: str | None) -> None:
    """Record that ``path`` (made absolute) holds content ``sha256`` in the per-user index (best effort: an
    unwritable cache folder is ignored)."""
    index = _index_path()
    if index is None or not sha256:
        return
    where = os.path.abspath(Path(os.fspath(path)).expanduser())
    try:
        data = _read_index(index)
        paths = [where] + [p for p in data.pop(sha256, []) if p != where]
        data[sha256] = paths[:_MAX_PATHS_PER_SHA]  # re-inserted last: the newest entries survive trimming
        if len(data) > _MAX_SHAS:
            data = dict(list(data.items())[-_MAX_SHAS:])
        index.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=index.parent, prefix=".known_files.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, index)  # atomic: a concurrent reader sees the old or the new index, never half of one
    except OSError:
        return


# -- lookup ---------------------------------------------------------------------------------------------------------


def hint_name(hint: str) -> str:
    """The file name a hint ends with (POSIX or Windows separators)."""
    # a hint written on Windows may use backslashes; PurePosixPath would keep them in the name
    return PureWindowsPath(hint).name if "\\" in hint else PurePosixPath(hint).name


def candidates(hint: str, *, sha256: str | None = None, base_dir: str | os.PathLike[str] | None = None,
               search_path: SearchPath = None) -> list[Path]:
    """Where :func:`locate` looks for ``hint`` (with checksum ``sha256``), in order (existing or not)."""
    h = Path(os.path.expanduser(hint))
    name = hint_name(hint)
    out: list[Path] = []
    if h.is_absolute():
        out.append(h)
    for d in search_dirs(search_path, base_dir):
        if not h.is_absolute():
            out.append(d / h)
        if name:
            out.append(d / name)
    if not h.is_absolute():
        out.append(Path.cwd() / h)
    if sha256:
        out.extend(known_paths(sha256))
    seen: list[Path] = []
    for c in out:
        c = Path(os.path.abspath(c))
        if c not in seen:
            seen.append(c)
    return seen


def locate(
    hint: str,
    *,
    what: str,
    sha256: str | None,
    checksum: Callable[[Path], str | None] | None = None,
    want_dir: bool | None = False,
    base_dir: str | os.PathLike[str] | None = None,
    search_path: SearchPath = None,
    fix: str = "",
) -> Path:
    """Find the file (or folder) a recipe hint refers to, checked by content.

    Args:
        hint: the recorded hint (relative path, file name, or an old recipe's path as typed).
        what: what it is, for messages (``"checkpoint"``, ``"text tower"``, ``"ONNX bundle"``, ``"searle head"``).
        sha256: the recorded checksum; ``None`` accepts the first candidate that exists (old recipes).
        checksum: how to checksum a candidate (default: the file's sha256).
        want_dir: look for a folder instead of a file (``None``: either).
        base_dir: the collection's folder.
        search_path: extra folders (see :func:`search_dirs`).
        fix: how to pass the file explicitly, appended to the error message.

    Returns:
        The absolute path of the first candidate whose checksum matches.

    Raises:
        ModelNotFoundError: nothing matches; the message lists where it looked, any same-named file with other
            bytes (both checksums) and how to fix it.
    """
    if checksum is None:
        checksum = file_sha256
    tried = candidates(hint, sha256=sha256, base_dir=base_dir, search_path=search_path)
    wrong: list[str] = []
    for c in tried:
        if not (c.exists() if want_dir is None else c.is_dir() if want_dir else c.is_file()):
            continue
        if sha256 is None:
            return c
        got = checksum(c)
        if got == sha256:
            return c
        wrong.append(f"{c} has sha256 {got}")
    dirs = search_dirs(search_path, base_dir)
    msg = f"the {what} {hint!r}" + (f" (sha256 {sha256})" if sha256 else "") + " recorded in the recipe was not found"
    if wrong:
        msg += f"; found only other contents: {'; '.join(wrong)} (the recipe expects sha256 {sha256})"
    msg += (f". Looked at: {', '.join(str(c) for c in tried) or 'nothing'} (search folders: "
            f"{', '.join(str(d) for d in dirs)}). Copy it into the collection's folder or a folder listed in "
            f"${ENV_VAR} (or pass search_path=)")
    msg += f", or {fix}" if fix else ""
    raise ModelNotFoundError(msg + ".")
