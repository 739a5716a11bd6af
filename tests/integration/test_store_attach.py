"""Attaching a collection cir_milvus did not create: a plain pymilvus schema (INT64 ids, COSINE, its own field
names), searched with slerp and with the shipped pic2word demo head."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("milvus_lite")
pytest.importorskip("torch")
pytest.importorskip("open_clip")

from cir_milvus import (  # noqa: E402
    CIRCollection,
    ConfigError,
    EncoderSpec,  # noqa: E402
    create_encoder,
)
from cir_milvus.models.demo import DATA_DIR  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.integration

SCHEMA = {"vector_field": "emb", "id_field": "pk", "metric": "COSINE"}


@pytest.fixture(scope="module")
def team_collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A product team's own collection: pk INT64, emb FLOAT_VECTOR (normalised CLIP vectors), title VARCHAR."""
    from pymilvus import DataType, MilvusClient

    root = tmp_path_factory.mktemp("team")
    paths = []
    for it in SyntheticWorld(seed=4, instances=1).gallery()[:40]:
        p = root / f"{it.id}.png"
        it.render().save(p)
        paths.append(p)
    enc = create_encoder("cir-demo-tiny", "cir-demo", device="cpu")
    raw = np.asarray(enc.encode_images([str(p) for p in paths], normalize=False), dtype=np.float32)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    db = str(root / "team.db")
    client = MilvusClient(db)
    schema = MilvusClient.create_schema(enable_dynamic_field=False, auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("emb", DataType.FLOAT_VECTOR, dim=enc.dim)
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    ip = client.prepare_index_params()
    ip.add_index("emb", index_type="FLAT", metric_type="COSINE")
    client.create_collection("products", schema=schema, index_params=ip)
    client.insert("products", [{"pk": 100 + i, "emb": unit[i].tolist(), "title": f"item {i}"}
                               for i in range(len(paths))])
    client.close()
    from cir_milvus.storage.client import disconnect

    disconnect(MilvusClient(db), db)  # release the file for the store
    return {"db": db, "paths": paths, "raw": raw, "enc": enc}


def test_plain_collection_is_refused_with_the_next_step(team_collection: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="schema=") as e:
        CIRCollection.open(team_collection["db"], "products", model="cir-demo-tiny", pretrained="cir-demo",
                           encoder=EncoderSpec(device="cpu"))
    assert "vector_field" in str(e.value)


def test_attached_collection_searches_with_slerp_and_a_pseudo_token_head(team_collection: dict[str, Any]) -> None:
    db, paths, raw = team_collection["db"], team_collection["paths"], team_collection["raw"]
    col = CIRCollection.open(db, "products", schema=SCHEMA, model="cir-demo-tiny", pretrained="cir-demo",
                             encoder=EncoderSpec(device="cpu"))
    try:
        assert col.store.fields.id_type == "int64" and col.store.fields.norm_field is None
        default_norm = col.store.fields.default_norm
        assert default_norm is not None and default_norm > 0
        assert col.recipe.encoder["mean_image_norm"] == pytest.approx(default_norm)
        # slerp from a stored reference (int id): the reference is excluded by its stored id
        hits = col.search(ref_id=103, text="make it blue", k=5)
        assert len(hits) == 5 and all(isinstance(h.id, int) for h in hits) and 103 not in [h.id for h in hits]
        assert hits[0].metadata == {"title": f"item {hits[0].id - 100}"}
        q = col.compose(None, ["make it blue"], ref_ids=[103])[0]
        unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        order = [100 + int(j) for j in np.argsort(-(unit @ q)) if 100 + int(j) != 103][:5]
        assert [h.id for h in hits] == order
        # a pseudo-token head over stored vectors: raw embeddings rebuilt with the documented default norm
        head = str(DATA_DIR / "cir-demo-tiny.pic2word.safetensors")
        hits = col.search(ref_id=103, text="make it blue", k=5, composer="pic2word", head=head)
        q = col.compose(None, ["make it blue"], ref_ids=[103], composer="pic2word", head=head)[0]
        order = [100 + int(j) for j in np.argsort(-(unit @ q)) if 100 + int(j) != 103][:5]
        assert [h.id for h in hits] == order
        # and from an image file (the encoder runs; the attached rows need no source field)
        assert len(col.search(paths[3], "make it blue", k=3, composer="pic2word", head=head)) == 3
        # writes follow the attached schema: int ids required, the title goes to its typed field
        res = col.add(paths[:2], ids=[900, 901], metadata=[{"title": "new a"}, {"title": "new b"}])
        assert res.stored == 2 and col.get([900])[0]["metadata"] == {"title": "new a"}
        res = col.add(paths[2:3])  # content-hash ids are strings: refused by this collection's id policy
        assert res.stored == 0 and "64-bit integers" in res.skipped[0].reason
        assert col.delete([900, 901, 999]) == 2
    finally:
        col.close()
    # the recipe is now a property of the attached collection: opening needs only the field names
    again = CIRCollection.open(db, "products", schema=SCHEMA, encoder=EncoderSpec(device="cpu"))
    try:
        assert again.recipe.encoder["model"] == "cir-demo-tiny" and len(again) == 40
    finally:
        again.close()
