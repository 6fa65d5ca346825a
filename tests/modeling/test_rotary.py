"""The model applies the original RoPE inside the window and the long factors beyond it, per document."""

from __future__ import annotations

import torch

from hf_longrope2.modeling.modeling_longrope2 import architecture_for
from hf_longrope2.modeling.rope import rope_parameters
from hf_longrope2.tiny.models import ORIGINAL, TARGET, VOCAB, extended_pair, long_factors_for, longrope_reference


def _logits(model, input_ids, **kwargs):
    with torch.no_grad():
        return model(input_ids=input_ids, use_cache=False, **kwargs).logits


def test_short_documents_match_unmodified_model_exactly(model_type):
    base, ext = extended_pair(model_type)
    ids = torch.randint(3, VOCAB, (2, ORIGINAL))
    assert torch.equal(_logits(base, ids), _logits(ext, ids))


def test_long_documents_match_transformers_longrope(model_type):
    base, ext = extended_pair(model_type)
    ref = longrope_reference(model_type, ext)
    ids = torch.randint(3, VOCAB, (2, 3 * ORIGINAL))
    got, want = _logits(ext, ids), _logits(ref, ids)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # and the long window really differs from the unextended model
    assert (got - _logits(base, ids)).abs().max() > 1e-3


def test_packed_row_equals_documents_run_alone(model_type):
    _, ext = extended_pair(model_type)
    lengths = [ORIGINAL + 13, ORIGINAL - 7, 2 * ORIGINAL + 3]  # long, short, long
    docs = [torch.randint(3, VOCAB, (1, n)) for n in lengths]
    packed = torch.cat(docs, dim=1)
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    got = _logits(ext, packed, position_ids=position_ids)
    start = 0
    for doc, n in zip(docs, lengths, strict=True):
        torch.testing.assert_close(got[:, start : start + n], _logits(ext, doc), rtol=0, atol=2e-5)
        start += n


def test_left_padded_batch_matches_rows_alone(model_type):
    _, ext = extended_pair(model_type)
    short, long = torch.randint(3, VOCAB, (1, ORIGINAL - 5)), torch.randint(3, VOCAB, (1, ORIGINAL + 20))
    width = long.shape[1]
    pad = width - short.shape[1]
    ids = torch.cat([torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(ids)
    mask[0, :pad] = 0
    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    got = _logits(ext, ids, attention_mask=mask, position_ids=position_ids)
    torch.testing.assert_close(got[0, pad:], _logits(ext, short)[0], rtol=0, atol=2e-5)
    torch.testing.assert_close(got[1], _logits(ext, long)[0], rtol=0, atol=2e-5)


def test_extended_pair_has_factors_and_class(model_type):
    _, ext = extended_pair(model_type)
    arch = architecture_for(model_type)
    assert type(ext) is arch.model_class and type(ext.config) is arch.config_class
    params = rope_parameters(ext.config)
    assert params["rope_type"] == "longrope2" and params["long_factor"] == long_factors_for(ext)
    assert ext.config.max_position_embeddings == TARGET and params["original_max_position_embeddings"] == ORIGINAL
