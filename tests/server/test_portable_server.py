"""Ingest on one host, serve from another, against the Milvus 2.3.5 server: the recipe names the weights by sha256
and file name only; each host finds its own copy (marked ``server``)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from cir_milvus import (  # noqa: E402
    CIRCollection,
    EncoderSpec,  # noqa: E402
    ModelNotFoundError,
    RecipeMismatchError,
)
from cir_milvus.artifacts import CACHE_ENV_VAR, ENV_VAR  # noqa: E402
from cir_milvus.hashing import file_sha256  # noqa: E402
from cir_milvus.models.demo import demo_weights_path  # noqa: E402
from cir_milvus.synthetic import SyntheticWorld  # noqa: E402

pytestmark = pytest.mark.server


def test_ingest_on_host_a_serve_from_host_b(server_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    images = []
    for it in SyntheticWorld(seed=5, instances=1).gallery()[:8]:
        p = tmp_path / f"{it.id}.png"
        it.render().save(p)
        images.append(p)
    host_a = tmp_path / "hostA" / "models"
    host_a.mkdir(parents=True)
    shutil.copy(demo_weights_path(), host_a / "clip.safetensors")
    name = f"p{uuid.uuid4().hex[:10]}"
    with CIRCollection.create(server_uri, name, model="cir-demo-tiny", pretrained=str(host_a / "clip.safetensors"),
                              encoder=EncoderSpec(device="cpu")) as col:
        col.add(images)
        before = [h.id for h in col.search(images[0], "make it red", k=5)]
        assert col.recipe.encoder["pretrained"] == "clip.safetensors" and str(tmp_path) not in col.recipe.to_json()

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    # the creating host finds its file again without a search path (its index of known files)
    with CIRCollection.open(server_uri, name, encoder=EncoderSpec(device="cpu")) as col:
        assert [h.id for h in col.search(images[0], "make it red", k=5)] == before

    # host B: its own copy elsewhere, no index
    monkeypatch.setenv(CACHE_ENV_VAR, "")
    host_b = tmp_path / "hostB" / "weights"
    host_b.mkdir(parents=True)
    shutil.move(str(host_a / "clip.safetensors"), str(host_b / "clip.safetensors"))
    with pytest.raises(ModelNotFoundError, match=ENV_VAR):
        CIRCollection.open(server_uri, name, encoder=EncoderSpec(device="cpu"))
    monkeypatch.setenv(ENV_VAR, str(host_b))
    with CIRCollection.open(server_uri, name, encoder=EncoderSpec(device="cpu")) as col:
        assert [h.id for h in col.search(images[0], "make it red", k=5)] == before
    with CIRCollection.open(server_uri, name, model="cir-demo-tiny", pretrained="../hostB/weights/clip.safetensors",
                            encoder=EncoderSpec(device="cpu")) as col:
        assert [h.id for h in col.search(images[0], "make it red", k=5)] == before

    # other bytes under the same name are refused, naming both checksums
    other = tmp_path / "other.safetensors"
    from safetensors.torch import load_file, save_file

    sd = load_file(str(demo_weights_path()))
    sd["visual.proj"] = sd["visual.proj"] * 1.01
    save_file(sd, str(other))
    with pytest.raises(RecipeMismatchError) as info:
        CIRCollection.open(server_uri, name, model="cir-demo-tiny", pretrained=str(other), encoder=EncoderSpec(device="cpu"))
    assert file_sha256(demo_weights_path()) in str(info.value) and file_sha256(other) in str(info.value)
