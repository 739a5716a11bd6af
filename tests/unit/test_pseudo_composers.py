"""Pseudo-token composers (Pic2Word / SEARLE / LinCIR / combined) on FakeEncoder and on random open_clip models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cir_milvus.composers import get_composer, list_composers
from cir_milvus.composers.pseudo import (
    CombinedComposer,
    LinCIRComposer,
    Pic2WordComposer,
    PseudoTokenComposer,
    SearleComposer,
    check_template,
    join_captions,
)
from cir_milvus.composers.slerp import slerp
from cir_milvus.encoders.fake import FakeEncoder
from cir_milvus.errors import ConfigError, RecipeMismatchError

torch = pytest.importorskip("torch")
F = torch.nn.functional

DIM = 32


def _searle_sd(inp: int, hidden: int, out: int, seed: int = 0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layers.0.weight": torch.randn(hidden, inp, generator=g) / inp**0.5,
        "layers.0.bias": torch.randn(hidden, generator=g) * 0.1,
        "layers.3.weight": torch.randn(hidden, hidden, generator=g) / hidden**0.5,
        "layers.3.bias": torch.randn(hidden, generator=g) * 0.1,
        "layers.6.weight": torch.randn(out, hidden, generator=g) / hidden**0.5 * scale,
        "layers.6.bias": torch.randn(out, generator=g) * 0.1 * scale,
    }


def _pic2word_sd(inp: int, middle: int, out: int, seed: int = 0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layers.0.0.weight": torch.randn(middle, inp, generator=g) / inp**0.5,
        "layers.0.0.bias": torch.randn(middle, generator=g) * 0.1,
        "layers.1.0.weight": torch.randn(middle, middle, generator=g) / middle**0.5,
        "layers.1.0.bias": torch.randn(middle, generator=g) * 0.1,
        "fc_out.weight": torch.randn(out, middle, generator=g) / middle**0.5 * scale,
        "fc_out.bias": torch.randn(out, generator=g) * 0.1 * scale,
    }


def _searle_tokens(sd, x: torch.Tensor) -> torch.Tensor:
    x = F.gelu(x @ sd["layers.0.weight"].T + sd["layers.0.bias"])
    x = F.gelu(x @ sd["layers.3.weight"].T + sd["layers.3.bias"])
    return x @ sd["layers.6.weight"].T + sd["layers.6.bias"]


def _pic2word_tokens(sd, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(x @ sd["layers.0.0.weight"].T + sd["layers.0.0.bias"])
    x = F.relu(x @ sd["layers.1.0.weight"].T + sd["layers.1.0.bias"])
    return x @ sd["fc_out.weight"].T + sd["fc_out.bias"]


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cos(a, b) -> np.ndarray:
    return np.sum(_unit(a) * _unit(b), axis=-1)


@pytest.fixture(scope="module")
def fake() -> FakeEncoder:
    return FakeEncoder(dim=DIM)


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((3, DIM)) * 4).astype(np.float32)


@pytest.fixture(scope="module")
def phi_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("heads") / "SEARLE_fake.pt"
    torch.save({"epoch": 1, "Phi": _searle_sd(DIM, 64, DIM)}, path)
    return path


# -- registry, defaults, validation ----------------------------------------------------------------------------------


def test_registered():
    assert {"pic2word", "searle", "lincir", "combined"} <= set(list_composers())
    for cls in (Pic2WordComposer, SearleComposer, LinCIRComposer):
        assert issubclass(cls, PseudoTokenComposer)


def test_missing_head_says_how_to_pass_it():
    with pytest.raises(ConfigError) as e:
        get_composer("searle")
    msg = str(e.value)
    assert "composer_params={'head'" in msg and "CIRCollection.create(..., composer=ComposerSpec('searle', head=...))" in msg


@pytest.mark.parametrize(
    ("name", "template", "placeholder", "preprocess", "fiq_join"),
    [
        ("pic2word", "a photo of * , {}", "*", "clip", "reversed"),
        ("searle", "a photo of $ that {}", "$", "targetpad", "both"),
        ("lincir", "a photo of $ that {}", "$", "hf_clip", "both"),
    ],
)
def test_method_defaults(name, template, placeholder, preprocess, fiq_join, tmp_path):
    from cir_milvus.heads import load_head

    sd = _pic2word_sd(DIM, 16, DIM) if name == "pic2word" else _searle_sd(DIM, 16, DIM)
    comp = get_composer(name, head=load_head(name, sd))
    p = comp.params
    assert (p["template"], p["placeholder"], p["preprocess"], p["fiq_join"]) == (template, placeholder, preprocess, fiq_join)
    assert comp.preprocess == preprocess
    assert get_composer(name, head=load_head(name, sd), preprocess="targetpad").preprocess == "targetpad"


def test_head_from_path_and_recipe_roundtrip(fake, raw, phi_file):
    comp = get_composer("searle", head=str(phi_file))
    cfg = comp.config()
    assert json.loads(json.dumps(cfg)) == cfg  # JSON-able recipe
    assert cfg["name"] == "searle" and cfg["params"]["head"]["source"] == str(phi_file)
    assert cfg["params"]["head"]["sha256"] == comp.head.sha256

    rebuilt = get_composer(cfg["name"], **json.loads(json.dumps(cfg))["params"])
    np.testing.assert_array_equal(rebuilt.compose(fake, raw, ["is red"] * 3), comp.compose(fake, raw, ["is red"] * 3))

    tampered = json.loads(json.dumps(cfg))["params"]
    tampered["head"]["weights_sha256"] = "0" * 64
    with pytest.raises(RecipeMismatchError, match="weights sha256"):
        get_composer("searle", **tampered)


def test_head_kind_must_match(phi_file):
    from cir_milvus.heads import load_head

    head = load_head("searle", phi_file)
    with pytest.raises(ConfigError, match="use composer 'searle'"):
        get_composer("lincir", head=head)
    with pytest.raises(ConfigError, match="head must be"):
        get_composer("searle", head=42)


@pytest.mark.parametrize(
    "template",
    ["a photo of that {}", "a photo of $ that", "a photo of $ {} and {}", "a photo of $, that {}", "{x} $", "$ {"],
)
def test_bad_templates_rejected_at_construction(template, phi_file):
    with pytest.raises(ConfigError):
        get_composer("searle", head=str(phi_file), template=template)


def test_check_template(phi_file):
    assert check_template("a {} photo of $", "$") == "a {} photo of $"
    with pytest.raises(ConfigError, match="free-standing placeholder '\\*'"):
        check_template("a photo of $ that {}", "*")
    with pytest.raises(ConfigError, match="one word"):
        get_composer("searle", head=str(phi_file), placeholder="two words")
    comp = get_composer("searle", head=str(phi_file), placeholder="*", template="a photo of * , {}")
    assert comp.params["placeholder"] == "*"
    with pytest.raises(ConfigError, match="has no source"):
        get_composer("searle", head={"source": None})


def test_unknown_param_rejected(phi_file):
    with pytest.raises(ConfigError, match="unknown parameter"):
        get_composer("searle", head=str(phi_file), alpha=0.5)


# -- composition on FakeEncoder --------------------------------------------------------------------------------------


def test_compose_is_head_then_prompt(fake, raw, phi_file):
    comp = get_composer("searle", head=str(phi_file))
    out = comp.compose(fake, raw, ["is red", "has stripes", "is blue"])
    tok = comp.head(raw)
    want = fake.encode_texts_with_pseudo_tokens(
        ["a photo of $ that is red", "a photo of $ that has stripes", "a photo of $ that is blue"], tok
    )
    assert out.dtype == np.float32 and out.shape == (3, DIM)
    np.testing.assert_allclose(out, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_template_override_per_call(fake, raw, phi_file):
    comp = get_composer("searle", head=str(phi_file))
    tok = comp.head(raw)
    want = fake.encode_texts_with_pseudo_tokens([f"a picture of $ with {t}" for t in "abc"], tok)
    np.testing.assert_allclose(comp.compose(fake, raw, list("abc"), template="a picture of $ with {}"), want, atol=1e-6)
    np.testing.assert_allclose(
        comp.with_params(template="a picture of $ with {}").compose(fake, raw, list("abc")), want, atol=1e-6
    )
    assert comp.params["template"] == "a photo of $ that {}"  # the override did not stick
    with pytest.raises(ConfigError, match="placeholder"):
        comp.compose(fake, raw, list("abc"), template="a picture with {}")


def test_join_captions():
    assert join_captions(("is red.", " has long sleeves? "), "both") == [
        "is red and has long sleeves",
        "has long sleeves and is red",
    ]
    assert join_captions(["is red.", "has long sleeves?"], "reversed") == ["has long sleeves? and is red."]
    assert join_captions(["is red.", "has long sleeves?"], "forward") == ["is red. and has long sleeves?"]
    with pytest.raises(ConfigError, match="two strings"):
        join_captions(("only one",), "both")
    with pytest.raises(ConfigError, match="fiq_join"):
        join_captions(("a", "b"), "sideways")


def test_two_captions_both_orders_averaged(fake, raw, phi_file):
    comp = get_composer("lincir", head={"source": str(phi_file), "kind": "lincir"})
    queries = [("is darker.", "has no sleeves?"), "is red", ("is longer", "is blue, ")]
    out = comp.compose(fake, raw, queries)
    tok = comp.head(raw)
    enc = fake.encode_texts_with_pseudo_tokens  # each row L2-normalised

    def both(i, c1, c2):
        f = enc([f"a photo of $ that {c1} and {c2}"], tok[i : i + 1])
        r = enc([f"a photo of $ that {c2} and {c1}"], tok[i : i + 1])
        return _unit((f + r) / 2)[0]

    want = np.stack([
        both(0, "is darker", "has no sleeves"),
        enc(["a photo of $ that is red"], tok[1:2])[0],
        both(2, "is longer", "is blue"),
    ])
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_two_captions_pic2word_single_reversed_prompt(fake, raw):
    from cir_milvus.heads import load_head

    comp = get_composer("pic2word", head=load_head("pic2word", _pic2word_sd(DIM, 16, DIM)))
    out = comp.compose(fake, raw[:1], [("is darker.", "has no sleeves?")])
    want = fake.encode_texts_with_pseudo_tokens(["a photo of * , has no sleeves? and is darker."], comp.head(raw[:1]), placeholder="*")
    np.testing.assert_allclose(out, want, atol=1e-6)
    prompts, owner = comp.with_params(fiq_join="forward").prompts([("is darker.", "has no sleeves?"), "x"])
    assert prompts == ["a photo of * , is darker. and has no sleeves?", "a photo of * , x"]
    assert owner.tolist() == [0, 1]


def test_needs_image_and_matching_widths(fake, raw, phi_file):
    comp = get_composer("searle", head=str(phi_file))
    with pytest.raises(ConfigError, match="reference image"):
        comp.compose(fake, None, ["x"])
    with pytest.raises(ConfigError, match="64-d tokens|tower is"):
        comp.compose(FakeEncoder(dim=64), np.zeros((1, DIM), np.float32), ["x"])
    with pytest.raises(ConfigError, match=r"\[N, 32\]"):
        comp.compose(FakeEncoder(dim=DIM), np.zeros((1, 16), np.float32), ["x"])


# -- combined --------------------------------------------------------------------------------------------------------


def test_combined_endpoints_and_middle(fake, raw, phi_file):
    texts = ["is red", ("is longer.", "is blue"), "has stripes"]
    base = get_composer("searle", head=str(phi_file))
    pseudo = base.compose(fake, raw, texts)
    image = _unit(raw).astype(np.float32)

    c0 = get_composer("combined", base="searle", head=base.head, alpha=0.0)
    c1 = c0.with_params(alpha=1.0)
    np.testing.assert_allclose(c0.compose(fake, raw, texts), image, atol=1e-6)
    np.testing.assert_allclose(c1.compose(fake, raw, texts), pseudo, atol=1e-6)
    mid = c0.with_params(alpha=0.8).compose(fake, raw, texts)
    np.testing.assert_allclose(mid, slerp(image, pseudo, 0.8), atol=1e-6)
    assert np.all(_cos(mid, pseudo) > _cos(image, pseudo))

    assert isinstance(c0, CombinedComposer) and c0.preprocess == "targetpad"
    cfg = c0.config()
    assert json.loads(json.dumps(cfg)) == cfg and cfg["params"]["base"] == "searle" and cfg["params"]["alpha"] == 0.0


def test_combined_params(phi_file):
    from cir_milvus.heads import load_head

    head = load_head("lincir", phi_file)
    assert get_composer("combined", head=head).params["base"] == "lincir"  # inferred from the head
    assert get_composer("combined", head=head).params["alpha"] == 0.8
    with pytest.raises(ConfigError, match="base="):
        get_composer("combined", head=str(phi_file))
    with pytest.raises(ConfigError, match="alpha"):
        get_composer("combined", head=head, alpha=1.5)
    with pytest.raises(ConfigError, match="placeholder"):
        get_composer("combined", head=head, template="no slot {}")


# -- torch: an independent reimplementation of the injection ------------------------------------------------------


def reference_pseudo_encode(model, tokenizer, prompts, tokens, placeholder_id):
    """Straightforward Pic2Word/SEARLE eval path: overwrite the placeholder row, then CLIP's encode_text."""
    feats = []
    with torch.no_grad():
        for prompt, tok in zip(prompts, tokens, strict=True):
            ids = tokenizer([prompt])  # [1, L]
            x = model.token_embedding(ids).clone()  # [1, L, W]
            for j in range(ids.shape[1]):
                if int(ids[0, j]) == placeholder_id:
                    x[0, j] = tok
            x = x + model.positional_embedding
            x = model.transformer(x, attn_mask=model.attn_mask)  # batch-first [1, L, W]
            x = model.ln_final(x)
            eot = int(ids[0].argmax())
            f = x[0, eot] @ model.text_projection  # [D]
            feats.append((f / f.norm()).numpy())
    return np.stack(feats)


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("open_clip")
    from cir_milvus.encoders.torch import TorchEncoder

    return TorchEncoder("cir-demo-tiny", None)


