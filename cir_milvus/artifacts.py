"""Finding weights files, heads, text towers and bundles by content: a recipe stores hints, never a machine's paths.

A collection's recipe identifies every file it depends on by its sha256 plus a name (an open_clip tag, an
``hf-hub:`` id, or a file name). Paths are only *hints*: relative to the collection's own folder when the file
was inside it at creation (Milvus Lite), otherwise just the file name. When a collection is opened on another
machine or from another folder, a hint is looked up, in this order:

1. the hint itself when it is an absolute path (recipes written before hints existed stored paths as typed);
2. the collection's folder (``base_dir``, the folder holding a Lite ``.db``);
3. every folder of the search path: the ``search_path=`` argument, then the ``CIR_MILVUS_PATH`` environment
   variable (folders separated by ``os.pathsep``), each tried with the hint and with its file name alone;
4. the current directory (older recipes stored relative paths as typed).

A candidate is accepted only when its checksum equals the recorded one, so a file with the same name but other
bytes is never used silently: the error names both checksums.

Example:
    >>> path_hint("/data/models/w.safetensors", base_dir="/data")
    'models/w.safetensors'
    >>> path_hint("/elsewhere/w.safetensors", base_dir="/data")
    'w.safetensors'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TypeAlias

from cir_milvus.errors import ModelNotFoundError

__all__ = ["ENV_VAR", "SearchPath", "candidates", "locate", "looks_like_path", "path_hint", "search_dirs"]

ENV_VAR = "CIR_MILVUS_PATH"
"""Environment variable listing folders (``os.pathsep``-separated) where recipe files are looked up."""

SearchPath: TypeAlias = "str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None"
"""Folders to search: one path, an ``os.pathsep``-separated string, or a sequence of paths."""

_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt", ".onnx")


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
    """The folders a hint is looked up in: ``base_dir``, ``search_path``, then ``$CIR_MILVUS_PATH`` (no duplicates)."""
    out: list[Path] = []
    raw = ([os.fspath(base_dir)] if base_dir is not None else []) + _split(search_path) + _split(
        os.environ.get(ENV_VAR))
    for s in raw:
        p = Path(s).expanduser()
        if p not in out:
            out.append(p)
    return out


def _hint_name(hint: str) -> str:
    # a hint written on Windows may use backslashes; PurePosixPath would keep them in the name
    return PureWindowsPath(hint).name if "\\" in hint else PurePosixPath(hint).name


def candidates(hint: str, *, base_dir: str | os.PathLike[str] | None = None,
               search_path: SearchPath = None) -> list[Path]:
    """Where :func:`locate` looks for ``hint``, in order (existing or not)."""
    h = Path(os.path.expanduser(hint))
    name = _hint_name(hint)
    out: list[Path] = []
    if h.is_absolute():
        out.append(h)
    dirs = search_dirs(search_path, base_dir)
    for d in dirs:
        if not h.is_absolute():
            out.append(d / h)
        if name:
            out.append(d / name)
    if not h.is_absolute():
        out.append(Path.cwd() / h)
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
        what: what it is, for messages (``"checkpoint"``, ``"text tower"``, ``"bundle"``, ``"searle head"``).
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
        from cir_milvus.models.spec import file_sha256

        checksum = file_sha256
    tried = candidates(hint, base_dir=base_dir, search_path=search_path)
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
    where = ", ".join(str(d) for d in dirs) if dirs else "no folders"
    msg = f"the {what} {hint!r}" + (f" (sha256 {sha256})" if sha256 else "") + " recorded in the recipe was not found"
    if wrong:
        msg += f"; found only files with other contents: {'; '.join(wrong)} (the recipe expects sha256 {sha256})"
    msg += (f". Looked at: {', '.join(str(c) for c in tried) or 'nothing'} (search folders: {where}). Copy it into "
            f"the collection's folder or a folder listed in ${ENV_VAR} (or search_path=)")
    msg += f", or {fix}" if fix else ""
    raise ModelNotFoundError(msg + ".")
