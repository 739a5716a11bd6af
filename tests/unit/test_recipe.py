"""The collection recipe: JSON round trip and the compatibility check between a collection and an encoder."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cir_milvus.artifacts import CACHE_ENV_VAR, ENV_VAR, known_paths, locate, path_hint, remember
from cir_milvus.errors import ConfigError, ModelNotFoundError, RecipeMismatchError
from cir_milvus.preprocess import PreprocessConfig
from cir_milvus.storage.recipe import Recipe, check_compatible


@pytest.fixture(autouse=True)
def _own_index(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each test gets an empty per-user index of known files, and no $CIR_MILVUS_PATH."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)


def _encoder(**overrides: object) -> dict[str, object]:
    enc: dict[str, object] = {
        "backend": "torch",
        "model": "ViT-B-32",
        "pretrained": "openai",
        "weights_sha256": "a" * 64,
        "dim": 512,
        "preprocess": PreprocessConfig().to_dict(),
    }
    enc.update(overrides)
    return enc


def test_json_round_trip() -> None:
    recipe = Recipe(
        encoder=_encoder(),
        composer={"name": "searle", "params": {"head": {"kind": "searle", "source": "x.pt"}, "template": "a $ {}"}},
        metric="IP",
        index={"type": "IVF_FLAT", "params": {"nlist": 128}},
        package_version="0.1.0",
    )
    text = recipe.to_json()
    assert isinstance(json.loads(text), dict)
    back = Recipe.from_json(text)
    assert back == recipe
    assert back.to_json() == text


def test_defaults_survive_round_trip() -> None:
    recipe = Recipe(encoder=_encoder())
    back = Recipe.from_json(recipe.to_json())
    assert back.composer == {"name": "slerp", "params": {"alpha": 0.8}}
    assert back.metric == "IP" and back.index["type"] == "HNSW" and back.format == recipe.format


@pytest.mark.parametrize("text", ["not json", "{}", '{"encoder": {}}', "[1, 2]"])
def test_unreadable_recipe_is_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="unreadable"):
        Recipe.from_json(text)


def test_mismatch_names_both_models() -> None:
    stored = Recipe(encoder=_encoder())
    current = _encoder(model="ViT-L-14", dim=768, weights_sha256="b" * 64)
    with pytest.raises(RecipeMismatchError) as info:
        check_compatible("products", stored, current)
    msg = str(info.value)
    assert "ViT-B-32" in msg and "ViT-L-14" in msg
    assert "'products'" in msg
    assert "512" in msg and "768" in msg
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    "field,value",
    [
        ("weights_sha256", "c" * 64),
        ("dim", 256),
        ("preprocess", PreprocessConfig(mode="targetpad").to_dict()),
        ("preprocess", PreprocessConfig(size=336).to_dict()),
    ],
)
def test_each_must_match_field_is_checked(field: str, value: object) -> None:
    stored = Recipe(encoder=_encoder())
    with pytest.raises(RecipeMismatchError, match=field):
        check_compatible("c", stored, _encoder(**{field: value}))


def test_backend_difference_alone_is_ok() -> None:
    stored = Recipe(encoder=_encoder(backend="torch"))
    check_compatible("c", stored, _encoder(backend="onnx"))


def test_missing_sha_on_one_side_is_ignored() -> None:
    check_compatible("c", Recipe(encoder=_encoder(weights_sha256=None)), _encoder())
    check_compatible("c", Recipe(encoder=_encoder()), _encoder(weights_sha256=None))
    no_key = _encoder()
    del no_key["weights_sha256"]
    check_compatible("c", Recipe(encoder=_encoder()), no_key)


def test_stored_json_recipe_is_compatible_with_the_live_encoder_dict() -> None:
    # the stored side went through JSON (tuples -> lists); the live side is fresh from the encoder
    stored = Recipe.from_json(Recipe(encoder=_encoder()).to_json())
    check_compatible("c", stored, _encoder())


def test_describe_mentions_model_tag_and_short_sha() -> None:
    text = Recipe(encoder=_encoder()).describe()
    assert "ViT-B-32" in text and "openai" in text and "a" * 12 in text and "a" * 13 not in text
    assert "(sha256 -," in Recipe(encoder=_encoder(weights_sha256=None)).describe()


# -- identity by content ---------------------------------------------------------------------------------------------


def test_pretrained_name_is_checked_when_a_checksum_is_missing() -> None:
    stored = Recipe(encoder=_encoder(weights_sha256=None))
    with pytest.raises(RecipeMismatchError, match="pretrained"):
        check_compatible("c", stored, _encoder(pretrained="laion2b_s34b_b79k"))


def test_same_bytes_under_another_name_or_path_are_the_same_weights() -> None:
    # the shipped demo weights vs a copy of the file; a hint vs an absolute path; ./x vs /abs/x
    stored = Recipe(encoder=_encoder(pretrained="cir-demo"))
    check_compatible("c", stored, _encoder(pretrained="/elsewhere/copy.safetensors"))
    stored = Recipe(encoder=_encoder(pretrained="models/x.safetensors", pretrained_kind="file"))
    check_compatible("c", stored, _encoder(pretrained="/srv/other/x.safetensors"))
    check_compatible("c", Recipe(encoder=_encoder(pretrained="./x.safetensors")),
                     _encoder(pretrained="/abs/x.safetensors"))


def test_same_file_name_without_a_checksum_on_one_side_is_accepted_by_name() -> None:
    stored = Recipe(encoder=_encoder(pretrained="x.safetensors", weights_sha256=None))
    check_compatible("c", stored, _encoder(pretrained="/abs/x.safetensors"))


def test_different_weights_are_refused_naming_both_checksums() -> None:
    a, b = "1" * 64, "2" * 64
    stored = Recipe(encoder=_encoder(pretrained="w.safetensors", weights_sha256=a))
    with pytest.raises(RecipeMismatchError) as info:
        check_compatible("c", stored, _encoder(pretrained="/B/w.safetensors", weights_sha256=b))
    assert a in str(info.value) and b in str(info.value)


def test_model_name_still_matters_with_equal_weights() -> None:
    # same bytes loaded into another architecture (e.g. a -quickgelu variant) give other vectors
    with pytest.raises(RecipeMismatchError, match="model"):
        check_compatible("c", Recipe(encoder=_encoder()), _encoder(model="ViT-B-32-quickgelu"))


def test_local_dir_models_compare_by_folder_name() -> None:
    stored = Recipe(encoder=_encoder(model="local-dir:clip", pretrained=None))
    check_compatible("c", stored, _encoder(model="local-dir:/mnt/models/clip", pretrained=None))


# -- portable recipes ------------------------------------------------------------------------------------------------


def test_portable_recipe_keeps_no_absolute_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path / "lite"
    (base / "models").mkdir(parents=True)
    inside = base / "models" / "w.safetensors"
    inside.write_bytes(b"w")
    outside = tmp_path / "elsewhere" / "tt.pt"
    head = {"kind": "searle", "source": str(tmp_path / "heads" / "phi.pt"), "sha256": "f" * 64}
    hub_head = {"kind": "lincir", "source": "hf-hub:org/repo/lincir.pt", "sha256": "e" * 64}
    recipe = Recipe(
        encoder=_encoder(pretrained=str(inside), text_weights=str(outside), location=f"bundle:{base / 'bundle'}"),
        composer={"name": "combined", "params": {"head": head, "heads": [hub_head], "alpha": 0.5}},
    ).portable(base)
    enc, params = recipe.encoder, recipe.composer["params"]
    assert enc["pretrained"] == "models/w.safetensors" and enc["pretrained_kind"] == "file"
    assert enc["text_weights"] == "tt.pt"
    assert enc["location"] == "bundle:bundle"
    assert params["head"]["source"] == "phi.pt" and params["head"]["sha256"] == "f" * 64
    assert params["heads"][0]["source"] == "hf-hub:org/repo/lincir.pt"
    assert enc["weights_sha256"] == "a" * 64 and params["alpha"] == 0.5
    assert str(tmp_path) not in recipe.to_json()


def test_portable_keeps_tags_and_hub_ids() -> None:
    for pre in ("openai", "cir-demo", None):
        enc = Recipe(encoder=_encoder(pretrained=pre)).portable("/data").encoder
        assert enc["pretrained"] == pre and "pretrained_kind" not in enc
    enc = Recipe(encoder=_encoder(model="hf-hub:org/repo", pretrained=None)).portable(None).encoder
    assert enc["model"] == "hf-hub:org/repo"


def test_recipe_written_by_an_older_version_is_read_and_matches() -> None:
    # a format-1 recipe as cir_milvus 0.x stored it: the checkpoint path as typed, the bundle by absolute path
    old = json.dumps({
        "format": 1,
        "encoder": {"backend": "torch", "model": "cir-demo-tiny", "pretrained": "/home/alice/ckpt/w.safetensors",
                    "weights_sha256": "a" * 64, "dim": 128, "preprocess": PreprocessConfig(size=64).to_dict()},
        "composer": {"name": "searle", "params": {"head": {"kind": "searle", "source": "/home/alice/phi.pt",
                                                           "sha256": "b" * 64}}},
        "metric": "IP", "index": {"type": "HNSW", "params": {"M": 16, "efConstruction": 200}},
        "package_version": "0.1.0",
    })
    recipe = Recipe.from_json(old)
    assert recipe.format == 1 and recipe.composer["params"]["head"]["source"] == "/home/alice/phi.pt"
    current = {"backend": "torch", "model": "cir-demo-tiny", "pretrained": "/srv/bob/w.safetensors",
               "weights_sha256": "a" * 64, "dim": 128, "preprocess": PreprocessConfig(size=64).to_dict()}
    check_compatible("old", recipe, current)


def test_recipe_from_a_newer_version_says_to_upgrade() -> None:
    text = Recipe(encoder=_encoder()).to_json().replace('"format": 2', '"format": 99')
    with pytest.raises(ConfigError, match="upgrade"):
        Recipe.from_json(text)


def test_lite_base_dir() -> None:
    from pathlib import Path

    from cir_milvus.storage.recipe import lite_base_dir

    assert lite_base_dir("http://host:19530") is None and lite_base_dir("https://u:p@h") is None
    assert lite_base_dir("/data/x/cir.db") == Path("/data/x")
    assert lite_base_dir("rel/cir.db") == Path.cwd() / "rel"


# -- finding files by hint and checksum ------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_path_hint_is_relative_inside_the_base_dir_else_the_name(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a" / "m").mkdir(parents=True)
    assert path_hint(tmp_path / "a" / "m" / "w.pt", tmp_path / "a") == "m/w.pt"
    assert path_hint(tmp_path / "b" / "w.pt", tmp_path / "a") == "w.pt"
    assert path_hint(tmp_path / "b" / "w.pt", None) == "w.pt"
    monkeypatch.chdir(tmp_path / "a")
    assert path_hint("./m/w.pt", tmp_path / "a") == "m/w.pt"  # relative to the cwd, which is the base dir


def test_locate_prefers_the_base_dir_then_the_search_path_and_checks_content(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base, extra, env = tmp_path / "base", tmp_path / "extra", tmp_path / "env"
    for d in (base / "models", extra, env):
        d.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    good = b"the weights"
    # a same-named file with other bytes in the base dir is skipped; the right bytes in a search folder are found
    (base / "models" / "w.pt").write_bytes(b"other weights")
    (extra / "w.pt").write_bytes(good)
    found = locate("models/w.pt", what="checkpoint", sha256=_sha(good), base_dir=base, search_path=[extra])
    assert found == extra / "w.pt"
    # the environment variable is searched too (os.pathsep-separated)
    (extra / "w.pt").unlink()
    (env / "w.pt").write_bytes(good)
    monkeypatch.setenv(ENV_VAR, f"{tmp_path / 'nowhere'}{os.pathsep}{env}")
    assert locate("models/w.pt", what="checkpoint", sha256=_sha(good), base_dir=base) == env / "w.pt"


def test_locate_failure_names_both_checksums_and_where_it_looked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "w.pt").write_bytes(b"other weights")
    want = _sha(b"the weights")
    with pytest.raises(ModelNotFoundError) as info:
        locate("w.pt", what="checkpoint", sha256=want, base_dir=tmp_path, fix="pass pretrained=PATH")
    msg = str(info.value)
    assert want in msg and _sha(b"other weights") in msg
    assert str(tmp_path / "w.pt") in msg and ENV_VAR in msg and "pretrained=PATH" in msg


def test_the_machines_index_finds_a_file_outside_every_search_folder(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # a server collection stores only the file name; reopening on the creating machine from another cwd works
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "cwd").mkdir()
    f = tmp_path / "ckpt" / "w.pt"
    f.write_bytes(b"weights")
    recipe = Recipe(encoder=_encoder(pretrained=str(f), weights_sha256=_sha(b"weights"))).portable(None)
    assert recipe.encoder["pretrained"] == "w.pt"
    assert known_paths(_sha(b"weights")) == [f]
    monkeypatch.chdir(tmp_path / "cwd")
    assert locate("w.pt", what="checkpoint", sha256=_sha(b"weights")) == f
    # an empty CIR_MILVUS_CACHE turns the index off
    monkeypatch.setenv(CACHE_ENV_VAR, "")
    remember(f, "0" * 64)
    assert known_paths("0" * 64) == [] and known_paths(_sha(b"weights")) == []
    with pytest.raises(ModelNotFoundError):
        locate("w.pt", what="checkpoint", sha256=_sha(b"weights"))


def test_shipped_demo_heads_are_found_by_file_name() -> None:
    from cir_milvus.hashing import file_sha256
    from cir_milvus.models.demo import DATA_DIR

    shipped = DATA_DIR / "cir-demo-tiny.pic2word.safetensors"
    assert locate(shipped.name, what="head", sha256=file_sha256(shipped)) == shipped


# -- encoder_from_recipe ---------------------------------------------------------------------------------------------


def test_rebuild_refuses_fake_recipes_and_text_towers_for_bundles() -> None:
    from cir_milvus.encoders import FakeEncoder, encoder_from_recipe

    with pytest.raises(ConfigError, match="FakeEncoder"):
        encoder_from_recipe(FakeEncoder(dim=8).recipe)
    with pytest.raises(ConfigError, match="text_weights"):
        encoder_from_recipe(_encoder(backend="onnx", location="bundle:b"), text_weights="tt.safetensors")


def test_rebuild_finds_a_moved_local_dir_model_and_text_tower(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    import shutil

    from cir_milvus.encoders import encoder_from_recipe
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.models.demo import MODEL_CONFIG_DIR, demo_weights_path

    # a local-dir model (open_clip_config.json + weights) and a text tower (the demo checkpoint's text keys)
    folder = tmp_path / "hostA" / "clipdir"
    folder.mkdir(parents=True)
    cfg = json.loads((MODEL_CONFIG_DIR / "cir-demo-tiny.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    shutil.copy(demo_weights_path(), folder / "open_clip_model.safetensors")
    tower = tmp_path / "hostA" / "tower.safetensors"
    shutil.copy(demo_weights_path(), tower)
    enc = TorchEncoder(f"local-dir:{folder}", device="cpu", text_weights=str(tower))
    assert enc.recipe["weights_sha256"] == enc.recipe["text_weights_sha256"]  # the local-dir weights have an id
    stored = Recipe(encoder=enc.recipe).portable(None)
    assert stored.encoder["model"] == "local-dir:clipdir" and stored.encoder["text_weights"] == "tower.safetensors"

    monkeypatch.setenv(CACHE_ENV_VAR, "")  # no help from this machine's index: only the search path counts
    shutil.move(str(tmp_path / "hostA"), str(tmp_path / "hostB"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="local-dir model folder"):
        encoder_from_recipe(stored.encoder, device="cpu")
    rebuilt = encoder_from_recipe(stored.encoder, device="cpu", search_path=str(tmp_path / "hostB"))
    check_compatible("c", stored, rebuilt.recipe)
    assert rebuilt.recipe["text_weights"] == str(tmp_path / "hostB" / "tower.safetensors")
    texts = ["a red star", "a small blue circle"]
    np.testing.assert_allclose(rebuilt.encode_texts(texts), enc.encode_texts(texts), atol=1e-6)
    # the recorded text tower is looked up as strictly as the weights
    (tmp_path / "hostB" / "tower.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="text tower"):
        encoder_from_recipe(stored.encoder, device="cpu", search_path=str(tmp_path / "hostB"))


def test_injected_clients_and_odd_uris_have_no_base_dir() -> None:
    from cir_milvus.storage.recipe import lite_base_dir

    assert lite_base_dir(object()) is None and lite_base_dir("(injected MilvusClient)") is None
    assert lite_base_dir("unix:/tmp/milvus.sock") is None