def test_bpe_placeholder_ids(tiny):
    assert tiny.placeholder_id("$") == 259 and tiny.placeholder_id("*") == 265


@pytest.mark.parametrize("name", ["searle", "lincir", "pic2word"])
def test_torch_matches_reference_injection(tiny, name):
    from cir_milvus.heads import load_head

    d, w = tiny.dim, tiny.token_width()
    make = _pic2word_sd if name == "pic2word" else _searle_sd
    sd = make(d, 64, w, scale=0.05)
    comp = get_composer(name, head=load_head(name, sd))
    raw = torch.randn(3, d, generator=torch.Generator().manual_seed(3)) * 3
    texts = ["is red", "has two stars", "is much bigger and blue"]

    out = comp.compose(tiny, raw.numpy(), texts)

    tokens = (_pic2word_tokens if name == "pic2word" else _searle_tokens)(sd, raw)
    tpl, pid = ("a photo of * , {}", 265) if name == "pic2word" else ("a photo of $ that {}", 259)
    want = reference_pseudo_encode(tiny.model, tiny.tokenizer, [tpl.format(t) for t in texts], tokens, pid)
    assert out.shape == (3, d) and out.dtype == np.float32
    assert np.all(_cos(out, want) > 0.9999), _cos(out, want)
    # the token matters: a different image gives a different query
    other = comp.compose(tiny, raw.numpy()[::-1].copy(), texts)
    assert not np.allclose(other, out, atol=1e-4)


