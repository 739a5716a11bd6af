"""Which files the service may read: the stored ``source`` of a hit, only inside the operator's image roots.

A collection stores the path each image was ingested from (``source``); that text comes from whoever ingested, so
the service treats it as untrusted: it is resolved (symlinks followed, ``..`` collapsed) and served only when the
real file lies inside one of the folders the operator named with ``--image-root`` (the folders the collection was
ingested from). Relative sources are tried against each root. Nothing a client sends is ever used as a path: a
client names an id, the id is looked up in the collection, and the stored source goes through this check.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cir_milvus.errors import ConfigError

__all__ = ["ImageRoots"]


class ImageRoots:
    """The folders images may be served from.

    Args:
        roots: existing folders; each is resolved once (symlinks followed) at construction.

    Raises:
        ConfigError: a root does not exist or is not a folder.

    Example:
        >>> ImageRoots([]).resolve("/etc/passwd") is None
        True
    """

    def __init__(self, roots: Iterable[str | os.PathLike[str]] = ()) -> None:
        resolved: list[Path] = []
        for r in roots:
            p = Path(r).expanduser()
            if not p.is_dir():
                raise ConfigError(f"image root {str(r)!r} is not a folder; pass the folder the images were ingested "
                                  "from (--image-root DIR)")
            resolved.append(p.resolve(strict=True))
        self.roots: tuple[Path, ...] = tuple(dict.fromkeys(resolved))

    def __bool__(self) -> bool:
        return bool(self.roots)

    def __repr__(self) -> str:
        return f"ImageRoots({[str(r) for r in self.roots]!r})"

    def _inside(self, path: Path) -> Path | None:
        try:
            real = path.resolve(strict=True)  # follows every symlink: a link out of a root resolves outside it
        except (OSError, RuntimeError):  # missing file, symlink loop
            return None
        if not real.is_file():
            return None
        for root in self.roots:
            if real == root or root in real.parents:
                return real
        return None

    def resolve(self, source: str) -> Path | None:
        """The real path of a stored ``source`` when it is a file inside a root, else ``None``.

        Absolute sources must resolve inside a root; relative ones are joined to each root in turn, then to the
        working folder, and must still resolve inside a root after ``..`` and symlinks.
        """
        if not self.roots or not source or "\x00" in source:
            return None
        p = Path(source)
        if p.is_absolute():
            return self._inside(p)
        for base in (*self.roots, Path.cwd()):  # the ingest may have run from the folder the server runs in
            got = self._inside(base / p)
            if got is not None:
                return got
        return None
