"""Over-long texts: refused with the limit named, unless truncation is asked for (then a warning)."""

from __future__ import annotations

import numpy as np
import pytest

from cir_milvus.encoders.base import check_text_lengths, text_truncation
from cir_milvus.encoders.fake import FakeEncoder
from cir_milvus.errors import ConfigError


def test_fake_encoder_refuses_then_truncates_with_a_warning() -> None:
    enc = FakeEncoder(dim=8)
    long_text = " ".join(f"w{i}" for i in range(100))
    with pytest.raises(ConfigError, match="context length is 77 tokens") as e:
        enc.encode_texts(["fine", long_text])
    assert "102 tokens" in str(e.value) and "truncate=True" in str(e.value)
    with pytest.warns(UserWarning, match="truncated"):
        cut = enc.encode_texts([long_text], truncate=True)
    first_75 = " ".join(f"w{i}" for i in range(75))
    assert (cut == enc.encode_texts([first_75])).all(), "truncation keeps the first context_length - 2 tokens"
    with text_truncation(), pytest.warns(UserWarning):
        enc.encode_texts([long_text])
    with pytest.raises(ConfigError):  # the context manager does not leak
        enc.encode_texts([long_text])


def test_check_text_lengths_edge_cases() -> None:
    check_text_lengths(["a"], [77], 77)  # exactly at the limit is fine
    check_text_lengths(["a"], [0], 77)  # unknown count: no check
    with pytest.raises(ConfigError, match="2 of 2 texts"):
        check_text_lengths(["a", "b"], [78, 90], 77)
    with text_truncation(True), pytest.raises(ConfigError):  # an explicit argument wins
        check_text_lengths(["a"], [78], 77, truncate=False)


def test_torch_encoder_counts_tokens_without_truncation(tiny_torch_encoder) -> None:  # type: ignore[no-untyped-def]
    enc = tiny_torch_encoder
    limit = enc.context_length
    assert enc.token_counts(["a red star"]) == [5]  # SOT + 3 BPE tokens + EOT
    long_text = "red " * (limit + 5)
    with pytest.raises(ConfigError, match=f"context length is {limit} tokens"):
        enc.encode_texts([long_text])
    with pytest.warns(UserWarning, match="truncated"):
        got = enc.encode_texts([long_text], truncate=True)
    assert got.shape == (1, enc.dim)
    with pytest.raises(ConfigError, match="context length"):
        enc.encode_texts_with_pseudo_tokens(["a photo of $ that " + long_text],
                                            np.zeros((1, enc.token_width()), dtype=np.float32))