def test_torch_two_captions_and_combined(tiny):
    from cir_milvus.heads import load_head

    d, w = tiny.dim, tiny.token_width()
    sd = _searle_sd(d, 64, w, scale=0.05)
    head = load_head("searle", sd)
    comp = get_composer("searle", head=head)
    raw = torch.randn(2, d, generator=torch.Generator().manual_seed(4)) * 3
    queries = [("is red.", "has stars?"), "is blue"]

    out = comp.compose(tiny, raw.numpy(), queries)

    tokens = _searle_tokens(sd, raw)
    fwd, rev, single = (
        reference_pseudo_encode(tiny.model, tiny.tokenizer, [p], tokens[i : i + 1], 259)[0]
        for p, i in [("a photo of $ that is red and has stars", 0), ("a photo of $ that has stars and is red", 0),
                     ("a photo of $ that is blue", 1)]
    )
    want = np.stack([_unit((fwd + rev) / 2), single])
    assert np.all(_cos(out, want) > 0.9999)

    image = _unit(raw.numpy())
    combined = get_composer("combined", head=head, alpha=0.0)
    np.testing.assert_allclose(combined.compose(tiny, raw.numpy(), queries), image, atol=1e-5)
    np.testing.assert_allclose(combined.with_params(alpha=1.0).compose(tiny, raw.numpy(), queries), out, atol=1e-5)


def test_torch_vit_b32_with_searle_sized_head():
    """A random-weight ViT-B-32 (77-token context, width 512) with a SEARLE B/32-sized φ (512→2048→2048→512)."""
    pytest.importorskip("open_clip")
    from cir_milvus.encoders.torch import TorchEncoder
    from cir_milvus.heads import load_head

    enc = TorchEncoder("ViT-B-32", None)
    assert (enc.dim, enc.token_width(), enc.context_length) == (512, 512, 77)
    sd = _searle_sd(512, 2048, 512, scale=0.05)
    comp = get_composer("searle", head=load_head("searle", sd, embed_dim=512, token_dim=512))
    raw = torch.randn(2, 512, generator=torch.Generator().manual_seed(5)) * 3
    texts = ["is a dog on a sofa", "has more people and a red car"]

    out = comp.compose(enc, raw.numpy(), texts)

    want = reference_pseudo_encode(
        enc.model, enc.tokenizer, [f"a photo of $ that {t}" for t in texts], _searle_tokens(sd, raw), 259
    )
    assert np.all(_cos(out, want) > 0.9999), _cos(out, want)
