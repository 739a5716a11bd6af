"""ONNX export of the demo architecture (random weights): bundle layout, parity with torch, fp16/int8 figures,
the torch-free tokenizer, the onnxruntime encoder, checksum verification and the CLI pieces."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from cir_milvus_export.onnx_export import export_bundle  # noqa: E402
from cir_milvus_export.parity import TOKENIZER_PROBES, check_parity, topk_agreement  # noqa: E402
from cir_milvus_export.tokenizer import EOT_ID, SOT_ID, build_clip_tokenizer  # noqa: E402

from cir_milvus.bundle import bundle_preprocess, load_manifest  # noqa: E402
from cir_milvus.cli.export import add_parser as add_export_parsers  # noqa: E402
from cir_milvus.cli.export import parse_head_args  # noqa: E402
from cir_milvus.composers.slerp import slerp  # noqa: E402
from cir_milvus.encoders import create_encoder, list_encoders  # noqa: E402
from cir_milvus.encoders.bundle_tokenizer import BundleTokenizer  # noqa: E402
from cir_milvus.encoders.ort import OrtEncoder  # noqa: E402
from cir_milvus.encoders.torch import inject_pseudo_tokens  # noqa: E402
from cir_milvus.errors import ConfigError, ExportError, ModelNotFoundError  # noqa: E402

FP32_GRAPHS = ["fused_searle", "fused_slerp", "head_searle", "image", "text", "text_pseudo"]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def searle_head(tiny_searle_head):  # type: ignore[no-untyped-def]
    return tiny_searle_head


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path) -> Path:
    """fp32, fused graphs, the SEARLE head (exported once per session: tests/conftest.py)."""
    return tiny_bundle


@pytest.fixture(scope="module")
def ort_encoder(bundle: Path) -> OrtEncoder:
    return OrtEncoder(bundle)


@pytest.fixture(scope="module", params=["fp16", "int8"])
def low_precision_bundle(request, tiny_bundles) -> Path:  # type: ignore[no-untyped-def]
    return tiny_bundles.get(precision=request.param)


# -- layout and manifest ---------------------------------------------------------------------------------------------


def test_bundle_layout_and_manifest(bundle: Path, tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    names = {p.name for p in bundle.iterdir()}
    assert {f"{g}.onnx" for g in FP32_GRAPHS} <= names
    assert {"weights.bin", "tokenizer.json", "preprocess.json", "manifest.json", "parity.json", "reference.npz"} <= names
    assert not [n for n in names if n.startswith(".staging")]
    m = load_manifest(bundle)
    assert m["dims"] == {"embed": 128, "token_width": 128, "context_length": 32, "image_size": 64}
    assert m["placeholders"]["$"] == 259 and m["placeholders"]["*"] == 265
    assert m["opset"] == 17 and m["precision"] == "fp32"
    assert m["source"]["model"] == "cir-demo-tiny" and m["source"]["pretrained"] is None
    assert m["composers"]["slerp"]["alpha"] == 0.8
    assert m["heads"]["searle"]["template"] == "a photo of $ that {}" and m["heads"]["searle"]["placeholder_id"] == 259
    assert set(m["files"]) == names - {"manifest.json"}
    # the decode mode is left out at the library default (see test_bundle_decode_rule)
    assert json.loads((bundle / "preprocess.json").read_text()) == {
        k: v for k, v in tiny_torch_encoder.preprocess_config.to_dict().items() if k != "decode"}
    g = m["graphs"]
    assert g["text_pseudo"]["inputs"]["input_ids"] == {"dtype": "int64", "shape": ["batch", "length"]}  # any n <= L
    assert g["fused_slerp"]["inputs"]["input_ids"] == {"dtype": "int64", "shape": ["batch", 32]}  # the full context
    assert g["text_pseudo"]["inputs"]["placeholder_id"]["shape"] == [1]
    assert g["image"]["inputs"]["pixels"] == {"dtype": "float32", "shape": ["batch", 3, 64, 64]}
    assert g["fused_slerp"]["outputs"]["query"]["shape"] == ["batch", 128]


def test_bundle_decode_rule(bundle: Path, tiny_torch_encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A bundle exported from a default encoder records no decode mode (its preprocess.json, so its bundle_sha256,
    is the one exported before the default changed) and serves with the library default, like the torch encoder it
    came from; an encoder built with another mode on purpose records it, and the bundle serves with it."""
    assert tiny_torch_encoder.preprocess_config.decode == "reduce"
    assert "decode" not in json.loads((bundle / "preprocess.json").read_text())
    ort = OrtEncoder(bundle)
    assert ort.preprocess_config == tiny_torch_encoder.preprocess_config
    assert OrtEncoder(bundle, decode="exact").preprocess_config.decode == "exact"  # an explicit mode wins
    exact = tiny_torch_encoder.with_decode("exact")
    assert exact.model is tiny_torch_encoder.model and tiny_torch_encoder.preprocess_config.decode == "reduce"
    recorded = bundle_preprocess(exact.preprocess_config)
    assert recorded["decode"] == "exact"
    assert "decode" not in bundle_preprocess(exact.preprocess_config.with_mode("hf_clip"))  # exact is its default
    other = tmp_path / "exact-bundle"
    shutil.copytree(bundle, other)
    (other / "preprocess.json").write_text(json.dumps(recorded))
    assert OrtEncoder(other, verify=False).preprocess_config == exact.preprocess_config
    # with_decode: a copy sharing the sessions, only the decode mode replaced
    copy = ort.with_decode("exact")
    assert copy is not ort and copy.preprocess_config.decode == "exact" and ort.preprocess_config.decode == "reduce"
    assert copy.session("image") is ort.session("image") and ort.with_decode("reduce") is ort


