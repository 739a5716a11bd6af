"""Scale-out ingestion on a local Ray instance (``ray.init(num_cpus=2)``).

- ``write="workers"``: Ray actors upsert into the Milvus 2.3.5 server by URI (marked ``server``).
- ``write="driver"``: vectors come back to the driver, which upserts into Milvus Lite (marked ``slow``: Ray's start).
"""

from __future__ import annotations

import csv
import functools
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="pip install 'cir_milvus[ray]'")

from ingest_helpers import write_shard  # noqa: E402

from cir_milvus import CIRCollection, FakeEncoder  # noqa: E402
from cir_milvus.images import content_id  # noqa: E402
from cir_milvus.ingest import IngestOptions, ingest  # noqa: E402
from cir_milvus.ingest.ray_pipeline import RayOptions, ingest_ray  # noqa: E402
from cir_milvus.preprocess import PreprocessConfig  # noqa: E402


class PixelFake(FakeEncoder):
    """A fake with the pixel API, so the Ray decode stage (CPU tasks) feeds pixels to the encoder actors."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim=dim, seed=5)
        self.preprocess_config = PreprocessConfig(size=16)
        self._proj = np.random.default_rng(1).standard_normal((3 * 16 * 16, dim)).astype(np.float32) / 16

    def encode_pixels(self, pixels: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        return pixels.reshape(len(pixels), -1) @ self._proj  # [N, 768] @ [768, D]

    def encode_images(self, images: Any, **kw: Any) -> np.ndarray:  # as a real encoder: preprocess, then pixels
        from cir_milvus.images import load_image
        from cir_milvus.preprocess import preprocess_batch

        return self.encode_pixels(preprocess_batch([load_image(i) for i in images], self.preprocess_config))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's encoders travel to the actors
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ray-imgs")
    paths = []
    for i in range(40):
        arr = np.random.default_rng(i).integers(0, 256, (10, 14, 3), dtype=np.uint8)
        p = root / f"{i:03d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "zz_copy.png").write_bytes(paths[-1].read_bytes())  # a duplicate by content (of one not yet stored)
    return root, paths


def _vectors(col: CIRCollection, ids: list[str]) -> dict[str, np.ndarray]:
    return col.get_vectors(ids)


def _check(col: CIRCollection, report: Any, paths: list[Path], already: int, local: Any) -> None:
    """``local``: the local pipeline's report over the same folder (its ``ids``: one per input, in input order)."""
    assert report.ids == local.ids and len(local.ids) == len(paths) + 2
    assert report.skipped_by_reason == {"not_an_image": 1}
    assert report.duplicates == 1
    assert report.already_stored == already and report.stored == len(paths) - already
    assert report.seen == len(paths) + 2
    ids = list(col.iter_ids())
    assert len(ids) == len(set(ids)) == len(paths) and set(ids) == {content_id(p) for p in paths}


def _caption(i: int) -> str:
    return "" if i % 3 == 0 else f"a {['red', 'green', 'blue'][i % 3]} thing number{i}"  # "": no item text


@pytest.mark.server
@pytest.mark.slow  # a local Ray cluster (about a minute): `python -m pytest -m server` runs it
def test_ray_workers_write_to_the_server_and_match_the_local_pipeline(local_ray, server_uri: str, folder,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    """The ``pixels`` case is a mixed gallery fed from a CSV list with a caption column: on 2.3.5 the writer actors
    fill its text mirror, which must hold what the local pipeline stores (and the captions' own embeddings)."""
    root, paths = folder
    listing = tmp_path / "items.csv"
    files = sorted(root.iterdir())  # the folder's inputs, in the folder source's order
    with listing.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "caption"])
        # zz_copy.png repeats 039.png's content (no caption) with a caption of its own: both pipelines store the
        # first occurrence (no item text) and count the copy as a duplicate
        w.writerows([str(p), "a copy with a caption" if p.name == "zz_copy.png" else _caption(i)]
                    for i, p in enumerate(files))
    captions = [_caption(i) or None for i in range(len(paths))]
    for make, name in ((functools.partial(FakeEncoder, dim=16), "fake"), (PixelFake, "pixels")):
        mixed = name == "pixels"
        texts = {"texts": captions[:10]} if mixed else {}
        source, options = (listing, IngestOptions(text_column="caption")) if mixed else (root, None)
        col = CIRCollection.create(server_uri, f"ray{name}{uuid.uuid4().hex[:8]}", encoder=make(), item_text=mixed)
        col.add(paths[:10], **texts)  # resume: these are neither decoded nor encoded again
        report = ingest_ray(col, source, batch_size=8, progress=False, skip_report=tmp_path / f"{name}.jsonl",
                            options=options, ray=RayOptions(encoder_factory=make, write="workers"))
        ref = CIRCollection.create(str(tmp_path / f"{name}.db"), "ref", encoder=make(), item_text=mixed)
        ref.add(paths[:10], **texts)
        local = ingest(ref, source, batch_size=8, workers=0, progress=False, options=options)
        _check(col, report, paths, already=10, local=local)
        ids = [content_id(p) for p in paths]
        got, want = _vectors(col, ids), _vectors(ref, ids)
        for i in ids:
            np.testing.assert_allclose(got[i], want[i], rtol=1e-5, atol=1e-5)
        if mixed:
            assert col.store.fields.text_collection is not None  # the 2.3.5 server: the text mirror
            assert report.with_text == local.with_text == sum(c is not None for c in captions[10:])
            got_t, want_t = col.store.stored_text_vectors(ids), ref.store.stored_text_vectors(ids)
            assert [got_t[i] is None for i in ids] == [want_t[i] is None for i in ids] == [c is None for c in captions]
            direct = make().encode_texts([c for c in captions if c is not None])
            np.testing.assert_allclose(np.stack([got_t[i] for i in ids if got_t[i] is not None]), direct, atol=1e-5)
            for i in ids:
                if want_t[i] is not None:
                    np.testing.assert_allclose(got_t[i], want_t[i], rtol=1e-5, atol=1e-5)
        ref.close()
        col.close()


