"""Which placeholder token of a prompt receives the pseudo token: shared by the torch and onnxruntime backends.

A prompt is a template filled with user text, e.g. ``"a photo of $ that {}"`` + ``"is under $50"``. Its token ids
then hold the placeholder id (``$`` = 259 in CLIP BPE) twice: the template's slot and the user's ``$``. SEARLE
(``encode_with_pseudo_tokens``: the first ``$`` of each row) and Pic2Word (the first ``*``) overwrite only the
template's slot; LinCIR's evaluation overwrites every ``$`` (``torch.where(ids == 259, ...)``).

Both backends inject with ``where(ids == inject_id, token, embedding)`` (the exported ONNX graph takes
``placeholder_id`` as an input), so a single slot is selected by writing a sentinel id into that position and
injecting at the sentinel: the row's other placeholder tokens keep their own embedding. The sentinel is an id that
occurs nowhere in the batch and is smaller than every id the text tower pools at (EOT is the largest CLIP id), so
pooling and positions are unchanged; the slot's own embedding row is overwritten anyway.

Example:
    >>> import numpy as np
    >>> ids = np.array([[49406, 320, 259, 1, 259, 49407, 0]])
    >>> marked, inject = mark_slot(ids, 259, 0)
    >>> (marked == inject).nonzero()[1].tolist(), int(marked[0, 4])
    ([2], 259)
    >>> mark_slot(ids, 259, None)[1]  # every placeholder (LinCIR's evaluation rule)
    259
"""

from __future__ import annotations

import numpy as np

from cir_milvus.errors import ConfigError

__all__ = ["mark_slot", "slot_mask"]


def slot_mask(ids: np.ndarray, placeholder_id: int, slot: int | None) -> np.ndarray:
    """Boolean ``[B, L]``: where the pseudo token goes.

    Args:
        ids: int64 token ids ``[B, L]``.
        placeholder_id: the placeholder's token id.
        slot: index among each row's placeholder tokens (``0`` = first, ``-1`` = last), or ``None`` for all.

    Raises:
        ConfigError: a row has no placeholder, or fewer than the slot needs.
    """
    hit = np.asarray(ids) == placeholder_id  # [B, L]
    counts = hit.sum(axis=1)  # [B]
    if slot is None:
        bad = np.flatnonzero(counts == 0)
    else:
        want = slot if slot >= 0 else counts + slot  # [B] index among the row's placeholders
        bad = np.flatnonzero((counts == 0) | (np.asarray(want) < 0) | (np.asarray(want) >= counts))
    if len(bad):
        raise ConfigError(
            f"prompt row {int(bad[0])} has {int(counts[bad[0]])} placeholder token(s) {placeholder_id}, so slot "
            f"{slot!r} does not exist; write the template with one free-standing placeholder"
        )
    if slot is None:
        return hit
    rank = np.cumsum(hit, axis=1) - 1  # [B, L] occurrence index at each placeholder position
    return hit & (rank == np.reshape(want, (-1, 1)))


def mark_slot(ids: np.ndarray, placeholder_id: int, slot: int | None) -> tuple[np.ndarray, int]:
    """Token ids and the id to inject at, so ``where(ids == inject_id)`` selects exactly the chosen slot.

    Args:
        ids: int64 token ids ``[B, L]``.
        placeholder_id: the placeholder's token id.
        slot: as for :func:`slot_mask`; ``None`` returns ``(ids, placeholder_id)`` unchanged.

    Returns:
        ``(ids [B, L], inject_id)``; ``ids`` is a copy with the slot set to a sentinel id when the rows hold other
        placeholder tokens besides the slot.
    """
    ids = np.asarray(ids, dtype=np.int64)
    mask = slot_mask(ids, placeholder_id, slot)
    if slot is None or int(mask.sum()) == int((ids == placeholder_id).sum()):
        return ids, int(placeholder_id)  # one placeholder per row: nothing to disambiguate
    present = np.unique(ids)
    free = np.setdiff1d(np.arange(1, len(present) + 2, dtype=np.int64), present)
    sentinel = int(free[0])  # smallest positive id absent from the batch (below any EOT id)
    out = ids.copy()
    out[mask] = sentinel
    return out, sentinel
