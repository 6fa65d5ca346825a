"""Scoring a candidate: needle-driven perplexity of one long-factor vector, with exact early rejection.

```python
>>> evaluate = FactorScorer(model, needle_samples(tokenizer, settings), target_length=32768)
>>> evaluate(long_factor, critical_dim=20, threshold=math.inf)
{"total": 23.1, "samples": 10, "pruned": False, "losses": [...]}
```

A candidate's score is the sum over samples of the mean answer-token NLL ([`~hf_longrope2.losses.labelled_nll`];
only answer positions reach the output head). Samples are scored batch by batch in a fixed order, and a candidate
is dropped as soon as it cannot become a parent ([`accumulate`], racing):

- ``exact``: its partial sum already exceeds the current ``k``-th best total. Exact, because every per-sample loss
  is non-negative.
- ``paired`` (adds to ``exact``): a one-sided paired t-test of the per-sample loss ratios seen so far against the
  ``k``-th best candidate's own losses on the same samples says, at the given confidence, that its full total
  would exceed that candidate's ([`behind`]). It can stop a child that is a little worse than the parents on
  every sample, which the exact bound only notices at its last sample (how many forwards that saves:
  ``benchmarks/search_cost.py``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch

from ..extension import extend
from ..losses import labelled_nll


@lru_cache(maxsize=256)
def t_quantile(confidence: float, df: int) -> float:
    """The one-sided Student-t quantile ``t`` with ``P(T <= t) = confidence`` for `df` degrees of freedom.

    Bisection on the CDF, integrated with Simpson's rule (no SciPy needed; 1e-6 accurate for df >= 1).
    """
    if not 0.5 <= confidence < 1.0 or df < 1:
        raise ValueError(f"need 0.5 <= confidence < 1 and df >= 1, got {confidence}, {df}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:  # P(T <= x) for x >= 0; substitute u = atan(t) so the range is finite
        steps, top = 2000, math.atan(x)
        h = top / steps

        def f(u: float) -> float:
            t = math.tan(u)
            return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df)) / math.cos(u) ** 2

        area = f(0) + f(top) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
        return 0.5 + area * h / 3

    low, high = 0.0, 1.0
    while cdf(high) < confidence:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < confidence else (low, mid)
    return (low + high) / 2


def behind(seen: Sequence[tuple[float, float]], unseen_reference: float, confidence: float) -> bool:
    """True when a candidate's full total would exceed the reference's, at `confidence` (one-sided paired t-test).

    Args:
        seen: ``(candidate loss, reference loss)`` on each sample scored so far.
        unseen_reference: The reference's summed losses on the samples not scored yet.
        confidence: E.g. 0.95; the test needs at least 2 samples (1 degree of freedom).

    The test is on per-sample log-ratios ``log(candidate / reference)``: samples differ in difficulty by a factor
    (a hard sample is hard for every candidate), so ratios vary far less than differences. With ``L`` the lower
    confidence bound of their mean, the candidate's total is at least ``sum(seen) + exp(L) * unseen_reference``;
    it is behind when even that exceeds the reference's total.
    """
    m = len(seen)
    if m < 2 or unseen_reference <= 0:
        return False
    ratios = [math.log(max(c, 1e-12) / max(r, 1e-12)) for c, r in seen]
    lower = statistics.fmean(ratios) - t_quantile(confidence, m - 1) * statistics.stdev(ratios) / math.sqrt(m)
    candidate = math.fsum(c for c, _ in seen) + math.exp(lower) * unseen_reference
    return candidate > math.fsum(r for _, r in seen) + unseen_reference


def accumulate(batch_losses: Iterable[list[tuple[int, float]]], num_samples: int, threshold: float,
               reference: Sequence[float] | None = None, confidence: float = 0.95) -> dict:
    """Sum per-sample losses batch by batch; stop once the candidate cannot become a parent (racing).

    Args:
        batch_losses: Per batch, ``(sample index, loss)`` pairs, consumed lazily so a stopped candidate costs no
            further forward passes.
        num_samples: Samples in total.
        threshold: The current ``k``-th best total; ``math.inf`` disables stopping (exact bound).
        reference: The ``k``-th best candidate's per-sample losses, by sample index; enables the paired test.
        confidence: Confidence of the paired test ([`behind`]).

    Returns:
        ``{"total", "samples", "pruned", "raced"}``; a stopped candidate's total is the partial sum (a lower bound
        of its real total, because every per-sample loss is non-negative) and ``raced`` says whether the paired
        test (True) or the exact bound (False) stopped it.
    """
    total, done, seen = 0.0, 0, []
    for batch in batch_losses:
        total += math.fsum(loss for _, loss in batch)
        done += len(batch)
        if done >= num_samples:
            break
        if total > threshold:
            return {"total": total, "samples": done, "pruned": True, "raced": False}
        if reference is not None:
            seen += [(loss, reference[i]) for i, loss in batch]
            unseen = math.fsum(reference) - math.fsum(r for _, r in seen)
            if behind(seen, unseen, confidence):
                return {"total": total, "samples": done, "pruned": True, "raced": True}
    return {"total": total, "samples": done, "pruned": False, "raced": False}


class FactorScorer:
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
                yield list(zip(index, values, strict=True))

    def __call__(self, long_factor: Sequence[float], critical_dim: int | None, threshold: float,
                 long_mscale: float | None = None, reference: Sequence[float] | None = None,
                 confidence: float = 0.95) -> dict:
        """Score `long_factor` (with `long_mscale`, default LongRoPE's): ``total`` (sum of per-sample mean NLLs),
        ``samples`` scored, ``pruned`` / ``raced`` ([`accumulate`]), and the per-sample ``losses`` (by sample index)
        of a candidate scored in full."""
        extend(self.model, long_factor, max_position_embeddings=self.target_length, critical_dim=critical_dim,
               long_mscale=long_mscale)
        losses: dict[int, float] = {}
        result = accumulate(self._batches(losses), len(self.order), threshold, reference, confidence)
        if not result["pruned"]:
            result["losses"] = [losses[i] for i in range(len(self.order))]
        return result
