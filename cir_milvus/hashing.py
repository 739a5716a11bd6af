"""The one file checksum: sha256 of a file's bytes, cached per path, size and modification time.

A leaf module (stdlib only), so that every layer identifies weights, heads, bundles and checkpoints the same way.

Example:
    >>> import hashlib, tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abc")
    >>> file_sha256(f.name) == hashlib.sha256(b"abc").hexdigest()
    True
    >>> os.unlink(f.name)
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

__all__ = ["file_sha256"]

_CHUNK = 1 << 22


@lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str], *, cached: bool = True) -> str:
    """Hex sha256 of a file's bytes.

    Args:
        path: the file.
        cached: reuse the digest of a file with the same resolved path, size and modification time (nanoseconds);
            ``False`` reads the bytes again (for checks that must not trust a file's metadata).

    Raises:
        OSError: the file cannot be read.
    """
    st = os.stat(path)
    resolved = str(Path(path).resolve())
    if not cached:
        return _sha256_cached.__wrapped__(resolved, st.st_size, st.st_mtime_ns)
    return _sha256_cached(resolved, st.st_size, st.st_mtime_ns)
