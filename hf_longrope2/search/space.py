"""The LongRoPE2 search space and its evolutionary operators (paper sections 2-3), pure Python.

```python
>>> import random
>>> space = SearchSpace(rotary_dim=64, scale=4.0, critical_dims=range(12, 21))
>>> rng = random.Random(0)
>>> population = space.initial_population(rng, size=64)
>>> child = space.mutate(rng, population[0], seen={c.key for c in population})
>>> child.long_factor(64)[:3]          # NTK-style left part: starts at 1.0
```

Two spaces ([`SPACES`]):

- ``longrope2`` (the LongRoPE2 paper): a candidate is ``(d_rcd, tail)``: pairs ``i >= d_rcd`` take the tail, a
  non-decreasing sequence on the 0.01 grid inside ``[s, 2s]`` (stored as integers in hundredths, so equality is
  exact); pairs below ``d_rcd`` are ``tail[0] ** (i / d_rcd)`` ([`hf_longrope2.factors.longrope2`]).
- ``longrope`` (the LongRoPE paper and its code): every pair is searched, non-decreasing on the 0.01 grid inside
  ``[1, 2s]``; stored as ``d_rcd = 0`` with the whole vector as the tail. Its initial population is PI / NTK /
  YaRN and their mutants, so it contains those shapes (LongRoPE2's space contains none of them at usual ``d_rcd``).

Every operator takes an explicit ``random.Random``, so a search is a pure function of its seed and its scores.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import factors

SPACES = ("longrope2", "longrope")
MAX_TRIES = 100  # attempts to produce a new, valid child before giving up on a parent
CROSSOVER_TRIES = 20  # failed crossovers before mutating instead (as the reference code does)


@dataclass(frozen=True, order=True)
class Candidate:
    """One point of the search space: the critical dimension and the tail in hundredths."""

    critical_dim: int
    tail: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.critical_dim}:" + ",".join(map(str, self.tail))

    @classmethod
    def from_key(cls, key: str) -> Candidate:
        dim, tail = key.split(":")
        return cls(int(dim), tuple(int(x) for x in tail.split(",")))

    def long_factor(self, rotary_dim: int) -> list[float]:
        """The full factor vector, one entry per rotary pair."""
        return factors.longrope2(rotary_dim, self.critical_dim, [x / 100 for x in self.tail])


class SearchSpace:
    """Valid candidates for extending by `scale` with `rotary_dim` rotary dimensions.

    Args:
        rotary_dim (`int`): Rotary dimension ``d``.
        scale (`float`): ``s = target length / original window``; tails live in ``[s, 2s]`` (``longrope2``) or
            ``[1, 2s]`` (``longrope``).
        critical_dims (`Iterable[int]`): Allowed ``d_rcd`` values (the paper: ``[d10_tcd, d_tcd]``); ignored by the
            ``longrope`` space, whose only value is 0 (every pair in the tail).
        mutation_prob (`float`, defaults to 0.3): Per-pair mutation / crossover probability.
        kind (`str`, defaults to ``"longrope2"``): One of [`SPACES`] (see the module docstring).
    """

    def __init__(self, rotary_dim: int, scale: float, critical_dims: Iterable[int], mutation_prob: float = 0.3,
                 kind: str = "longrope2"):
        if kind not in SPACES:
            raise ValueError(f"search space must be one of {SPACES}, got {kind!r}")
        self.kind = kind
        self.rotary_dim = rotary_dim
        self.half = rotary_dim // 2
        self.low = math.ceil(round(scale * 100, 6)) if kind == "longrope2" else 100
        self.high = math.floor(round(2 * scale * 100, 6))
        if kind == "longrope":
            critical_dims = [0]
        self.critical_dims = sorted(set(critical_dims))
        if not self.critical_dims or self.critical_dims[0] < 0 or self.critical_dims[-1] >= self.half:
            raise ValueError(
                f"critical dims must be a non-empty subset of [0, {self.half - 1}] for rotary_dim {rotary_dim}, "
                f"got {self.critical_dims}"
            )
        if not 0.0 < mutation_prob <= 1.0:
            raise ValueError(f"mutation_prob must be in (0, 1], got {mutation_prob}")
        if self.low > self.high or scale < 1.0:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.mutation_prob = mutation_prob

    def is_valid(self, candidate: Candidate) -> bool:
        tail = candidate.tail
        return (
            candidate.critical_dim in self.critical_dims
            and len(tail) == self.half - candidate.critical_dim
            and all(self.low <= x <= self.high for x in tail)
            and factors.is_monotone(tail)
        )

    def flat(self, rng: random.Random, critical_dim: int) -> Candidate:
        """A flat tail at a random grid value in ``[s, 2s]``."""
        return Candidate(critical_dim, (rng.randint(self.low, self.high),) * (self.half - critical_dim))

    def project(self, long_factor: Sequence[float], critical_dim: int) -> Candidate:
        """The nearest valid candidate to a full factor vector (e.g. PI / NTK / YaRN): clip, round, make monotone."""
        tail, previous = [], self.low
        for x in long_factor[critical_dim:]:
            value = min(self.high, max(self.low, previous, round(x * 100)))
            tail.append(value)
            previous = value
        return Candidate(critical_dim, tuple(tail))

    def represent(self, long_factor: Sequence[float], tolerance: float = 0.01) -> Candidate | None:
        """The candidate equal to `long_factor` on the 0.01 grid (every pair within `tolerance`), or None when the
        space cannot represent it (e.g. YaRN's or PI's shape in the ``longrope2`` space)."""
        for dim in reversed(self.critical_dims):
            candidate = self.project(long_factor, dim)
            if self.is_valid(candidate) and all(
                abs(a - b) <= tolerance for a, b in zip(candidate.long_factor(self.rotary_dim), long_factor, strict=True)
            ):
                return candidate
        return None

    def _mutated(self, rng: random.Random, parent: Candidate) -> Candidate:
        dim, tail = parent.critical_dim, list(parent.tail)
        if rng.random() < self.mutation_prob and len(self.critical_dims) > 1:
            position = self.critical_dims.index(dim)
            step = rng.choice([s for s in (-1, 1) if 0 <= position + s < len(self.critical_dims)])
            new_dim = self.critical_dims[position + step]
            if new_dim < dim:  # new pairs enter at the front, at most the old first value
                tail = [rng.randint(self.low, tail[0]) for _ in range(dim - new_dim)] + tail
                tail[: dim - new_dim] = sorted(tail[: dim - new_dim])
            else:
                tail = tail[new_dim - dim :]
            dim = new_dim
        for i in range(len(tail)):
            if rng.random() < self.mutation_prob:
                lower = tail[i - 1] if i > 0 else self.low
                upper = tail[i + 1] if i + 1 < len(tail) else self.high
                tail[i] = rng.randint(lower, upper)
        return Candidate(dim, tuple(tail))

    def mutate(self, rng: random.Random, parent: Candidate, seen: set[str]) -> Candidate | None:
        """A valid child of `parent` not in `seen` (retried up to ``MAX_TRIES`` times; None if none found).

        With probability ``mutation_prob`` ``d_rcd`` moves to a neighbouring allowed value; then each tail pair
        is redrawn, with the same probability, on the grid between its neighbours so monotonicity holds.
        """
        for _ in range(MAX_TRIES):
            child = self._mutated(rng, parent)
            if child.key not in seen and self.is_valid(child):
                return child
        return None

    def crossover(self, rng: random.Random, first: Candidate, second: Candidate, seen: set[str]) -> Candidate | None:
        """Per pair, take `second`'s value with probability 0.5; the child keeps `first`'s ``d_rcd``.

        Pairs of `first`'s tail that lie below `second`'s ``d_rcd`` keep `first`'s value. A child that is not
        monotone or already seen is rejected; after ``CROSSOVER_TRIES`` rejections `first` is mutated instead.
        """
        offset = first.critical_dim - second.critical_dim
        for _ in range(CROSSOVER_TRIES):
            tail = list(first.tail)
            for i in range(len(tail)):
                j = i + offset
                if 0 <= j < len(second.tail) and rng.random() < 0.5:
                    tail[i] = second.tail[j]
            child = Candidate(first.critical_dim, tuple(tail))
            if child.key not in seen and self.is_valid(child):
                return child
        return self.mutate(rng, first, seen)

    def initial_population(
        self, rng: random.Random, size: int, seen: set[str] | None = None, extra: Sequence[Candidate] = ()
    ) -> list[Candidate]:
        """`extra` candidates (e.g. the baselines), then (``longrope2`` space only) flat tails for every ``d_rcd`` in
        turn, then mutants of all of these: LongRoPE starts from PI / NTK / YaRN and their mutants only."""
        seen = set() if seen is None else seen
        population: list[Candidate] = []

        def add(candidate: Candidate | None) -> None:
            if candidate is not None and candidate.key not in seen and self.is_valid(candidate):
                seen.add(candidate.key)
                population.append(candidate)

        for candidate in extra:
            if len(population) < size:
                add(candidate)
        flats = max(1, size // 2) if self.kind == "longrope2" or not population else 0
        distinct = (self.high - self.low + 1) * len(self.critical_dims)
        for attempt in range(MAX_TRIES * size):
            if len(population) >= min(size, len(extra) + flats) or attempt >= distinct * 4:
                break
            add(self.flat(rng, self.critical_dims[attempt % len(self.critical_dims)]))
        base = list(population)
        for attempt in range(MAX_TRIES * size):
            if len(population) >= size:
                break
            add(self.mutate(rng, base[attempt % len(base)], seen))
        return population
