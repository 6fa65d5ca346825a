"""Padded batches choose each row's window as if the row were alone (positions derived from the attention mask)."""

from __future__ import annotations

import pytest
import torch

from hf_longrope2.tiny.models import ORIGINAL, VOCAB, char_tokenizer, extended_pair


def _rows() -> tuple[torch.Tensor, torch.Tensor]:
    """A 20-token row right-padded to 40 beside a 40-token row (window 32): only the long row is long."""
    g = torch.Generator().manual_seed(0)
    short, long = torch.randint(3, VOCAB, (20,), generator=g), torch.randint(3, VOCAB, (40,), generator=g)
    ids = torch.stack([torch.cat([short, torch.zeros(20, dtype=torch.long)]), long])
    mask = torch.ones_like(ids)
    mask[0, 20:] = 0
    return ids, mask


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_row_equals_the_row_alone(model_type, side):
    _, ext = extended_pair(model_type)
    ids, mask = _rows()
    if side == "left":
        ids[0], mask[0] = ids[0].roll(20), mask[0].roll(20)
    real = mask[0].bool()
    with torch.no_grad():
        batched = ext(input_ids=ids, attention_mask=mask).logits
        alone = ext(input_ids=ids[:1, real]).logits
        long_alone = ext(input_ids=ids[1:]).logits
    torch.testing.assert_close(batched[0, real], alone[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(batched[1], long_alone[0], rtol=0, atol=1e-4)
    assert ORIGINAL < 40


def test_without_derived_positions_the_pads_count():
    """Negative control: positions 0..39 for the padded row put its 20 tokens in a 40-token document."""
    _, ext = extended_pair("llama")
    ids, mask = _rows()
    with torch.no_grad():
        batched = ext(input_ids=ids, attention_mask=mask, position_ids=torch.arange(40).expand(2, 40)).logits
        alone = ext(input_ids=ids[:1, :20]).logits
    assert (batched[0, :20] - alone[0]).abs().max() > 0.1


def test_lm_eval_loglikelihoods_do_not_depend_on_batch_size():
    """lm-eval right-pads batches without a mask; the bridge scores every request as at batch size 1."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from hf_longrope2.evaluation.lm_eval_bridge import padding_aware_hflm

    _, ext = extended_pair("llama")
    tok = char_tokenizer()
    texts = ["a" * n for n in (8, 15, 22, 27, 31, 36, 44, 50)]  # some padded rows cross the 32-token window
    requests = [Instance("loglikelihood", {}, (t[:-5], t[-5:].replace("a", "b")), i) for i, t in enumerate(texts)]
    one = [ll for ll, _ in padding_aware_hflm(ext, tok, 1).loglikelihood(requests, disable_tqdm=True)]
    eight = [ll for ll, _ in padding_aware_hflm(ext, tok, 8).loglikelihood(requests, disable_tqdm=True)]
    assert one == pytest.approx(eight, abs=1e-4)
    from lm_eval.models.huggingface import HFLM

    stock = [ll for ll, _ in HFLM(pretrained=ext, tokenizer=tok, batch_size=8, device="cpu").loglikelihood(
        requests, disable_tqdm=True)]
    assert max(abs(a - b) for a, b in zip(one, stock, strict=True)) > 1e-2  # the stock wrapper counts the pads


def test_forward_keeps_the_stock_signature(model_type):
    """The Trainer reads label names and dataset columns from `forward`'s signature: it must be the stock one."""
    import inspect

    from transformers.utils import find_labels

    base, ext = extended_pair(model_type)
    assert inspect.signature(ext.forward) == inspect.signature(base.forward)
    assert find_labels(type(ext)) == ["labels"]
