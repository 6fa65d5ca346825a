"""Search-space operators: every candidate valid (grid, range, monotone), children new, seeded determinism."""

from __future__ import annotations

import math
import random

import pytest

from hf_longrope2 import factors
from hf_longrope2.search.space import Candidate, SearchSpace


def _space() -> SearchSpace:
    return SearchSpace(rotary_dim=64, scale=4.0, critical_dims=range(12, 21), mutation_prob=0.3)


def test_candidates_stay_valid_under_every_operator():
    space, rng = _space(), random.Random(0)
    population = space.initial_population(rng, 64)
    assert len(population) == 64 and len({c.key for c in population}) == 64
    seen = {c.key for c in population}
    for _ in range(300):
        child = space.mutate(rng, rng.choice(population), seen)
        other = space.crossover(rng, rng.choice(population), rng.choice(population), seen)
        for c in (child, other):
            assert c is not None and space.is_valid(c) and c.key not in seen
            seen.add(c.key)
            population.append(c)
    dims = {c.critical_dim for c in population}
    assert dims == set(range(12, 21))  # d_rcd is searched across its whole range
    for c in population:
        lf = c.long_factor(64)
        assert len(lf) == 32 and lf[0] == 1.0
        assert factors.is_monotone(lf, c.critical_dim) and all(400 <= x <= 800 for x in c.tail)
        assert math.isclose(lf[c.critical_dim - 1], lf[c.critical_dim] ** ((c.critical_dim - 1) / c.critical_dim))


def test_seeded_determinism_and_key_round_trip():
    a = _space().initial_population(random.Random(7), 32)
    b = _space().initial_population(random.Random(7), 32)
    assert a == b and a != _space().initial_population(random.Random(8), 32)
    assert all(Candidate.from_key(c.key) == c for c in a)


def test_projected_baselines_are_valid():
    space = _space()
    for vector in (factors.pi(64, 4.0), factors.ntk(64, 4.0), factors.yarn(64, 1e5, 4.0, 8192)):
        c = space.project(vector, 20)
        assert space.is_valid(c) and c.critical_dim == 20
    assert space.project(factors.pi(64, 4.0), 20).tail == (400,) * 12


def test_invalid_space_and_exhausted_parent():
    with pytest.raises(ValueError, match=r"subset of \[0, 31\]"):
        SearchSpace(64, 4.0, [32])
    tiny = SearchSpace(4, 1.0, [1], mutation_prob=1.0)  # one pair on a 101-point grid
    parent = Candidate(1, (100,))
    seen = {f"1:{x}" for x in range(100, 201)}
    assert tiny.mutate(random.Random(0), parent, seen) is None  # nothing new is left: no endless loop


def _seeds(scale: float = 4.0) -> dict[str, list[float]]:
    return {"pi": factors.pi(64, scale), "ntk": factors.ntk(64, scale), "yarn": factors.yarn(64, 1e5, scale, 8192)}


def test_longrope_space_represents_every_baseline_and_starts_from_them():
    space = SearchSpace(64, 4.0, range(12, 21), kind="longrope")
    assert space.critical_dims == [0] and (space.low, space.high) == (100, 800)
    seeds = {name: space.represent(vector) for name, vector in _seeds().items()}
    for name, candidate in seeds.items():
        assert candidate is not None, name
        assert max(abs(a - b) for a, b in zip(candidate.long_factor(64), _seeds()[name], strict=True)) <= 0.005
    population = space.initial_population(random.Random(0), 32, extra=list(seeds.values()))
    assert population[:3] == list(seeds.values()) and len(population) == 32
    for c in population:  # every pair searched: free below any d_rcd, monotone, in [1, 2s]
        assert space.is_valid(c) and factors.is_monotone(c.tail) and all(100 <= x <= 800 for x in c.tail)
    # LongRoPE starts from the seeds and their mutants only: no flat (PI-like) tails other than PI itself
    assert [c for c in population if len(set(c.tail)) == 1] == [seeds["pi"]]


def test_longrope2_space_cannot_represent_pi_or_yarn_but_ntk_at_the_last_pair():
    space = _space()
    assert space.represent(factors.pi(64, 4.0)) is None and space.represent(factors.yarn(64, 1e5, 4.0, 8192)) is None
    assert space.represent(factors.ntk(64, 4.0)) is None  # d_rcd 12-20: NTK's shape needs d_rcd = 31
    wide = SearchSpace(64, 4.0, range(12, 32))
    ntk = wide.represent(factors.ntk(64, 4.0))
    assert ntk is not None and ntk.critical_dim == 31 and ntk.tail == (400,)
    with pytest.raises(ValueError, match="search space must be one of"):
        SearchSpace(64, 4.0, [12], kind="yarn")


def test_t_quantile_matches_the_tables():
    from hf_longrope2.search.scoring import t_quantile

    # one-sided Student-t quantiles from the standard tables
    for confidence, df, table in ((0.95, 1, 6.3138), (0.95, 2, 2.9200), (0.95, 5, 2.0150), (0.95, 30, 1.6973),
                                  (0.90, 3, 1.6377), (0.80, 1, 1.3764)):
        assert t_quantile(confidence, df) == pytest.approx(table, abs=1e-4)


def test_paired_racing_rule():
    from hf_longrope2.search.scoring import behind

    reference = [4.0, 2.0, 1.0, 0.5]
    twice = [(2 * r * (1 + 0.01 * i), r) for i, r in enumerate(reference)]  # 2x the reference on every sample
    assert not behind(twice[:1], sum(reference[1:]), 0.95)  # one sample: no test
    assert behind(twice[:2], sum(reference[2:]), 0.95)
    mixed = [(6.0, 4.0), (1.0, 2.0)]  # 1.5x as bad, then twice as good: undecided
    assert not behind(mixed, sum(reference[2:]), 0.95)
    better = [(0.5 * r, r) for r in reference[:3]]
    assert not behind(better, reference[3], 0.95)
    assert not behind(twice[:3], 0.0, 0.95)  # nothing left to score: the exact bound decides
