"""Cached generate() that crosses the original window equals a no-cache recompute, per architecture."""

from __future__ import annotations

import pytest
import torch

import hf_longrope2.modeling_longrope2 as modeling
from hf_longrope2.modeling_longrope2 import cache_needs_recompute
from hf_longrope2.testing import ORIGINAL, VOCAB, extended_pair, greedy_generate


def test_cached_generation_across_boundary_equals_recompute(model_type):
    _, ext = extended_pair(model_type)
    ids = torch.randint(3, VOCAB, (1, ORIGINAL - 4))  # crosses the window at the 5th new token
    seq_cache, logits_cache = greedy_generate(ext, ids, use_cache=True)
    seq_plain, logits_plain = greedy_generate(ext, ids, use_cache=False)
    assert torch.equal(seq_cache, seq_plain)
    torch.testing.assert_close(logits_cache, logits_plain, rtol=0, atol=1e-4)


def test_left_padded_rows_crossing_at_different_steps(model_type):
    _, ext = extended_pair(model_type)
    long, short = torch.randint(3, VOCAB, (1, ORIGINAL - 3)), torch.randint(3, VOCAB, (1, ORIGINAL - 8))
    pad = long.shape[1] - short.shape[1]
    ids = torch.cat([long, torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1)])
    mask = torch.ones_like(ids)
    mask[1, :pad] = 0
    seq_cache, logits_cache = greedy_generate(ext, ids, True, mask, new_tokens=12)
    seq_plain, logits_plain = greedy_generate(ext, ids, False, mask, new_tokens=12)
    assert torch.equal(seq_cache, seq_plain)
    torch.testing.assert_close(logits_cache, logits_plain, rtol=0, atol=1e-4)


def test_without_recompute_the_cache_drifts(monkeypatch):
    """Negative control: keys cached with the original RoPE make cached logits wrong past the window."""
    _, ext = extended_pair("llama")
    ids = torch.randint(3, VOCAB, (1, ORIGINAL - 4))
    _, logits_plain = greedy_generate(ext, ids, use_cache=False)
    monkeypatch.setattr(modeling, "cache_needs_recompute", lambda *a, **k: False)
    _, logits_stale = greedy_generate(ext, ids, use_cache=True)
    assert (logits_stale - logits_plain).abs().max() > 1e-3


@pytest.mark.parametrize(
    "past,total,positions,expected",
    [
        (0, 40, None, False),  # prefill
        (31, 32, None, False),  # still inside the window
        (32, 33, None, True),  # first token past the window
        (33, 34, None, False),  # cache already long
        (32, 33, torch.tensor([[0, 0, *range(31)], [*range(33)]]), True),  # row 1 crosses
        (32, 33, torch.tensor([[0, 0, *range(31)], [0, 0, *range(31)]]), False),  # padded rows not yet
    ],
)
def test_cache_needs_recompute_rule(past, total, positions, expected):
    assert cache_needs_recompute(32, past, total, positions) is expected
