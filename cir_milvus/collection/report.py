"""What a write of images did: :class:`IngestReport`, the one report of ``add()``, ``ingest()`` and ``ingest_ray()``,
and :class:`SkipLog`, which collects skipped inputs into it (and into a JSON Lines file) as they happen.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from cir_milvus.storage.policy import safe_text
from cir_milvus.storage.store import Id, Skipped
from cir_milvus.types import SkipKind

__all__ = ["IngestReport", "SkipLog", "SkippedInput"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedInput(Skipped):
    """A skipped input (``source``, ``reason``, ``id``) and the :class:`~cir_milvus.types.SkipKind` of its reason,
    set where the reason was found (never derived from the message text)."""

    kind: SkipKind = SkipKind.OTHER


@dataclass
class IngestReport:
    """What :meth:`~cir_milvus.CIRCollection.add`, :func:`~cir_milvus.ingest.ingest` or
    :func:`~cir_milvus.ingest.ray_pipeline.ingest_ray` did: the same fields, types and counting rules for all three.

    ``seen == stored + already_stored + duplicates + len(skipped)``. Iterating the report (or indexing it) gives
    ``ids``: one entry per input in input order, its id or ``None`` when it was skipped (``ingest_ray`` too, whose
    rows come back in any order: each carries its input position).

    Attributes:
        seen: inputs (records) read.
        stored: rows encoded and written by this call.
        already_stored: inputs whose id was stored before the call (not decoded, not encoded: resume). A count in
            all three entry points (``add`` returned a list of ids before 0.2: the ids are in ``ids``).
        duplicates: inputs whose id repeats an earlier input of the call (the same file twice, the same key).
        skipped: inputs that were not stored, with reasons and kinds (:class:`SkippedInput`).
        encoded: images encoded by this call (equals ``stored`` unless the store refused encoded rows).
        retries: storage calls retried after transient failures.
        seconds: wall time.
        skip_report: where the JSON Lines skip report was written (or ``None``).
        ids: the id of each input (``None``: skipped), in input order.
        with_text: stored rows that have an item text (mixed galleries); ``None`` when the call read no item texts
            (no ``text_column`` / ``texts=``; with one, a run that stored none has 0).
    """

    seen: int = 0
    stored: int = 0
    already_stored: int = 0
    duplicates: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    encoded: int = 0
    retries: int = 0
    seconds: float = 0.0
    skip_report: str | None = None
    ids: list[Id | None] = field(default_factory=list)
    with_text: int | None = None

    def __iter__(self) -> Iterator[Id | None]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Id | None: ...
    @overload
    def __getitem__(self, i: slice) -> list[Id | None]: ...

    def __getitem__(self, i: int | slice) -> Id | None | list[Id | None]:
        return self.ids[i]

    @property
    def stored_ids(self) -> list[Id]:
        """The distinct ids of the inputs that are in the collection after the call, in input order."""
        return [i for i in dict.fromkeys(self.ids) if i is not None]

    @property
    def images_per_second(self) -> float:
        """Images encoded per second of wall time."""
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        """Skipped inputs counted by :class:`~cir_milvus.types.SkipKind` value."""
        kinds = (s.kind.value if isinstance(s, SkippedInput) else SkipKind.OTHER.value for s in self.skipped)
        return dict(sorted(collections.Counter(kinds).items()))

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-able values (``ids`` and the skipped inputs themselves left out)."""
        return {"seen": self.seen, "stored": self.stored, "already_stored": self.already_stored,
                "duplicates": self.duplicates, "skipped": len(self.skipped),
                "skipped_by_reason": self.skipped_by_reason, "encoded": self.encoded, "retries": self.retries,
                "seconds": round(self.seconds, 3), "images_per_second": round(self.images_per_second, 2),
                "skip_report": self.skip_report, "with_text": self.with_text}

    def summary(self) -> str:
        """A human-readable summary (one line, plus retries and the skip report when there are any)."""
        by = ", ".join(f"{k} {v}" for k, v in self.skipped_by_reason.items())
        lines = [
            f"read {self.seen} records in {self.seconds:.1f}s: stored {self.stored} "
            f"({self.images_per_second:.1f} images/s), already stored {self.already_stored}, "
            f"duplicates in the input {self.duplicates}, skipped {len(self.skipped)}" + (f" ({by})" if by else ""),
        ]
        if self.with_text is not None:
            lines.append(f"{self.with_text} of the {self.stored} stored rows have an item text"
                         + ("; none does: check the text column's name" if self.stored and not self.with_text else ""))
        if self.retries:
            lines.append(f"{self.retries} storage calls were retried after transient failures")
        if self.skipped and self.skip_report:
            lines.append(f"skipped files and reasons: {self.skip_report}")
        return "\n".join(lines)


class SkipLog:
    """Collects skips into a report and appends them to a JSON Lines file as they happen (thread-safe).

    Each line is ``{"source", "id", "kind", "reason"}``.
    """

    def __init__(self, report: IngestReport, path: str | os.PathLike[str] | None = None) -> None:
        self.report = report
        self._lock = threading.Lock()
        self._f = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            report.skip_report = str(path)

    def add(self, name: str, reason: str, rid: Any = None, kind: SkipKind = SkipKind.OTHER) -> None:
        """Record one skipped input."""
        name, reason = safe_text(str(name)), safe_text(str(reason))
        rid = safe_text(rid) if isinstance(rid, str) else rid
        with self._lock:
            self.report.skipped.append(SkippedInput(name, reason, rid, kind))
            if self._f is not None:
                self._f.write(json.dumps({"source": name, "id": rid, "kind": kind.value, "reason": reason},
                                         ensure_ascii=False) + "\n")
                self._f.flush()
        log.info("skipped %s: %s", name, reason)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
