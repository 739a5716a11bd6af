"""Text encoding over the pooled prefix: the same features as the full padded context, for a fraction of the work.

The reference is open_clip's own forward (``model.encode_text`` / ``TextTransformer.forward``) over the full
context length; the prefix length is checked against the tokenizer's own token count.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from open_clip.transformer import TextTransformer  # noqa: E402

from cir_milvus.encoders.slots import mark_slot  # noqa: E402
from cir_milvus.encoders.torch import inject_pseudo_tokens, pooled_prefix, text_tower_forward  # noqa: E402

TEXTS = ["make it green", "the same jacket but in a darker shade of green, photographed at night", "x"]


def _seen_lengths(tower):  # type: ignore[no-untyped-def]
    """Sequence lengths the tower's transformer is called with (a forward hook)."""
    seen: list[int] = []
    handle = tower.transformer.register_forward_hook(lambda mod, args, kwargs_out: seen.append(args[0].shape[1]))
    return seen, handle


def test_encode_texts_equals_open_clips_full_context_forward(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    longest = " ".join(["word"] * (enc.context_length - 2))  # exactly the context: nothing to cut
    texts = [*TEXTS, longest]
    with torch.no_grad():
        want = enc.model.encode_text(enc.tokenizer(texts)).numpy()  # [N, D], all 77 positions
    got = enc.encode_texts(texts, normalize=False)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    alone = np.concatenate([enc.encode_texts([t], normalize=False) for t in texts])  # each its own prefix
    np.testing.assert_allclose(alone, want, atol=2e-5, rtol=1e-4)


def test_the_transformer_runs_only_up_to_the_last_end_of_text_token(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    seen, handle = _seen_lengths(enc.model)
    try:
        enc.encode_texts(TEXTS[:1])
        enc.encode_texts(TEXTS)
    finally:
        handle.remove()
    assert seen == [enc.token_counts(TEXTS[:1])[0], max(enc.token_counts(TEXTS))]
    assert max(seen) < enc.context_length


def test_pseudo_token_prompts_equal_the_full_context_injection(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    prompts = [f"a photo of $ that {t}" for t in TEXTS]
    tokens = np.random.default_rng(0).standard_normal((len(prompts), enc.token_width())).astype(np.float32)
    marked, inject_id = mark_slot(enc.tokenize(prompts), enc.placeholder_id("$"), 0)
    with torch.no_grad():  # the full 77 positions, as the exported ONNX graph computes it
        want = inject_pseudo_tokens(enc.model, torch.from_numpy(marked), torch.from_numpy(tokens), inject_id).numpy()
    seen, handle = _seen_lengths(enc.model)
    try:
        got = enc.encode_texts_with_pseudo_tokens(prompts, tokens, normalize=False)
    finally:
        handle.remove()
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    assert seen == [max(enc.token_counts(prompts))]


def _tower(**kw):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return TextTransformer(context_length=12, vocab_size=50, width=32, heads=2, layers=2, output_dim=16, **kw).eval()


IDS = torch.tensor([[1, 5, 6, 2, 0, 0, 0, 0, 0, 0, 0, 0],
                    [1, 7, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]])  # eos id 2 at positions 3 and 2


def test_a_causal_tower_pooling_at_its_eos_id_is_cut_after_the_last_eos() -> None:
    tower = _tower(pool_type="eos", eos_id=2)
    assert pooled_prefix(tower, IDS) == 4
    with torch.no_grad():
        np.testing.assert_allclose(text_tower_forward(tower, IDS[:, :4]).numpy(), tower(IDS).numpy(),
                                   atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("kw", [{"no_causal_mask": True, "pool_type": "argmax"},  # SigLIP-like: attends both ways
                                {"pool_type": "last"},
                                {"embed_cls": True}])  # CoCa
def test_towers_whose_features_see_the_padding_are_not_cut(kw: dict[str, object]) -> None:
    tower = _tower(**kw)
    assert pooled_prefix(tower, IDS) is None
    if kw.get("no_causal_mask"):  # why: here the prefix really gives other features
        with torch.no_grad():
            assert not torch.allclose(tower(IDS[:, :4]), tower(IDS), atol=1e-4)


def test_no_cut_when_a_row_fills_the_context() -> None:
    full = torch.tensor([[1, *range(3, 13), 49]])  # the largest id (argmax pooling) at the last position
    assert pooled_prefix(_tower(), full) is None


def test_batches_group_texts_of_similar_length_and_keep_the_input_order(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    texts = ["a red star", " ".join(["word"] * 20), "x", " ".join(["blue"] * 12), "two words"]
    with torch.no_grad():
        want = enc.model.encode_text(enc.tokenizer(texts)).numpy()  # [N, D], in the input order
    seen, handle = _seen_lengths(enc.model)
    try:
        got = enc.encode_texts(texts, batch_size=2, normalize=False)
    finally:
        handle.remove()
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    counts = sorted(enc.token_counts(texts))
    assert seen == [counts[1], counts[3], counts[4]]  # batches of the 2 shortest, the next 2, the longest


def test_pseudo_token_batches_are_grouped_by_length_with_each_token_kept_on_its_prompt(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    prompts = [f"a photo of $ that {t}" for t in ["is blue", " ".join(["word"] * 15), "x", " ".join(["red"] * 8)]]
    tokens = np.random.default_rng(1).standard_normal((len(prompts), enc.token_width())).astype(np.float32)
    marked, inject_id = mark_slot(enc.tokenize(prompts), enc.placeholder_id("$"), 0)
    with torch.no_grad():  # full context, input order, one batch
        want = inject_pseudo_tokens(enc.model, torch.from_numpy(marked), torch.from_numpy(tokens), inject_id).numpy()
    seen, handle = _seen_lengths(enc.model)
    try:
        got = enc.encode_texts_with_pseudo_tokens(prompts, tokens, batch_size=2, normalize=False)
    finally:
        handle.remove()
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    counts = sorted(enc.token_counts(prompts))
    assert seen == [counts[1], counts[3]]
