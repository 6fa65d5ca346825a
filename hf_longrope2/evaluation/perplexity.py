"""Perplexity vs context length, and short-window perplexity for retention against a base model.

```python
>>> from hf_longrope2.evaluation.perplexity import long_documents, short_windows, window_nll, perplexity
>>> docs = long_documents(tokenizer, texts, length=16384, count=4)     # [4, 16384]: first tokens of 4 documents
>>> perplexity(window_nll(model, docs))                                 # {"ppl": ..., "ppl_last": ..., "tokens": ...}
```

Method (the one LongRoPE / YaRN report on PG19 and Proof-pile): at each length ``L``, take the first ``L``
tokens of up to ``count`` documents that have at least ``L`` tokens, run each as one sequence, and average the
next-token NLL over every position (``ppl``) and over the last quarter of positions (``ppl_last``: the tokens
that have the most context, where a failing extension shows first). Documents are taken in one seeded order, so
two lengths share every document long enough for both.

Short-window retention: perplexity on non-overlapping windows of the original window length, the same windows
for every model; ``retention_pct = 100 * ppl_base / ppl_model`` (100 = the base model's quality; lower = lost).
Losses come from [`hf_longrope2.losses`]: hidden states, then the output head in chunks, never a
[sequence x vocabulary] logits tensor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

from ..losses import hidden_states, token_nll


def tokenize_documents(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each of `texts` (no special tokens)."""
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def long_documents(tokenized: Sequence[Sequence[int]], length: int, count: int, seed: int = 0) -> torch.Tensor:
    """The first `length` tokens of up to `count` documents with at least `length` tokens: [n, length].

    Raises:
        ValueError: if no document has `length` tokens (the message gives the longest one).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    order = list(range(len(tokenized)))
    random.Random(seed).shuffle(order)
    chosen = [tokenized[i][:length] for i in order if len(tokenized[i]) >= length][:count]
    if not chosen:
        longest = max((len(t) for t in tokenized), default=0)
        raise ValueError(
            f"no document has {length} tokens for perplexity at that length (the longest has {longest}); use a "
            "--dataset with longer documents or smaller --ppl-lengths"
        )
    return torch.tensor(chosen)


def short_windows(tokenized: Sequence[Sequence[int]], window: int, count: int, seed: int = 0) -> torch.Tensor:
    """Up to `count` non-overlapping `window`-token windows, taken round-robin from the documents: [n, window]."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    per_doc = [[doc[i : i + window] for i in range(0, len(doc) - window + 1, window)] for doc in tokenized]
    order = list(range(len(per_doc)))
    random.Random(seed).shuffle(order)
    windows: list[Sequence[int]] = []
    depth = 0
    while len(windows) < count and any(depth < len(per_doc[i]) for i in order):
        windows += [per_doc[i][depth] for i in order if depth < len(per_doc[i])]
        depth += 1
    if not windows:
        raise ValueError(f"no document has {window} tokens for the short-window perplexity")
    return torch.tensor(windows[:count])


@torch.no_grad()
def window_nll(model, input_ids: torch.Tensor, batch_size: int = 1, chunk_size: int = 1024) -> torch.Tensor:
    """Next-token NLL [n, length - 1] of each row of `input_ids` [n, length], `batch_size` rows per forward."""
    device = next(model.parameters()).device
    rows = []
    for start in range(0, input_ids.shape[0], batch_size):
        ids = input_ids[start : start + batch_size].to(device)
        hidden = hidden_states(model, ids)[:, :-1]
        nll = token_nll(model, hidden.reshape(-1, hidden.shape[-1]), ids[:, 1:].reshape(-1), chunk_size)
        rows.append(nll.view(ids.shape[0], -1).cpu())
    return torch.cat(rows)


def perplexity(nll: torch.Tensor) -> dict:
    """``{"ppl", "ppl_last", "tokens", "documents"}`` from per-token NLL [n, positions] (see the module docstring)."""
    last = max(1, nll.shape[1] // 4)
    return {
        "ppl": math.exp(nll.double().mean().item()),
        "ppl_last": math.exp(nll[:, -last:].double().mean().item()),
        "tokens": int(nll.numel()),
        "documents": int(nll.shape[0]),
    }
