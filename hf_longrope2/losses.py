"""Next-token losses that never hold a [sequence x vocabulary] logits tensor.

```python
>>> from hf_longrope2.losses import labelled_nll
>>> nll = labelled_nll(model, input_ids, labels)   # [batch]: mean NLL over tokens whose label != -100
```

A causal LM's forward normally projects every position onto the vocabulary: at 128k tokens and a 128k
vocabulary that is 64 GB of fp32 logits. The factor search only needs the few answer tokens of a needle
sample, and perplexity only needs the per-token loss. Both are computed here from the decoder's hidden
states: only the scored positions go through the output head, in chunks, with the model's own logit
soft-capping (Gemma 2/3) applied, so results equal the stock ``model(...).logits`` path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

IGNORE_INDEX = -100


def output_logits(model: PreTrainedModel, hidden_states: torch.Tensor) -> torch.Tensor:
    """The model's output head on `hidden_states`, including final logit soft-capping where the model has it."""
    logits = model.get_output_embeddings()(hidden_states)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def hidden_states(
    model: PreTrainedModel, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Last hidden states [batch, seq, hidden] of the decoder (no output head, no cache)."""
    if position_ids is None:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    out = model.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state


def token_nll(model: PreTrainedModel, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024):
    """Per-token NLL [n] of `targets` [n] given `hidden` [n, hidden], through the head `chunk_size` rows at a time."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    pieces = []
    for start in range(0, hidden.shape[0], chunk_size):
        logits = output_logits(model, hidden[start : start + chunk_size]).float()
        pieces.append(F.cross_entropy(logits, targets[start : start + chunk_size], reduction="none"))
    return torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float)


def labelled_nll(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Mean next-token NLL per row over the tokens whose label is not -100.

    Args:
        model (`PreTrainedModel`): A causal LM.
        input_ids (`torch.LongTensor` of shape `(batch, seq)`): Tokens.
        labels (`torch.LongTensor` of shape `(batch, seq)`): Same layout as `input_ids` (unshifted, like
            transformers' ``labels``); position ``t`` is predicted from positions ``< t``.
        position_ids (`torch.LongTensor`, *optional*): Defaults to ``arange`` per row.
        chunk_size (`int`, defaults to 1024): Scored positions projected onto the vocabulary at once.

    Returns:
        `torch.FloatTensor` of shape `(batch,)`: every row must have at least one scored token.
    """
    scored = labels[:, 1:] != IGNORE_INDEX  # position t predicts labels[t + 1]
    counts = scored.sum(1)
    if bool((counts == 0).any()):
        raise ValueError(f"every row needs at least one label != {IGNORE_INDEX}; scored tokens per row: {counts.tolist()}")
    hidden = hidden_states(model, input_ids, position_ids)[:, :-1][scored]  # [n, hidden], row-major order
    nll = token_nll(model, hidden, labels[:, 1:][scored], chunk_size)
    rows = torch.arange(labels.shape[0], device=labels.device).repeat_interleave(counts)
    sums = torch.zeros(labels.shape[0], device=nll.device, dtype=nll.dtype).index_add_(0, rows.to(nll.device), nll)
    return sums / counts.to(sums.device)


def full_logits_nll(model: PreTrainedModel, input_ids: torch.Tensor, labels: torch.Tensor, position_ids=None):
    """Reference for [`labelled_nll`] through ``model(...).logits`` (materialises [batch x seq x vocab] logits)."""
    if position_ids is None:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    logits = model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits[:, :-1].float()
    targets = labels[:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=IGNORE_INDEX)
    return nll.sum(1) / (targets != IGNORE_INDEX).sum(1)