def test_weights_are_shared_between_graphs(bundle: Path) -> None:
    """The fused graphs reuse the towers' weights: weights.bin is about one model (8.0M params → ~32 MB fp32)."""
    size = (bundle / "weights.bin").stat().st_size
    assert size < 40e6
    assert all((bundle / f"{g}.onnx").stat().st_size < 2e6 for g in FP32_GRAPHS)


# -- parity ------------------------------------------------------------------------------------------------------------


def test_fp32_parity_report(bundle: Path) -> None:
    parity = json.loads((bundle / "parity.json").read_text())
    assert parity["passed"] and parity["threshold"] == 0.9999
    rep = parity["fp32"]
    assert sorted(rep["outputs"]) == FP32_GRAPHS
    for g, o in rep["outputs"].items():
        assert o["cosine_min"] > 0.9999, g
        assert o["max_abs"] < 1e-4, g
    assert all(r["agreement"] == 1.0 for r in rep["retrieval"].values())
    assert parity["tokenizer"]["identical"] == parity["tokenizer"]["strings"]


def test_check_parity_against_torch(bundle: Path, tiny_torch_encoder, searle_head) -> None:  # type: ignore[no-untyped-def]
    rep = check_parity(bundle, tiny_torch_encoder, heads={"searle": searle_head})
    assert rep["reference"] == "torch"
    assert sorted(rep["outputs"]) == FP32_GRAPHS
    assert rep["min_cosine"] > 0.9999 and rep["min_topk_agreement"] == 1.0
    assert rep["tokenizer"]["different"] == []
    stored = check_parity(bundle)  # no torch: the reference stored at export time
    assert stored["reference"] == "stored" and stored["min_cosine"] > 0.9999


def test_low_precision_figures_are_reported(low_precision_bundle: Path) -> None:
    parity = json.loads((low_precision_bundle / "parity.json").read_text())
    precision = parity["precision"]
    m = load_manifest(low_precision_bundle)
    assert m["precision"] == precision
    assert parity["fp32"]["min_cosine"] > 0.9999  # always measured first
    rep = parity[precision]
    assert sorted(rep["outputs"]) == ["fused_slerp", "image", "text", "text_pseudo"]
    floor = {"fp16": 0.9999, "int8": 0.99}[precision]
    assert floor <= rep["min_cosine"] < 1.0 + 1e-9
    assert rep["max_abs"] > parity["fp32"]["max_abs"]  # not silently fp32
    assert rep["min_topk_agreement"] >= {"fp16": 1.0, "int8": 0.8}[precision]
    fp32_size = 32e6
    assert (low_precision_bundle / "weights.bin").stat().st_size < {"fp16": 0.6, "int8": 0.35}[precision] * fp32_size
    enc = OrtEncoder(low_precision_bundle)
    assert enc.precision == precision
    assert enc.encode_texts(["a red star"]).shape == (1, 128)


