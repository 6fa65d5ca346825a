"""Scoring a candidate: needle-driven perplexity of one long-factor vector, with exact early rejection.

```python
>>> evaluate = Evaluator(model, needle_samples(tokenizer, settings), target_length=32768)
>>> evaluate(long_factor, critical_dim=20, threshold=math.inf)
{"total": 23.1, "samples": 10, "pruned": False, "losses": [...]}
```

A candidate's score is the sum over samples of the mean answer-token NLL ([`~hf_longrope2.losses.labelled_nll`];
only answer positions reach the output head). Samples are scored batch by batch and a candidate whose partial
sum already exceeds the current ``k``-th best total is stopped ([`accumulate`]): exact, because every
per-sample loss is non-negative, so it could not have become a parent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from ..extension import extend
from ..losses import labelled_nll


def accumulate(batch_losses: Iterable[tuple[float, int]], num_samples: int, threshold: float) -> dict:
    """Sum per-sample losses batch by batch; stop once the partial sum exceeds `threshold` (exact early rejection).

    Args:
        batch_losses: ``(sum of the batch's per-sample losses, samples in the batch)``, consumed lazily so a
            stopped candidate costs no further forward passes.
        num_samples: Samples in total.
        threshold: The current ``k``-th best total; ``math.inf`` disables stopping.

    Returns:
        ``{"total", "samples", "pruned"}``; a pruned candidate's total is the partial sum, a lower bound of its
        real total because every per-sample loss is non-negative.
    """
    total, done = 0.0, 0
    for loss, count in batch_losses:
        total += loss
        done += count
        if done < num_samples and total > threshold:
            return {"total": total, "samples": done, "pruned": True}
    return {"total": total, "samples": done, "pruned": False}


class Evaluator:
    """Scores long-factor vectors on fixed samples with one model replica (see the module docstring).

    Samples are scored in ``order`` (set by the search to hardest-first, from the best reference seed's
    per-sample losses), so a hopeless candidate's partial sum crosses the pruning threshold as early as possible.
    """

    def __init__(self, model, samples, target_length: int, batch_size: int = 1):
        self.model, self.samples, self.target_length, self.batch_size = model, samples, target_length, batch_size
        self.order = list(range(samples.input_ids.shape[0]))

    def _batches(self, losses: dict[int, float]):
        device = self.model.device
        with torch.inference_mode():
            for start in range(0, len(self.order), self.batch_size):
                index = self.order[start : start + self.batch_size]
                ids = self.samples.input_ids[index].to(device)
                labels = self.samples.labels[index].to(device)
                values = labelled_nll(self.model, ids, labels).double().tolist()
                losses.update(zip(index, values, strict=True))
                yield math.fsum(values), len(index)

    def __call__(self, long_factor: Sequence[float], critical_dim: int | None, threshold: float,
                 long_mscale: float | None = None) -> dict:
        """Score `long_factor` (with `long_mscale`, default LongRoPE's): ``total`` (sum of per-sample mean NLLs),
        ``samples`` scored, ``pruned``, and the per-sample ``losses`` (by sample index) of a candidate scored in full."""
        extend(self.model, long_factor, max_position_embeddings=self.target_length, critical_dim=critical_dim,
               long_mscale=long_mscale)
        losses: dict[int, float] = {}
        result = accumulate(self._batches(losses), len(self.order), threshold)
        if not result["pruned"]:
            result["losses"] = [losses[i] for i in range(len(self.order))]
        return result
