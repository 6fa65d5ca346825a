"""Lean losses: equal to the stock full-logits path, and only labelled tokens are scored."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hf_longrope2.losses import IGNORE_INDEX, full_logits_nll, labelled_nll, token_nll
from hf_longrope2.tiny.models import VOCAB, extended_pair


def _labels(ids: torch.Tensor) -> torch.Tensor:
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, -7:] = ids[0, -7:]  # an "answer" at the end of row 0
    labels[1, 50:53] = ids[1, 50:53]  # and mid-row in row 1
    return labels


def test_labelled_nll_equals_full_logits_every_architecture(model_type):
    _, model = extended_pair(model_type)
    ids = torch.randint(3, VOCAB, (2, 140))  # past the 32-token window: long factors in use
    labels = _labels(ids)
    with torch.no_grad():
        lean = labelled_nll(model, ids, labels, chunk_size=2)
        full = full_logits_nll(model, ids, labels)
    torch.testing.assert_close(lean, full, rtol=1e-5, atol=1e-5)


def test_only_labelled_tokens_are_scored():
    _, model = extended_pair("llama")
    ids = torch.randint(3, VOCAB, (2, 100))
    labels = _labels(ids)
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits.float()
        per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        lean = labelled_nll(model, ids, labels)
    expected = torch.stack([per_token[0, -7:].mean(), per_token[1, 49:52].mean()])
    torch.testing.assert_close(lean, expected, rtol=1e-5, atol=1e-5)
    assert (lean - per_token.mean(1)).abs().min() > 1e-3  # plain perplexity would be a different number


def test_rows_without_labels_are_rejected():
    _, model = extended_pair("llama")
    ids = torch.randint(3, VOCAB, (2, 20))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, -1] = ids[0, -1]
    with pytest.raises(ValueError, match=r"scored tokens per row: \[1, 0\]"):
        labelled_nll(model, ids, labels)


def test_token_nll_chunking_is_invisible():
    _, model = extended_pair("gemma2")  # final logit soft-capping goes through the same head
    hidden = torch.randn(37, model.config.hidden_size)
    targets = torch.randint(0, VOCAB, (37,))
    with torch.no_grad():
        torch.testing.assert_close(token_nll(model, hidden, targets, 5), token_nll(model, hidden, targets, 1000))
