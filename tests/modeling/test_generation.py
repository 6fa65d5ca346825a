"""Cached generate() that crosses the original window equals a no-cache recompute, per architecture.

Each equality test has a negative control: with the recompute removed the same comparison fails, on every
architecture (transformers 5.23 passes the cache as ``past_key_values=``, 5.24 as ``cache=``).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from packaging import version
from transformers import DynamicCache, Phi3ForCausalLM

import hf_longrope2.modeling.modeling_longrope2 as modeling
from hf_longrope2.modeling.modeling_longrope2 import LongRoPE2Phi3ForCausalLM, cache_needs_recompute
from hf_longrope2.tiny.models import ORIGINAL, VOCAB, extended_pair, greedy_generate

TRANSFORMERS = version.parse(transformers.__version__).release


def crossing_prompt() -> tuple[torch.Tensor, torch.Tensor]:
    """One row that crosses the window at the 5th new token."""
    ids = torch.randint(3, VOCAB, (1, ORIGINAL - 4), generator=torch.Generator().manual_seed(0))
    return ids, torch.ones_like(ids)


def left_padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows, left-padded: the long one crosses at the 4th new token, the padded one at the 9th."""
    g = torch.Generator().manual_seed(1)
    long, short = torch.randint(3, VOCAB, (1, ORIGINAL - 3), generator=g), torch.randint(3, VOCAB, (1, ORIGINAL - 8), generator=g)
    pad = long.shape[1] - short.shape[1]
    ids = torch.cat([long, torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1)])
    mask = torch.ones_like(ids)
    mask[1, :pad] = 0
    return ids, mask


PROMPTS = {"one_row": crossing_prompt, "left_padded": left_padded_prompts}


def cached_vs_recompute(ext, prompt: str) -> tuple[bool, float]:
    ids, mask = PROMPTS[prompt]()
    seq_cache, logits_cache = greedy_generate(ext, ids, True, mask, new_tokens=12)
    seq_plain, logits_plain = greedy_generate(ext, ids, False, mask, new_tokens=12)
    return torch.equal(seq_cache, seq_plain), (logits_cache - logits_plain).abs().max().item()


@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_cached_generation_across_boundary_equals_recompute(model_type, prompt):
    _, ext = extended_pair(model_type)
    same_tokens, diff = cached_vs_recompute(ext, prompt)
    assert same_tokens
    assert diff <= 1e-4


@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_without_recompute_the_cache_drifts(model_type, prompt, monkeypatch):
    """Negative control: keys cached with the original RoPE make cached logits wrong past the window."""
    _, ext = extended_pair(model_type)
    monkeypatch.setattr(modeling, "cache_needs_recompute", lambda *a, **k: False)
    _, diff = cached_vs_recompute(ext, prompt)
    assert diff > 1e-3


def test_phi3_own_rule_is_wrong_for_rows_crossing_later(monkeypatch):
    """Phi3ForCausalLM drops the cache once, by the padded batch's length: the row that crosses later drifts."""
    _, ext = extended_pair("phi3")
    monkeypatch.setattr(modeling, "cache_needs_recompute", lambda *a, **k: False)
    monkeypatch.setattr(LongRoPE2Phi3ForCausalLM, "prepare_inputs_for_generation", Phi3ForCausalLM.prepare_inputs_for_generation)
    assert cached_vs_recompute(ext, "one_row")[1] <= 1e-4  # its rule is right for a single row ...
    assert cached_vs_recompute(ext, "left_padded")[1] > 1e-3  # ... and wrong for the padded one


@pytest.mark.parametrize(
    "argument", ["past_key_values", pytest.param("cache", marks=pytest.mark.skipif(
        TRANSFORMERS < (5, 24), reason="transformers < 5.24 has no cache= argument"))]
)
def test_cache_is_reset_under_either_argument_name(argument):
    """The cache arrives as `cache=` (5.24+) or `past_key_values=`; either way it is reset and passed on."""
    _, ext = extended_pair("llama")
    ids = torch.randint(3, VOCAB, (1, ORIGINAL + 1))
    cache = DynamicCache(config=ext.config)
    with torch.no_grad():
        ext(input_ids=ids[:, :ORIGINAL], use_cache=True, **{argument: cache})
    assert cache.get_seq_length() == ORIGINAL
    inputs = ext.prepare_inputs_for_generation(ids, next_sequence_length=1, **{argument: cache},
                                               attention_mask=torch.ones_like(ids))
    assert cache.get_seq_length() == 0
    assert inputs["input_ids"].shape[1] == ORIGINAL + 1  # the whole sequence is fed again
    assert next(v for k, v in inputs.items() if k in ("cache", "past_key_values")) is cache


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
