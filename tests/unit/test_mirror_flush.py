"""A text mirror (mixed galleries on Milvus < 2.4) is flushed at the same time as its collection: each flush waits
for the server to seal segments, and the two collections are independent."""

from __future__ import annotations

import threading

import pytest

from cir_milvus import StorageError
from cir_milvus.storage.mirror import flush_with_mirror, mirror_name


def test_the_mirror_and_the_collection_are_flushed_at_the_same_time() -> None:
    both = threading.Barrier(2, timeout=5)  # one flush after the other would break it
    flushed: list[str] = []

    def flush(name: str) -> None:
        both.wait()
        flushed.append(name)

    flush_with_mirror(flush, "c", mirror_name("c"))
    assert sorted(flushed) == ["c", mirror_name("c")]


def test_a_failed_mirror_flush_is_raised_once_both_are_done() -> None:
    flushed: list[str] = []

    def flush(name: str) -> None:
        flushed.append(name)
        if name == mirror_name("c"):
            raise StorageError("flush refused")

    with pytest.raises(StorageError, match="flush refused"):
        flush_with_mirror(flush, "c", mirror_name("c"))
    assert sorted(flushed) == ["c", mirror_name("c")]
    flushed.clear()
    flush_with_mirror(flush, "c", None)  # no mirror: the collection alone
    assert flushed == ["c"]
