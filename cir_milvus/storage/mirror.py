"""The text mirror: where a mixed gallery keeps its item-text vectors on deployments that hold one vector field per
collection (Milvus < 2.4, e.g. the 2.3.5 server of the tests; :attr:`Capabilities.multi_vector`).

Layout. A collection ``NAME`` created with ``item_text=True`` there is two collections owned by one store:

- ``NAME`` (the **main** collection): the ordinary image layout (``id``, ``vector``, ``norm``, ``source``,
  ``metadata``, typed fields, partition key, dynamic fields) and the property ``cir_milvus.text_collection =
  NAME__cir_text``; the recipe's ``item_text`` entry records the same name under ``"collection"``.
- ``NAME__cir_text`` (the **mirror**): the same row with the item-text vector in place of the image vector, i.e. the
  same ``id``, ``norm``, ``source``, ``metadata``, typed and dynamic fields, plus ``text_vector`` (its one vector
  field, same dim, metric and index as ``vector``) and ``has_text``; the property ``cir_milvus.mirror_of = NAME``.
  Holding the scalar fields too is what keeps user filters and ``group_by`` working on the text side: the text
  search runs the user's filter on the mirror itself.

The suffix ``__cir_text`` is reserved: :meth:`VectorStore.create` refuses user names ending in it, so a mirror name
can never be a user's collection. A mirror whose main collection exists is part of that collection, not a collection of
its own: ``list_collections`` hides it, ``exists`` / ``has_collection`` say ``False``, and opening or dropping it by its
name is refused with a message naming its collection (:func:`mirror_owner`, :func:`not_a_collection`). An orphan left
by an interrupted drop is an ordinary collection again: listed, so it can be dropped.

Consistency. The main collection is the commit record: a row exists when ``NAME`` holds it (``count``, ``exists``,
"already stored?", ``get`` read it alone). Hence the order of the two writes:

- the one upsert path writes the **mirror first, then main**: a crash (or a refused main write) between the two leaves
  a mirror row without its main row, and the next upsert of the same ids (``add`` / ``ingest`` re-send them, because
  "already stored?" asks main) writes both again;
- removals go **main first, then the mirror** (``delete`` by ids removes the given ids from the mirror whether main
  held them or not, so repeating an interrupted delete finishes it; ``drop`` drops main, then the mirror);
- creation makes the mirror first, then main (a leftover mirror of a create that died is reused or replaced by the
  next create of that name);
- a text hit counts only when main holds its id (one ``id in [...]`` lookup per search call), so mirror rows without
  a main row are never returned, whatever interrupted the writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cir_milvus.errors import CollectionNotFoundError, ConfigError
from cir_milvus.storage.client import redact_uri
from cir_milvus.storage.schema import HAS_TEXT, TEXT_VECTOR, FieldMap, type_name
from cir_milvus.storage.write import Send, write_rows

__all__ = ["MIRROR_OF_KEY", "MIRROR_SUFFIX", "TEXT_COLLECTION_KEY", "check_user_name", "flush_with_mirror", "hide_mirrors",
           "main_layout_rows", "mirror_layout", "mirror_name", "mirror_of", "mirror_owner", "mirror_rows",
           "not_a_collection", "open_mirror", "user_collection_exists", "write_mirrored"]

MIRROR_SUFFIX = "__cir_text"
"""Reserved name suffix of text mirrors: ``NAME`` → ``NAME__cir_text``."""
TEXT_COLLECTION_KEY = "cir_milvus.text_collection"
"""Property of a main collection whose item texts live in a mirror: the mirror's name."""
MIRROR_OF_KEY = "cir_milvus.mirror_of"
"""Property of a mirror: the name of its main collection."""
MAX_NAME_LENGTH = 255
"""Milvus's longest collection name."""


def mirror_name(name: str) -> str:
    """The mirror of collection ``name``."""
    return name + MIRROR_SUFFIX


def check_user_name(name: Any, *, mirrored: bool) -> None:
    """Refuse a collection name that is, or cannot have, a mirror (before anything is created).

    Raises:
        ConfigError: the name ends in the reserved suffix, or is too long to take it (``mirrored``).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a collection name must be a non-empty string, got {name!r}")
    if name.endswith(MIRROR_SUFFIX):
        raise ConfigError(f"collection names ending in {MIRROR_SUFFIX!r} are reserved for the item-text mirrors of "
                          f"mixed galleries; choose another name than {name!r}")
    if mirrored and len(mirror_name(name)) > MAX_NAME_LENGTH:
        raise ConfigError(f"collection name {name!r} is too long for a mixed gallery on this server: its text mirror "
                          f"{mirror_name(name)!r} would exceed Milvus's {MAX_NAME_LENGTH} characters; use at most "
                          f"{MAX_NAME_LENGTH - len(MIRROR_SUFFIX)} characters")


def hide_mirrors(names: Sequence[str]) -> list[str]:
    """``names`` sorted, without the mirrors whose main collection is among them."""
    present = set(names)
    return sorted(n for n in present if not (n.endswith(MIRROR_SUFFIX) and n[: -len(MIRROR_SUFFIX)] in present))


def mirror_owner(client: Any, name: str) -> str | None:
    """The main collection of ``name`` when ``name`` is a text mirror that :func:`hide_mirrors` hides (its main
    collection exists); ``None`` for any other name (asks the server only for names ending in the suffix)."""
    main = name[: -len(MIRROR_SUFFIX)] if name.endswith(MIRROR_SUFFIX) else ""
    return main if main and client.has_collection(main) else None


def user_collection_exists(client: Any, name: str) -> bool:
    """Whether ``name`` is a collection of the listing: it exists and is not a hidden text mirror."""
    return bool(client.has_collection(name)) and mirror_owner(client, name) is None


def not_a_collection(name: str, main: str, where: str) -> CollectionNotFoundError:
    """The error for a hidden text mirror named where a collection is expected."""
    return CollectionNotFoundError(
        f"{name!r} at {redact_uri(where)} is the text mirror of the mixed gallery {main!r} (where {main!r} keeps its "
        f"item texts on servers before Milvus 2.4), not a collection of its own; open, search or drop {main!r} "
        "instead")


def mirror_of(desc: Mapping[str, Any]) -> str | None:
    """The main collection a described collection mirrors (``None``: not a mirror)."""
    value = (desc.get("properties") or {}).get(MIRROR_OF_KEY)
    return None if value is None else str(value)


def mirror_layout(f: FieldMap) -> FieldMap:
    """The mirror's fields: ``f``'s with the text vector as the vector field and the text flag as a BOOL scalar."""
    assert f.text_vector_field is not None and f.text_flag_field is not None
    return dataclasses.replace(f, vector_field=f.text_vector_field, scalars={**f.scalars, f.text_flag_field: "bool"},
                               text_vector_field=None, text_flag_field=None, text_raw_field=None,
                               text_sparse_field=None, text_collection=None)


def mirror_rows(f: FieldMap, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The mirror's rows of ``rows`` (built with the text columns): each row without its image vector."""
    return [{k: v for k, v in r.items() if k != f.vector_field} for r in rows]


