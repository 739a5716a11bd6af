"""Issue 26's query features through CIRCollection.search / search_batch on Milvus Lite (FakeEncoder).

The maths is checked against independent implementations in tests/unit/test_query_*.py; here each feature is
checked end to end: the query vector the collection used is rebuilt by hand, and the hits are compared with a
brute-force ranking of the stored vectors.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

pytest.importorskip("milvus_lite")

from cir_milvus import CIRCollection, ConfigError, FakeEncoder  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) / np.linalg.norm(v)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("q")
    paths = []
    for it in SyntheticWorld(seed=5, instances=1).gallery()[:40]:
        p = root / f"{it.id}.png"
        it.render().save(p)
        paths.append(p)
    col = CIRCollection.create(str(root / "q.db"), "q", encoder=FakeEncoder(dim=16, seed=1))
    ids = list(col.add(paths))
    col.add([paths[7].read_bytes()], ids=["copy-of-7"])  # an exact duplicate under another id
    stored = {i: _unit(v) for i, v in col.get_vectors([*ids, "copy-of-7"]).items()}
    yield col, paths, ids, stored
    col.close()


def _brute(stored: dict, q: np.ndarray, exclude: set, k: int) -> list:
    scores = {i: float(v @ q) for i, v in stored.items() if i not in exclude}
    return sorted(scores, key=lambda i: -scores[i])[:k]


def test_negative_text_moves_the_query_orthogonal_to_it(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, ids, stored = setup
    plain = col.search(paths[3], "make it red", k=5, return_query_vector=True)
    q0 = _unit(plain[0].query_vector)
    n = _unit(col.encoder.encode_texts(["a large star"], normalize=True)[0])
    sign = 1.0 if q0 @ n > 0 else 0.0  # a negative the query points away from is left alone
    want = _unit(q0 - sign * (q0 @ n) * n)
    hits = col.search(paths[3], "make it red", k=5, negative="a large star", return_query_vector=True)
    assert np.allclose(hits[0].query_vector, want, atol=1e-5)
    assert [h.id for h in hits] == _brute(stored, want, {ids[3]}, 5)
    listed = col.search(paths[3], "make it red", k=5, negative=["a large star"])
    assert [h.id for h in listed] == [h.id for h in hits]


def test_several_references_mixed_files_bytes_and_ids(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, ids, stored = setup
    raw = np.asarray(col.encoder.encode_images([paths[1], paths[2]], normalize=False), dtype=np.float64)
    # two equal weights: the spherical mean is the normalised sum; its length the mean norm
    ref = _unit(_unit(raw[0]) + _unit(raw[1])) * np.linalg.norm(raw, axis=1).mean()
    want = col.compose(None, ["in blue"], composer="sum", reference_embeddings=ref[None].astype(np.float32))[0]
    by_files = col.search(images=[paths[1], paths[2]], text="in blue", composer="sum", k=6, return_query_vector=True)
    assert np.allclose(by_files[0].query_vector, want, atol=1e-5)
    assert [h.id for h in by_files] == _brute(stored, _unit(want), {ids[1], ids[2]}, 6)
    mixed = col.search(images=[paths[1].read_bytes()], ref_ids=[ids[2]], text="in blue", composer="sum", k=6)
    assert [h.id for h in mixed] == [h.id for h in by_files]
    from PIL import Image

    one_list = col.search(ref_ids=[Image.open(paths[1]), ids[2]], text="in blue", composer="sum", k=6,
                          return_query_vector=True)  # a PIL image and an id in one list
    assert np.allclose(one_list[0].query_vector, want, atol=1e-5)
    # a PIL reference has no file or bytes to recognise among the stored rows, so it is not excluded
    assert [h.id for h in one_list if h.id != ids[1]] == [h.id for h in by_files][:len(one_list) - 1]
    as_path = col.search(ref_ids=[ids[1], paths[2]], text="in blue", composer="sum", k=6)  # id + a Path file
    assert [h.id for h in as_path] == [h.id for h in by_files]
    heavy = col.search(images=[paths[1], paths[2]], weights=[0.9, 0.1], text="in blue", composer="image", k=3,
                       exclude_reference=False, return_query_vector=True)
    assert float(heavy[0].query_vector @ stored[ids[1]]) > float(heavy[0].query_vector @ stored[ids[2]])


def test_feedback_uses_stored_vectors_and_leaves_judged_items_out(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, ids, stored = setup
    q0 = _unit(col.search(paths[4], "now in green", k=1, return_query_vector=True)[0].query_vector)
    like, unlike = ids[10], ids[11]
    want = _unit(q0 + 0.75 * stored[like] - 0.15 * stored[unlike])  # Rocchio, IIR defaults
    hits = col.search(paths[4], "now in green", k=8, like=[like], unlike=[unlike], return_query_vector=True)
    assert np.allclose(hits[0].query_vector, want, atol=1e-5)
    assert [h.id for h in hits] == _brute(stored, want, {ids[4], like, unlike}, 8)


def test_alpha_list_is_reciprocal_rank_fusion_of_the_single_alpha_searches(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, _, _ = setup
    alphas = [0.3, 0.6, 0.9]
    singles = [col.search(paths[6], "turn it into a star", k=10, alpha=a) for a in alphas]
    counts: dict = defaultdict(float)
    for hits in singles:
        for r, h in enumerate(hits):
            counts[h.id] += 1.0 / (60 + r + 1)
    fused = col.search(paths[6], "turn it into a star", k=10, alpha=alphas)
    assert [h.score for h in fused] == pytest.approx(sorted(counts.values(), reverse=True)[:10])
    assert {h.id: h.score for h in fused} == pytest.approx({i: counts[i] for i in [h.id for h in fused]})


def test_dedupe_drops_the_exact_copy_and_still_returns_k(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, ids, _ = setup
    plain = col.search(paths[7], "x", k=6, composer="image", exclude_reference=False)
    assert {h.id for h in plain[:2]} == {ids[7], "copy-of-7"}
    deduped = col.search(paths[7], "x", k=4, composer="image", exclude_reference=False, dedupe=0.999)
    assert len(deduped) == 4 and len({ids[7], "copy-of-7"} & {h.id for h in deduped}) == 1
    assert [h.id for h in deduped][1:] == [h.id for h in plain if h.id not in (ids[7], "copy-of-7")][:3]


def test_output_vectors_are_the_stored_unit_vectors(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, _, stored = setup
    hits = col.search(paths[8], "make it small", k=3, output_vectors=True)
    for h in hits:
        assert np.allclose(h.vector, stored[h.id], atol=1e-5)
        assert len(h.to_dict()["vector"]) == 16 and "query_vector" not in h.to_dict()
    assert all(h.vector is None for h in col.search(paths[8], "make it small", k=3))


def test_search_batch_matches_search_query_by_query(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, ids, _ = setup
    batch = col.search_batch([paths[1], [paths[2], paths[3]], None], ["in red", "in blue", "in green"], k=5,
                             ref_ids=[None, None, ids[9]], weights=[None, [0.3, 0.7], None],
                             negative=["a heart", None, "a small cross"], like=[None, [ids[20]], None],
                             unlike=[[ids[21]], None, None], alpha=[0.5, 0.8])
    one = [col.search(paths[1], "in red", k=5, negative="a heart", unlike=[ids[21]], alpha=[0.5, 0.8]),
           col.search(images=[paths[2], paths[3]], weights=[0.3, 0.7], text="in blue", k=5, like=[ids[20]],
                      alpha=[0.5, 0.8]),
           col.search(ref_id=ids[9], text="in green", k=5, negative="a small cross", alpha=[0.5, 0.8])]
    assert [[h.id for h in hs] for hs in batch] == [[h.id for h in hs] for hs in one]
    assert [h.score for hs in batch for h in hs] == pytest.approx([h.score for hs in one for h in hs])
    shared = col.search_batch([paths[1], paths[2]], ["in red", "in blue"], k=3, negative="a heart")
    assert [h.id for h in shared[0]] == [h.id for h in col.search(paths[1], "in red", k=3, negative="a heart")]


@pytest.mark.parametrize("kwargs,match", [
    ({"negative": []}, "negative= got an empty list"),
    ({"negative": ["ok", ""]}, "non-empty text"),
    ({"like": []}, "like= got an empty list"),
    ({"like": ["no-such-id"]}, "no-such-id"),
    ({"unlike": ["nope"]}, "nope"),
    ({"alpha": []}, "alpha= got an empty list"),
    ({"alpha": [0.5, 1.5]}, r"\[0, 1\]"),
    ({"dedupe": 0}, r"\(0, 1\]"),
    ({"dedupe": 1.2}, r"\(0, 1\]"),
    ({"weights": [1.0, 2.0]}, "several references"),
    ({"alpha": [0.5, 0.8], "composer": "image"}, "composer 'image' has none"),
])
def test_bad_input_gets_a_clear_error(setup, kwargs, match) -> None:  # type: ignore[no-untyped-def]
    col, paths, _, _ = setup
    with pytest.raises(ConfigError, match=match):
        col.search(paths[0], "in red", **kwargs)


def test_bad_references_get_a_clear_error(setup) -> None:  # type: ignore[no-untyped-def]
    col, paths, ids, _ = setup
    with pytest.raises(ConfigError, match="3 value.*2 references"):
        col.search(images=[paths[0], paths[1]], weights=[1, 1, 1], text="in red")
    with pytest.raises(ConfigError, match="ghost"):
        col.search(images=[paths[0]], ref_ids=["ghost"], text="in red")
    with pytest.raises(ConfigError, match="images= got an empty list"):
        col.search(images=[], text="in red")
    with pytest.raises(ConfigError, match="not both"):
        col.search(paths[0], "in red", images=[paths[1]])
    with pytest.raises(ConfigError, match="one per query"):
        col.search_batch([paths[0], paths[1]], ["a", "b"], like=[[ids[3]]])


def test_fused_alphas_keep_one_hit_per_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    items = SyntheticWorld(seed=6, instances=1).gallery()[::8]  # 64 images, 8 shapes
    col = CIRCollection.create(str(tmp_path / "g.db"), "g", encoder=FakeEncoder(dim=16, seed=2),
                               fields={"shape": ("varchar", 16)})
    col.add([it.render() for it in items], ids=[it.id for it in items],
            metadata=[{"shape": it.attributes.shape} for it in items])
    hits = col.search(ref_id=items[0].id, text="make it blue", k=12, alpha=[0.0, 1.0], group_by="shape")
    shapes = [h.metadata["shape"] for h in hits]
    assert len(shapes) == len(set(shapes)) == 8  # 8 shapes: never two hits of one
    col.close()
