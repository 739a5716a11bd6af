"""Placeholders in user text: only the template's slot takes the pseudo token (SEARLE / Pic2Word), unless the
LinCIR evaluation rule (every ``$``) is asked for.

The references below re-write the official injections from their semantics on the same random-weight text tower:
SEARLE's ``encode_with_pseudo_tokens`` overwrites the FIRST ``$`` of each row, LinCIR's ``torch.where(ids == 259)``
overwrites every ``$``; both then run CLIP's text transformer and pool at the EOT token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cir_milvus.composers import get_composer
from cir_milvus.composers.pseudo import template_slot
from cir_milvus.encoders.slots import mark_slot, slot_mask
from cir_milvus.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")


def _reference(model: Any, ids: np.ndarray, tokens: np.ndarray, pid: int, which: str) -> np.ndarray:
    """Official injection: ``which="first"`` (SEARLE/Pic2Word), ``"last"`` or ``"all"`` (LinCIR)."""
    text = torch.as_tensor(ids)
    x = model.token_embedding(text).clone()  # [B, L, W]
    for b in range(len(ids)):
        pos = np.flatnonzero(ids[b] == pid)
        chosen = {"first": pos[:1], "last": pos[-1:], "all": pos}[which]
        for p in chosen:
            x[b, p] = torch.as_tensor(tokens[b])
    x = x + model.positional_embedding
    x = model.transformer(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    x = x[torch.arange(len(ids)), text.argmax(dim=-1)]  # EOT (the largest id) pooling
    return (x @ model.text_projection).detach().numpy()


PROMPTS = ["a photo of $ that is under $50", "a photo of $ that costs $ 5 , not $ 6", "a photo of $ that is red"]


def test_first_slot_and_all_slots_match_the_official_injections(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    pid = enc.placeholder_id("$")
    ids = enc.tokenize(PROMPTS)
    assert [(row == pid).sum() for row in ids] == [2, 3, 1]  # "$50" tokenizes to "$" + "50"
    tokens = np.random.default_rng(0).normal(size=(3, enc.token_width())).astype(np.float32)
    with torch.no_grad():
        first = _reference(enc.model, ids, tokens, pid, "first")
        every = _reference(enc.model, ids, tokens, pid, "all")
        last = _reference(enc.model, ids, tokens, pid, "last")
    got_first = enc.encode_texts_with_pseudo_tokens(PROMPTS, tokens, normalize=False)
    got_every = enc.encode_texts_with_pseudo_tokens(PROMPTS, tokens, normalize=False, slot=None)
    got_last = enc.encode_texts_with_pseudo_tokens(PROMPTS, tokens, normalize=False, slot=-1)
    np.testing.assert_allclose(got_first, first, atol=1e-4)
    np.testing.assert_allclose(got_every, every, atol=1e-4)
    np.testing.assert_allclose(got_last, last, atol=1e-4)
    assert np.abs(first[:2] - every[:2]).max() > 1e-2  # the rules differ where the user wrote a "$"
    np.testing.assert_allclose(first[2], every[2], atol=1e-5)  # and agree where only the template has one


def test_composers_replace_only_the_template_slot_unless_told(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.heads import load_head

    enc = tiny_torch_encoder
    w = enc.token_width()
    g = torch.Generator().manual_seed(3)
    sd = {"layers.0.weight": torch.randn(16, enc.dim, generator=g) / enc.dim**0.5, "layers.0.bias": torch.zeros(16),
          "layers.3.weight": torch.randn(16, 16, generator=g) / 4, "layers.3.bias": torch.zeros(16),
          "layers.6.weight": torch.randn(w, 16, generator=g) / 4, "layers.6.bias": torch.zeros(w)}
    head = load_head("lincir", sd)
    img = np.random.default_rng(1).normal(size=(1, enc.dim)).astype(np.float32)
    pid = enc.placeholder_id("$")
    with torch.no_grad():
        tok = head(torch.as_tensor(img)).numpy()

    def ref(prompt: str, which: str) -> np.ndarray:
        with torch.no_grad():
            x = _reference(enc.model, enc.tokenize([prompt]), tok, pid, which)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    ours = get_composer("lincir", head=head).compose(enc, img, ["is under $50"])
    np.testing.assert_allclose(ours, ref("a photo of $ that is under $50", "first"), atol=1e-4)
    lincir_eval = get_composer("lincir", head=head, slots="all").compose(enc, img, ["is under $50"])
    np.testing.assert_allclose(lincir_eval, ref("a photo of $ that is under $50", "all"), atol=1e-4)
    suffix = get_composer("lincir", head=head, template="{} , like $").compose(enc, img, ["is under $50"])
    np.testing.assert_allclose(suffix, ref("is under $50 , like $", "last"), atol=1e-4)
    with pytest.raises(ConfigError, match="slots"):
        get_composer("lincir", head=head, slots="first")


def test_eval_runner_uses_lincirs_all_dollar_rule(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    from cir_milvus.eval.runner import official_composer_params
    from cir_milvus.heads import load_head

    w = tiny_torch_encoder.token_width()
    sd = {"layers.0.weight": torch.zeros(8, 128), "layers.0.bias": torch.zeros(8), "layers.3.weight": torch.zeros(8, 8),
          "layers.3.bias": torch.zeros(8), "layers.6.weight": torch.zeros(w, 8), "layers.6.bias": torch.zeros(w)}
    assert official_composer_params(get_composer("lincir", head=load_head("lincir", sd))) == {"slots": "all"}
    assert official_composer_params(get_composer("searle", head=load_head("searle", sd))) == {}
    combined = get_composer("combined", head=load_head("lincir", sd))
    assert official_composer_params(combined) == {"slots": "all"}
    assert official_composer_params(get_composer("slerp")) == {}


def test_slot_helpers() -> None:
    ids = np.array([[49406, 320, 259, 7, 259, 49407, 0], [49406, 259, 49407, 0, 0, 0, 0]])
    assert slot_mask(ids, 259, 0).nonzero()[1].tolist() == [2, 1]
    assert slot_mask(ids, 259, -1).nonzero()[1].tolist() == [4, 1]
    marked, inject = mark_slot(ids, 259, 0)
    assert inject not in ids and 0 < inject < 49407
    assert (marked == inject).nonzero()[1].tolist() == [2, 1] and marked[0, 4] == 259
    assert mark_slot(ids[1:], 259, 0)[1] == 259  # a single placeholder needs no sentinel
    with pytest.raises(ConfigError, match="slot"):
        slot_mask(ids, 259, 1)  # the second row has one placeholder only
    assert template_slot("a photo of $ that {}", "$") == 0
    assert template_slot("{} , like $ or $", "$") == -2


def test_fake_encoder_follows_the_slot(fake_encoder) -> None:  # type: ignore[no-untyped-def]
    tok = np.ones((1, fake_encoder.token_width()), dtype=np.float32)
    a = fake_encoder.encode_texts_with_pseudo_tokens(["a photo of $ that costs $"], tok)
    b = fake_encoder.encode_texts_with_pseudo_tokens(["a photo of $ that costs $"], tok, slot=None)
    assert np.abs(a - b).max() > 1e-3