def main_layout_rows(f: FieldMap, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The main collection's rows of ``rows``: each row without its text columns."""
    text = {f.text_vector_field, f.text_flag_field}
    return [{k: v for k, v in r.items() if k not in text} for r in rows]


def write_mirrored(f: FieldMap, rows: list[dict[str, Any]], send: Send, send_text: Send) -> dict[int, str | None]:
    """Write ``rows`` (built with the text columns) through the one chunked write (``send``: into the main
    collection, ``send_text``: into the text mirror); ``{row index: None or the refusal reason}``.

    Without a mirror the rows go to the main collection as they are. With one, the mirror's rows go first and the
    main rows of those the mirror took follow (see the module docstring): a row the mirror refused is not written
    at all, and a failure between the two leaves rows that only the mirror holds, repaired by the next upsert.
    """
    if f.text_collection is None:
        return write_rows(send, rows)
    refused = write_rows(send_text, mirror_rows(f, rows))
    taken = [j for j in range(len(rows)) if refused.get(j) is None]
    main = main_layout_rows(f, rows)
    done = write_rows(send, [main[j] for j in taken])
    refused.update({taken[m]: reason for m, reason in done.items()})
    return refused


def open_mirror(call: Callable[[str, Callable[[], Any]], Any], client: Any, name: str, where: str, mirror: str,
                f: FieldMap) -> FieldMap:
    """Check the mirror ``mirror`` of the main collection ``name`` (whose fields are ``f``), load it, and return
    ``f`` with the text fields pointing at it (``call(what, fn)``: the open's retried call wrapper).

    Raises:
        CollectionNotFoundError: the mirror is missing (an interrupted create or drop).
        ConfigError: ``mirror`` is not this collection's mirror, or its text vectors have another dimension.
    """
    fix = (f"Re-create the gallery (create(..., if_exists='overwrite') / item_text=True) and add its items again, or "
           f"drop it (drop_collection({name!r}))")
    if not call(f"check the text mirror {mirror!r}", lambda: bool(client.has_collection(mirror))):
        raise CollectionNotFoundError(
            f"collection {name!r} at {redact_uri(where)} keeps its item texts in the collection {mirror!r}, which is "
            f"missing (an interrupted create or drop, or dropped by hand). {fix}.")
    desc = call(f"describe the text mirror {mirror!r}", lambda: client.describe_collection(mirror))
    fields = {x["name"]: x for x in desc.get("fields", [])}
    vec = fields.get(TEXT_VECTOR)
    dim = int((vec.get("params") or {}).get("dim", 0)) if vec is not None else 0
    if mirror_of(desc) != name or vec is None or HAS_TEXT not in fields or type_name(vec["type"]) != "float_vector":
        raise ConfigError(f"collection {mirror!r} at {redact_uri(where)} is not the text mirror of {name!r} (no "
                          f"{TEXT_VECTOR}/{HAS_TEXT} fields or no {MIRROR_OF_KEY} property). {fix}.")
    if dim != f.dim:
        raise ConfigError(f"the text mirror {mirror!r} of {name!r} holds {dim}-d text vectors but {name!r} holds "
                          f"{f.dim}-d image vectors (a mirror left over from another gallery?). {fix}.")
    call(f"load the text mirror {mirror!r}", lambda: client.load_collection(mirror))
    return dataclasses.replace(f, text_vector_field=TEXT_VECTOR, text_flag_field=HAS_TEXT, text_collection=mirror)


def flush_with_mirror(flush: Callable[[str], None], name: str, mirror: str | None) -> None:
    """Flush a collection and its text mirror at the same time (each flush waits for the server to seal the
    segments: ~2 s on 2.3.5). A flush orders nothing: rows are visible once written, and the upsert writes the
    mirror's rows before the collection's; both flushes are done when this returns."""
    if mirror is None:
        return flush(name)
    with ThreadPoolExecutor(1, thread_name_prefix="cir-flush-mirror") as pool:
        text = pool.submit(flush, mirror)
        flush(name)
    text.result()