def test_parity_failure_raises_export_error(tiny_torch_encoder, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import cir_milvus_export.onnx_export as ox

    real = ox.check_parity

    def degraded(path, *a, **kw):  # type: ignore[no-untyped-def]
        rep = real(path, *a, **kw)
        rep["outputs"]["text"]["cosine_min"] = rep["min_cosine"] = 0.5
        return rep

    monkeypatch.setattr(ox, "check_parity", degraded)
    with pytest.raises(ExportError, match="text has cosine 0.500000"):
        export_bundle(tiny_torch_encoder, tmp_path / "b", fused=False)
    parity = json.loads((tmp_path / "b" / "parity.json").read_text())
    assert parity["passed"] is False


def test_topk_agreement_tolerates_ties() -> None:
    g = np.eye(4, dtype=np.float32)
    ref = np.asarray([[1.0, 0.5, 0.5, 0.0]])
    swapped = np.asarray([[1.0, 0.5, 0.5 + 1e-7, 0.0]])  # tie broken the other way
    r = topk_agreement(ref, swapped, g, k=2)
    assert r["agreement"] == 1.0 and r["exact_overlap"] == 0.5
    assert topk_agreement(ref, np.asarray([[0.0, 0.0, 0.0, 1.0]]), g, k=1)["agreement"] == 0.0


def test_export_argument_errors(tiny_torch_encoder, bundle: Path, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="precision"):
        export_bundle(tiny_torch_encoder, tmp_path / "x", precision="bf16")
    with pytest.raises(ConfigError, match="not empty"):
        export_bundle(tiny_torch_encoder, bundle)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no bundle"):
        export_bundle(tiny_torch_encoder, tmp_path / "other", overwrite=True)
    with pytest.raises(ConfigError, match="token width"):
        export_bundle(tiny_torch_encoder, tmp_path / "y", heads={"bad": torch.nn.Linear(128, 64)})
    with pytest.raises(ConfigError, match="head name"):
        export_bundle(tiny_torch_encoder, tmp_path / "z", heads={"../evil": torch.nn.Linear(128, 128)})


# -- tokenizer ---------------------------------------------------------------------------------------------------------

ORDINARY = [
    "a red star", "make it BLUE!!", "a photo of $ that is larger", "a photo of * , in red", "price: $19.99 (50% off)",
    "  lots   of\twhitespace\n here ", "It's the dog's toy; they're OK, we'll see, I'd go, you've, I'm",
    "naïve café résumé", "日本語のテキスト", "emoji 🐶🔥 and ✨", "Ünïcödé ŞTRÍNG", "ﬁne ﬂower", "ＦＵＬＬ ｗｉｄｔｈ １２３",
    "“curly” ‘quotes’", "İstanbul", "zero\u200bwidth", "\u00a0nbsp\u3000ideo", "C++ & C#", "1234567890", "",
    "e-mail@example.com http://x.y/z?q=1", "a--b__c...d", "x" * 100, "word " * 90, "<start_of_text> hi",
]


@pytest.fixture(scope="module")
def open_clip_tokenizer():  # type: ignore[no-untyped-def]
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()  # context length 77


def test_tokenizer_json_alone_matches_open_clip(open_clip_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok = build_clip_tokenizer(77)
    ref = open_clip_tokenizer(ORDINARY).numpy()
    got = np.asarray([e.ids for e in tok.encode_batch(ORDINARY)])
    for s, a, b in zip(ORDINARY, ref, got, strict=True):
        assert a.tolist() == b.tolist(), s
    assert tok.encode("$").ids[:3] == [SOT_ID, 259, EOT_ID] and tok.encode("*").ids[1] == 265
    long = tok.encode("word " * 90).ids
    assert len(long) == 77 and long[-1] == EOT_ID and 0 not in long


def test_tokenizer_json_alone_documented_differences(open_clip_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """What tokenizer.json cannot do without Python (README): HTML entities and the final sigma."""
    tok = build_clip_tokenizer(77)
    for s in ["a&amp;b &lt;tag&gt;", "ΟΔΟΣ"]:
        assert tok.encode(s).ids != open_clip_tokenizer([s])[0].tolist()


def test_bundle_tokenizer_matches_open_clip_on_probes(open_clip_tokenizer, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    texts = TOKENIZER_PROBES + ORDINARY + ["a&amp;b", "ΟΔΟΣ ΣΑΣ", "tab\x0bvt\x1cfs", "mojibake: cafÃ©"]
    tok = BundleTokenizer(bundle / "tokenizer.json", 77)
    np.testing.assert_array_equal(tok(texts), open_clip_tokenizer(texts).numpy())
    tok32 = BundleTokenizer(bundle / "tokenizer.json", 32)
    from open_clip.tokenizer import SimpleTokenizer

    np.testing.assert_array_equal(tok32(texts), SimpleTokenizer(context_length=32)(texts).numpy())


def test_bundle_tokenizer_without_ftfy(open_clip_tokenizer, bundle: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Without ftfy the tokenizer's normalizer stands in; only mojibake repair is lost."""
    import cir_milvus.encoders.bundle_tokenizer as ort_mod

    monkeypatch.setattr(ort_mod, "_FTFY", False)
    texts = TOKENIZER_PROBES + ["a&amp;b", "ΟΔΟΣ ΣΑΣ", "tab\x0bvt\x1cfs", "&Sigma;ABC"]
    tok = BundleTokenizer(bundle / "tokenizer.json", 77)
    np.testing.assert_array_equal(tok(texts), open_clip_tokenizer(texts).numpy())
    assert not np.array_equal(tok(["cafÃ©"]), open_clip_tokenizer(["cafÃ©"]).numpy())  # ftfy repairs mojibake


# -- the onnxruntime encoder -------------------------------------------------------------------------------------------


def test_onnx_backend_registered(bundle: Path) -> None:
    assert "onnx" in list_encoders()
    enc = create_encoder(f"bundle:{bundle}")
    assert isinstance(enc, OrtEncoder) and enc.dim == 128 and enc.device == "cpu"
    with pytest.raises(ModelNotFoundError, match="no ONNX bundle"):
        create_encoder(f"bundle:{bundle}-missing")


def test_ort_encoder_matches_torch(ort_encoder: OrtEncoder, tiny_torch_encoder, make_image) -> None:  # type: ignore[no-untyped-def]
    images = [make_image(80, 60, seed=i) for i in range(5)]
    for normalize in (True, False):
        a = ort_encoder.encode_images(images, batch_size=2, normalize=normalize)
        b = tiny_torch_encoder.encode_images(images, normalize=normalize)
        assert a.dtype == np.float32 and a.shape == (5, 128)
        assert cosine_rows(a, b).min() > 0.9999 and np.abs(a - b).max() < 1e-4
    texts = ["a red star", "make it blue", "the café's version — brighter", "x" * 40]
    a, b = ort_encoder.encode_texts(texts, batch_size=3), tiny_torch_encoder.encode_texts(texts)
    assert cosine_rows(a, b).min() > 0.9999
    np.testing.assert_array_equal(ort_encoder.tokenize(texts), tiny_torch_encoder.tokenize(texts))
    assert ort_encoder.encode_texts([]).shape == (0, 128) and ort_encoder.encode_images([]).shape == (0, 128)


def test_ort_pseudo_tokens_match_torch(ort_encoder: OrtEncoder, tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    prompts = ["a photo of $ that is red", "a $ on black", "$ $ twice"]
    tok = np.random.default_rng(0).standard_normal((3, 128)).astype(np.float32) * 0.02
    a = ort_encoder.encode_texts_with_pseudo_tokens(prompts, tok)
    b = tiny_torch_encoder.encode_texts_with_pseudo_tokens(prompts, tok)
    assert cosine_rows(a, b).min() > 0.9999
    star = ort_encoder.encode_texts_with_pseudo_tokens(["a photo of * , red"], tok[:1], placeholder="*")
    assert cosine_rows(star, tiny_torch_encoder.encode_texts_with_pseudo_tokens(
        ["a photo of * , red"], tok[:1], placeholder="*")).min() > 0.9999
    assert ort_encoder.placeholder_id("$") == 259 and ort_encoder.placeholder_id("*") == 265
    assert ort_encoder.token_width() == 128
    with pytest.raises(ConfigError, match="no placeholder"):
        ort_encoder.encode_texts_with_pseudo_tokens(["no slot here"], tok[:1])
    with pytest.raises(ConfigError, match="pseudo_tokens must have shape"):
        ort_encoder.encode_texts_with_pseudo_tokens(prompts, tok[:, :64])


def _fed_lengths(enc: OrtEncoder, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Record (graph, rows, positions) of every text graph run (the session itself still runs)."""
    fed: list[tuple[str, int, int]] = []
    run = enc.run

    def recording(name: str, **inputs: np.ndarray) -> np.ndarray:
        if name.startswith("text"):
            fed.append((name, *inputs["input_ids"].shape))
        return run(name, **inputs)

    monkeypatch.setattr(enc, "run", recording)
    return fed


def test_text_graphs_take_the_pooled_prefix(bundle: Path, tiny_torch_encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Text graphs have a dynamic sequence axis; the encoder feeds each batch only up to its last end-of-text
    token, rows of similar length together, and gets the torch encoder's features (parity unchanged)."""
    import onnx

    for graph in ("text", "text_pseudo"):
        dims = onnx.load(str(bundle / f"{graph}.onnx"), load_external_data=False).graph.input[0].type.tensor_type
        assert [d.dim_param or d.dim_value for d in dims.shape.dim] == ["batch", "length"]
    assert load_manifest(bundle)["text_prefix"] == {"pool": "argmax"}
    enc = OrtEncoder(bundle)
    fed = _fed_lengths(enc, monkeypatch)
    texts = ["a red star", "a very long caption " + "with many more words " * 4, "x", "blue"]
    ids = enc.tokenize(texts)
    want_len = ids.argmax(axis=1) + 1  # the end-of-text position + 1, per row
    out = enc.encode_texts(texts, batch_size=2)
    assert sorted(n for _, _, n in fed) == [int(np.sort(want_len)[1]), int(np.sort(want_len)[3])]
    assert max(n for _, _, n in fed) < 32  # never the whole context
    assert cosine_rows(out, tiny_torch_encoder.encode_texts(texts)).min() > 0.9999
    prompts = ["a photo of $ that is red", "$ with " + "many words " * 6, "a $"]
    tok = np.random.default_rng(3).standard_normal((3, 128)).astype(np.float32) * 0.02
    fed.clear()
    got = enc.encode_texts_with_pseudo_tokens(prompts, tok, batch_size=2)
    assert all(g == "text_pseudo" and n < 32 for g, _, n in fed)
    assert cosine_rows(got, tiny_torch_encoder.encode_texts_with_pseudo_tokens(prompts, tok)).min() > 0.9999


def test_bundles_without_a_text_prefix_still_run_full_length(bundle: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A bundle exported before text graphs took any length (no ``text_prefix`` in its manifest) is fed all L
    positions in input order, as before, with the same results."""
    old = Path(shutil.copytree(bundle, tmp_path / "old"))
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["text_prefix"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    enc, new = OrtEncoder(old), OrtEncoder(bundle)
    fed = _fed_lengths(enc, monkeypatch)
    texts = ["a red star", "x", "make it blue"]
    out = enc.encode_texts(texts, batch_size=2)
    assert fed == [("text", 2, 32), ("text", 1, 32)]
    assert cosine_rows(out, new.encode_texts(texts)).min() > 0.99999


def test_ort_and_torch_inject_the_same_placeholder_slots(ort_encoder: OrtEncoder, tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    """A user's "$" besides the template's: both backends fill the same slot (first, last, or all)."""
    prompts = ["a photo of $ that is under $50", "a photo of $ that costs $ 5 , not $ 6", "a photo of $ that is red"]
    tok = np.random.default_rng(1).standard_normal((3, 128)).astype(np.float32) * 0.5
    outs = {}
    for slot in (0, -1, None):
        a = ort_encoder.encode_texts_with_pseudo_tokens(prompts, tok, slot=slot, batch_size=2)
        b = tiny_torch_encoder.encode_texts_with_pseudo_tokens(prompts, tok, slot=slot)
        assert cosine_rows(a, b).min() > 0.9999
        outs[slot] = a
    assert cosine_rows(outs[0][:2], outs[None][:2]).max() < 0.9999  # the slot rules really differ there


def test_ort_recipe_matches_torch_keys(ort_encoder: OrtEncoder, tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    a, b = ort_encoder.recipe, tiny_torch_encoder.recipe
    # the bundle's recipe also says where the bundle is, so CIRCollection.open() can rebuild it
    assert a["backend"] == "onnx" and a["location"] == f"bundle:{ort_encoder.bundle_dir.resolve()}"
    # ... and the content sha256 of its files (an edited manifest cannot pass for the exported weights)
    assert set(a) - {"location", "bundle_sha256"} == set(b)
    assert {k: v for k, v in a.items() if k not in ("backend", "location", "bundle_sha256")} == {
        k: v for k, v in b.items() if k != "backend"}


def test_fused_graphs_match_composition(ort_encoder: OrtEncoder, tiny_torch_encoder, searle_head) -> None:  # type: ignore[no-untyped-def]
    pix = np.random.default_rng(3).standard_normal((3, 3, 64, 64)).astype(np.float32)
    texts = ["make it red", "a blue star", "larger"]
    img = tiny_torch_encoder.encode_pixels(pix)
    txt = tiny_torch_encoder.encode_texts(texts)
    for alpha in (0.8, np.asarray([0.0, 0.5, 1.0], np.float32)):
        want = slerp(img, txt, np.asarray(alpha, np.float64).reshape(-1, 1))
        got = ort_encoder.compose_slerp(pix, texts, alpha)
        assert cosine_rows(got, want).min() > 0.9999
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    prompts = [searle_head.template.format(t) for t in texts]
    with torch.no_grad():
        raw = tiny_torch_encoder.encode_pixels(pix, normalize=False)
        tok = searle_head(raw)
        ids = torch.from_numpy(tiny_torch_encoder.tokenize(prompts))
        want = torch.nn.functional.normalize(inject_pseudo_tokens(tiny_torch_encoder.model, ids,
                                                                  torch.from_numpy(tok), 259), dim=-1).numpy()
    assert cosine_rows(ort_encoder.compose_head("searle", pix, prompts), want).min() > 0.9999
    head = ort_encoder.heads["searle"]
    assert head.kind == "searle" and head.placeholder == "$" and head.output_dim == 128
    assert cosine_rows(head(raw), tok).min() > 0.9999


def test_checksum_tamper_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    OrtEncoder(copy)  # intact
    with (copy / "weights.bin").open("r+b") as f:
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ConfigError, match=r"weights\.bin was altered"):
        OrtEncoder(copy)
    OrtEncoder(copy, verify=False)  # explicit opt-out
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match="tokenizer.json is listed"):
        OrtEncoder(copy)


def test_gpu_request_without_cuda_provider_is_clear(bundle: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    with pytest.raises(ConfigError, match="onnx-gpu"):
        OrtEncoder(bundle, device="cuda")
    with pytest.raises(ConfigError, match="device must be"):
        OrtEncoder(bundle, device="tpu")
    assert OrtEncoder(bundle, device="auto").device == "cpu"


# -- CLI pieces --------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_export_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parity(bundle: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = _parser().parse_args(["parity", str(bundle), "--json"])
    assert args.func(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["passed"] and rep["reference"] == "stored"
    args = _parser().parse_args(["parity", str(bundle), "--torch"])
    with pytest.raises(ConfigError, match="random weights"):
        args.func(args)


def test_cli_export(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    args = _parser().parse_args(["export", "--model", "cir-demo-tiny", "--no-fused", "--out", str(tmp_path / "b")])
    assert args.precision == "fp32" and args.opset == 17
    assert args.func(args) == 0
    assert "image" in capsys.readouterr().out
    assert sorted(load_manifest(tmp_path / "b")["graphs"]) == ["image", "text", "text_pseudo"]


def test_parse_head_args() -> None:
    assert parse_head_args(["searle=a.pt", "mine:lincir=b.pt"]) == {"searle": ("searle", "a.pt"),
                                                                   "mine": ("lincir", "b.pt")}
    with pytest.raises(ConfigError, match="KIND=PATH"):
        parse_head_args(["searle"])
    with pytest.raises(ConfigError, match="twice"):
        parse_head_args(["searle=a.pt", "searle=b.pt"])


# -- a real-size architecture (random weights) -------------------------------------------------------------------------


@pytest.mark.slow
def test_vit_b32_export_parity(tmp_path: Path) -> None:
    from cir_milvus.encoders.torch import TorchEncoder

    torch.manual_seed(0)
    enc = TorchEncoder("ViT-B-32", None, device="cpu")
    out = export_bundle(enc, tmp_path / "b32")
    parity = json.loads((out / "parity.json").read_text())
    assert parity["fp32"]["min_cosine"] > 0.9999
    assert (out / "weights.bin").stat().st_size < 700e6  # ~151M params, stored once
