"""The pooled prefix of token ids: how many positions a causal, end-of-text-pooled text tower needs (numpy only).

CLIP's text tower attends causally (position ``p`` sees positions ``<= p`` only) and pools one position per row,
the end-of-text token, so the features of ``ids[:, :n]`` with ``n`` = the last pooled position + 1 equal those of
the whole padded row. Both backends cut with this rule: the torch encoder (:func:`~cir_milvus.encoders.torch.
pooled_prefix`) and the onnxruntime encoder for bundles whose text graphs take any length.

Example:
    >>> import numpy as np
    >>> pooled_length(np.array([[49406, 320, 49407, 0, 0], [49406, 49407, 0, 0, 0]]))
    3
"""

from __future__ import annotations

import numpy as np

__all__ = ["length_batches", "pooled_length"]


def _pooled_positions(ids: np.ndarray, pool: str, eos_id: int | None) -> np.ndarray | None:
    """The pooled position of each row ``[B]``, or ``None`` for an unknown pooling."""
    if pool == "argmax":
        return ids.argmax(axis=1)  # first maximum, as torch.argmax
    if pool == "eos" and eos_id is not None:
        return (ids == eos_id).argmax(axis=1)
    return None


def pooled_length(ids: np.ndarray, pool: str = "argmax", eos_id: int | None = None) -> int | None:
    """The pooled prefix length of ``ids`` ``[B, L]``: the last pooled position + 1 (``None`` for no rows, an
    unknown pooling, or when it is the whole row).

    Args:
        ids: int64 token ids ``[B, L]``.
        pool: ``"argmax"`` (the largest id, CLIP's end of text) or ``"eos"`` (the first ``eos_id``).
        eos_id: the end-of-text id for ``"eos"``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[0] == 0:
        return None
    pos = _pooled_positions(ids, pool, eos_id)
    if pos is None:
        return None
    n = int(pos.max()) + 1
    return n if n < ids.shape[1] else None


def length_batches(ids: np.ndarray, batch_size: int, pool: str = "argmax",
                   eos_id: int | None = None) -> list[tuple[np.ndarray, int]]:
    """Batches of row indices of similar pooled length (shortest first), each with the prefix length it needs.

    Sorting by length before batching lets a batch of short captions skip the padding that a long one would make
    every row carry. An unknown pooling gives batches in input order at the full length.

    Returns:
        ``[(rows, n), ...]``: rows index ``ids``; ``ids[rows, :n]`` gives that batch's features.

    Example:
        >>> ids = np.array([[1, 5, 9, 0], [1, 9, 0, 0], [1, 5, 5, 9]])
        >>> [(rows.tolist(), n) for rows, n in length_batches(ids, 2)]
        [([1, 0], 3), ([2], 4)]
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or not len(ids):
        return []
    pos = _pooled_positions(ids, pool, eos_id)
    if pos is None:
        return [(np.arange(s, min(s + batch_size, len(ids))), ids.shape[1]) for s in range(0, len(ids), batch_size)]
    lengths = pos + 1  # [B]
    order = np.argsort(lengths, kind="stable")
    return [(order[s : s + batch_size], int(lengths[order[s : s + batch_size]].max()))
            for s in range(0, len(order), batch_size)]
