"""The store under hostile input and faults, on Milvus Lite: filter values that stay values (``like`` included),
filters the server cannot parse raised at once, lookups and searches that never answer "nothing" from a collection
that is not loaded, creators that converge, and failed commands that leave nothing behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("milvus_lite")

from cir_milvus.errors import (  # noqa: E402
    CollectionNotFoundError,
    ConfigError,
    FilterError,
    PermanentStorageError,
    RecipeMismatchError,
    StorageError,
    StorageUnavailableError,
)
from cir_milvus.storage.client import connect, disconnect  # noqa: E402
from cir_milvus.storage.recipe import Recipe  # noqa: E402
from cir_milvus.storage.retry import RetryPolicy  # noqa: E402
from cir_milvus.storage.store import VectorStore  # noqa: E402

pytestmark = pytest.mark.integration

BRANDS = ["a%b", "axb", "a_b", "abc", "%", "zz", "ab", "a\\b"]


class Proxy:
    """Delegates to a real client; tests replace single methods to inject faults."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture(scope="module")
def brands(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = VectorStore.create(str(tmp_path_factory.mktemp("f") / "f.db"), "f", dim=4, index="FLAT",
                               fields={"brand_t": ("varchar", 32)})
    vecs = np.eye(4, dtype=np.float32)[np.arange(len(BRANDS)) % 4]
    store.upsert([f"r{i}" for i in range(len(BRANDS))], vecs,
                 metadata=[{"brand": b, "brand_t": b} for b in BRANDS])
    yield store
    store.close()


def _brands(store: VectorStore, expr: str, params: dict[str, Any]) -> list[str]:
    return sorted(r["metadata"]["brand"] for r in store.query(expr, params, limit=100))


@pytest.mark.parametrize("field", ['metadata["brand"]', "brand_t"])
def test_like_values_are_literals_and_prefixes_are_asked_for(brands: VectorStore, field: str) -> None:
    assert _brands(brands, f"{field} like {{p}}", {"p": "%"}) == ["%"], "a user's % must not widen the query"
    assert _brands(brands, f"{field} like {{p}}", {"p": "a_b"}) == ["a_b"]
    assert _brands(brands, f"{field} like {{p}}", {"p": "a%b"}) == ["a%b"]
    assert _brands(brands, f"{field} like {{p:prefix}}", {"p": "ab"}) == ["ab", "abc"]
    assert _brands(brands, f"{field} like {{p:suffix}}", {"p": "b"}) == ["a%b", "a\\b", "a_b", "ab", "axb"]
    assert _brands(brands, f"{field} like {{p:contains}}", {"p": "x"}) == ["axb"]
    hits = brands.search_vectors(np.eye(4, dtype=np.float32)[:1], k=10, filter=f"{field} like {{p}}",
                                 filter_params={"p": "%"})[0]
    assert [h.metadata["brand"] for h in hits] == ["%"]
    for wild in ("%", "a_", "a\\"):
        with pytest.raises(FilterError, match="prefix match needs a value without"):
            brands.query(f"{field} like {{p:prefix}}", {"p": wild}, limit=10)


def test_a_quoted_placeholder_is_refused_at_render_time_naming_it(brands: VectorStore) -> None:
    calls: list[str] = []
    proxy = Proxy(brands._client)
    proxy.query = lambda *a, **k: calls.append("query")  # type: ignore[attr-defined]
    store = VectorStore.open(proxy, "f")
    for expr in ('metadata["brand"] == "{b}"', "brand_t == '{b}'", 'metadata["{b}"] == 1'):
        with pytest.raises(FilterError, match=r"\{b\} is written inside quotes"):
            store.query(expr, {"b": 'x" or 1==1 or "'}, limit=10)
    assert calls == [], "refused before anything reached Milvus"


@pytest.mark.parametrize("expr", ['metadata["brand"] == "a" or 5', 'metadata["brand"] === "a"', "brand_t like 5"])
def test_a_filter_lite_cannot_parse_is_a_filter_error_at_once(brands: VectorStore, expr: str) -> None:
    t0 = time.monotonic()
    for call in (lambda: brands.query(expr, limit=5), lambda: brands.count(expr),
                 lambda: brands.search_vectors(np.eye(4, dtype=np.float32)[:1], k=3, filter=expr),
                 lambda: brands.delete(filter=expr)):
        with pytest.raises(FilterError, match="Milvus cannot run the filter") as e:
            call()
        assert isinstance(e.value, ConfigError) and "column" in str(e.value), "the server's words are kept"
    assert time.monotonic() - t0 < 10, "never retried (the policy's deadline is 300 s)"
    assert brands.count() == len(BRANDS)


def test_lookups_and_searches_never_answer_empty_from_an_unloaded_collection(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    VectorStore.create(db, "u", dim=4, index="FLAT").close()
    real = connect(db)
    try:
        proxy = Proxy(real)
        store = VectorStore.open(proxy, "u", retry=RetryPolicy(timeout=1.5, initial_delay=0.1))
        store.upsert(["a", "b"], np.eye(4, dtype=np.float32)[:2])
        real.release_collection("u")  # a released collection (a restarted server): the store loads it again
        assert store.existing_ids(["a", "zz"]) == {"a"}
        assert [h.id for h in store.search_vectors(np.eye(4, dtype=np.float32)[:1], k=1)[0]] == ["a"]
        real.release_collection("u")
        proxy.load_collection = lambda name: None  # type: ignore[attr-defined]  # ... and it stays released
        for call in (lambda: store.existing_ids(["a"]), lambda: store.get(["a"]),
                     lambda: store.search_vectors(np.eye(4, dtype=np.float32)[:1], k=1)):
            with pytest.raises(StorageUnavailableError, match="still failing"):
                call()
    finally:
        disconnect(real, db)


def test_an_empty_answer_from_a_collection_that_reports_not_loaded_is_an_error(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    VectorStore.create(db, "e", dim=4, index="FLAT").close()
    real = connect(db)
    try:
        proxy = Proxy(real)
        store = VectorStore.open(proxy, "e", retry=RetryPolicy(timeout=1.0, initial_delay=0.1))
        store.upsert(["a"], np.eye(4, dtype=np.float32)[:1])
        # a server still loading after a restart answers queries with nothing instead of an error
        proxy.query = lambda *a, **k: []  # type: ignore[attr-defined]
        proxy.search = lambda *a, **k: [[]]  # type: ignore[attr-defined]
        proxy.get_load_state = lambda name: {"state": "Loading"}  # type: ignore[attr-defined]
        with pytest.raises(StorageError):
            store.existing_ids(["a"])
        with pytest.raises(StorageError):
            store.search_vectors(np.eye(4, dtype=np.float32)[:1], k=1)
        proxy.get_load_state = real.get_load_state  # type: ignore[attr-defined]
        assert store.existing_ids(["a"]) == set(), "a loaded collection's empty answer is believed"
    finally:
        disconnect(real, db)


def test_opening_a_missing_lite_path_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "photoz.db"
    with pytest.raises(CollectionNotFoundError, match="no Milvus Lite database"):
        VectorStore.open(str(missing), "c")
    assert VectorStore.exists(str(missing), "c") is False
    assert VectorStore.list_collections(str(missing)) == []
    VectorStore.drop_collection(str(missing), "c", missing_ok=True)
    with pytest.raises(CollectionNotFoundError):
        VectorStore.drop_collection(str(missing), "c")
    assert not missing.exists() and not missing.parent.exists()


def test_list_and_drop_collections_without_opening_them(tmp_path: Path) -> None:
    db = str(tmp_path / "l.db")
    for name in ("b", "a"):
        VectorStore.create(db, name, dim=4, index="FLAT").close()
    assert VectorStore.list_collections(db) == ["a", "b"]
    VectorStore.drop_collection(db, "a")
    assert VectorStore.list_collections(db) == ["b"] and not VectorStore.exists(db, "a")
    with pytest.raises(CollectionNotFoundError, match="existing: b"):
        VectorStore.drop_collection(db, "a")
    VectorStore.drop_collection(db, "a", missing_ok=True)
    assert VectorStore.exists(db, "b")


def test_a_failed_create_leaves_no_lite_folder_and_no_partial_collection(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "sub" / "fresh.db"
    with pytest.raises(ConfigError, match="index 'DISKANN'"):
        VectorStore.create(str(fresh), "c", dim=4, index="DISKANN")
    assert not (tmp_path / "new").exists(), "neither the database nor the folders made for it are left"

    db = str(tmp_path / "p.db")
    VectorStore.create(db, "keep", dim=4, index="FLAT").close()
    real = connect(db)
    try:
        from pymilvus.exceptions import MilvusException

        proxy = Proxy(real)

        def refuse(name: str) -> None:
            raise MilvusException(6, "load refused")

        proxy.load_collection = refuse  # type: ignore[attr-defined]
        with pytest.raises(PermanentStorageError, match="load refused"):
            VectorStore.create(proxy, "half", dim=4, index="FLAT")
        assert not real.has_collection("half") and real.has_collection("keep")
    finally:
        disconnect(real, db)


def _recipe(model: str, dim: int = 4) -> Recipe:
    return Recipe(encoder={"backend": "fake", "model": model, "pretrained": None, "dim": dim})


def test_create_or_open_converges_and_refuses_another_recipe_naming_both(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    first = VectorStore.create(db, "c", dim=4, index="FLAT", recipe=_recipe("m1"))
    first.upsert(["x"], np.eye(4, dtype=np.float32)[:1])
    first.close()
    again = VectorStore.create(db, "c", dim=4, index="FLAT", recipe=_recipe("m1"), exist_ok=True)
    assert again.existing_ids(["x"]) == {"x"}, "identical recipes open the existing collection"
    again.close()
    with pytest.raises(RecipeMismatchError, match="'m1'.*'m2'|m1.*m2"):
        VectorStore.create(db, "c", dim=4, index="FLAT", recipe=_recipe("m2"), exist_ok=True)
    with pytest.raises(RecipeMismatchError, match="dim 4"):
        VectorStore.create(db, "c", dim=8, index="FLAT", exist_ok=True)
    with pytest.raises(RecipeMismatchError, match="metric IP"):
        VectorStore.create(db, "c", dim=4, index="FLAT", metric="L2", exist_ok=True)
    VectorStore.create(db, "c", dim=4, index="FLAT", exist_ok=True).close()  # no metric asked for: any one opens

    # a creator that loses the race (the collection appears between its check and its create) opens the winner's
    real = connect(db)
    try:
        proxy = Proxy(real)
        seen = {"n": 0}

        def stale_has(name: str) -> bool:
            seen["n"] += 1
            return False if seen["n"] == 1 else bool(real.has_collection(name))

        proxy.has_collection = stale_has  # type: ignore[attr-defined]
        won = VectorStore.create(proxy, "c", dim=4, index="FLAT", recipe=_recipe("m1"), exist_ok=True)
        assert won.existing_ids(["x"]) == {"x"}
        seen["n"] = 0
        with pytest.raises(RecipeMismatchError, match="m2"):
            VectorStore.create(proxy, "c", dim=4, index="FLAT", recipe=_recipe("m2"), exist_ok=True)
        seen["n"] = 0
        with pytest.raises(ConfigError, match="meanwhile"):
            VectorStore.create(proxy, "c", dim=4, index="FLAT", recipe=_recipe("m1"))
    finally:
        disconnect(real, db)


def test_the_first_calls_of_open_and_create_wait_for_a_restarting_server_within_the_timeout(tmp_path: Path) -> None:
    from pymilvus.exceptions import MilvusException

    db = str(tmp_path / "r.db")
    VectorStore.create(db, "r", dim=4, index="FLAT").close()
    real = connect(db)
    try:
        proxy = Proxy(real)
        refusals = {"n": 2}

        def restarting(name: str) -> bool:  # what pymilvus raises while the server's proxy is not ready yet
            if refusals["n"]:
                refusals["n"] -= 1
                raise MilvusException(2, "Fail connecting to server on 127.0.0.1:19530")
            return bool(real.has_collection(name))

        proxy.has_collection = restarting  # type: ignore[attr-defined]
        assert VectorStore.open(proxy, "r").dim == 4
        refusals["n"] = 2
        assert VectorStore.create(proxy, "r", dim=4, index="FLAT", exist_ok=True).dim == 4
        refusals["n"] = 10**6  # down for good: an error within the connect timeout, not the 300 s policy
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailableError, match="still failing"):
            VectorStore.open(proxy, "r", timeout=2)
        assert time.monotonic() - t0 < 5
    finally:
        disconnect(real, db)