@pytest.mark.slow
def test_ray_driver_writes_to_lite(local_ray, folder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, paths = folder
    col, ref = (CIRCollection.create(str(tmp_path / f"{n}.db"), n, encoder=PixelFake()) for n in ("r", "ref"))
    for c in (col, ref):
        c.add(paths[:5])
    report = ingest(col, root, batch_size=8, progress=False, ray=RayOptions(address="local"))  # Ray already up: reused
    _check(col, report, paths, already=5, local=ingest(ref, root, batch_size=8, workers=0, progress=False))
    ref.close()
    with pytest.raises(Exception, match="Milvus Lite file"):
        ingest_ray(col, root, ray=RayOptions(write="workers"))
    col.close()


@pytest.mark.slow
def test_ray_report_ids_of_tar_shards_are_in_input_order(local_ray, folder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Shards are read by Ray tasks, rows come back in any order: ``ids`` are still one per sample, in shard and
    sample order, as the local pipeline's (``None`` for a sample without an image and one that does not decode)."""
    _, paths = folder
    data = [p.read_bytes() for p in paths]
    shards = [write_shard(tmp_path / f"s{s}.tar", [(f"s{s}k{k:02d}", {"k": k}, data[(5 * s + k) % len(data)])
                                                  for k in range(12)]) for s in range(3)]
    write_shard(shards[1], [(f"s1k{k:02d}", {"k": k}, data[k]) for k in range(6)]
                + [("s1k06", {"k": 6}, None), ("s1k07", {"k": 7}, b"not an image")]
                + [(f"s1k{k:02d}", {"k": k}, data[k]) for k in range(8, 12)])
    spec = str(tmp_path / "s*.tar")
    col, ref = (CIRCollection.create(str(tmp_path / f"{n}.db"), n, encoder=PixelFake()) for n in ("r", "ref"))
    report = ingest_ray(col, spec, batch_size=5, progress=False, ray=RayOptions(write="driver"))
    local = ingest(ref, spec, batch_size=5, workers=0, progress=False)
    assert len(local.ids) == 36 and local.ids[18:20] == [None, None]
    assert report.ids == local.ids
    assert report.stored == local.stored == 34
    col.close()
    ref.close()


@pytest.mark.server
@pytest.mark.slow
def test_ray_workers_dedupe_and_resume_tar_shards_like_the_local_pipeline(local_ray, server_uri: str, folder,  # type: ignore[no-untyped-def]
                                                                          tmp_path: Path) -> None:
    """Two shards repeat a key (the first without a caption, the second with one and another image) on a mixed
    gallery: the writer actors store the first occurrence, and a re-run finds every key already stored, before
    encoding; the reports and rows are the local pipeline's."""
    _, paths = folder
    write_shard(tmp_path / "a.tar", [(f"k{i}", {"n": i}, paths[i].read_bytes()) for i in range(3)])
    write_shard(tmp_path / "b.tar", [("k1", {"n": 9}, paths[7].read_bytes()), ("k3", {"n": 3}, paths[3].read_bytes()),
                                     ("k4", {"n": 4}, b"not an image")], caption=True)
    spec, opts = str(tmp_path / "{a,b}.tar"), IngestOptions(text_column="caption")
    col = CIRCollection.create(server_uri, f"rayshards{uuid.uuid4().hex[:8]}", encoder=PixelFake(), item_text=True)
    ref = CIRCollection.create(str(tmp_path / "ref.db"), "ref", encoder=PixelFake(), item_text=True)
    runs = [(ingest_ray(col, spec, batch_size=2, progress=False, options=opts,
                        ray=RayOptions(encoder_factory=PixelFake, write="workers")),
             ingest(ref, spec, batch_size=2, workers=0, progress=False, options=opts)) for _ in range(2)]
    for got, want in runs:
        assert [(r.seen, r.stored, r.already_stored, r.duplicates, r.encoded, r.with_text, r.skipped_by_reason,
                 r.ids) for r in (got, want)] == [(want.seen, want.stored, want.already_stored, want.duplicates,
                                                   want.encoded, want.with_text, want.skipped_by_reason, want.ids)] * 2
    assert [(r.stored, r.duplicates, r.already_stored, r.with_text) for _, r in runs] == [(4, 1, 0, 1), (0, 1, 4, 0)]
    ids = ["k0", "k1", "k2", "k3"]
    got_v, want_v = col.get_vectors(ids), ref.get_vectors(ids)
    for i in ids:  # k1 is the first shard's image
        np.testing.assert_allclose(got_v[i], want_v[i], rtol=1e-5, atol=1e-5)
    got_t = col.store.stored_text_vectors(ids)
    assert [i for i in ids if got_t[i] is None] == ["k0", "k1", "k2"]
    col.close()
    ref.close()
