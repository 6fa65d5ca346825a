"""The evolutionary loop of the search (paper section 4) and its resumable state.

```python
>>> search = Search(config, space, rotary_dim, evaluate, distributed, Search.new_state(config, rng, seeds))
>>> state = search.run()        # reference seeds first, then ``iterations`` generations; saved after every step
```

The best ``parents`` candidates survive each iteration (elitist) and breed mutants and crossovers
([`~hf_longrope2.search.space.SearchSpace`]); PI / NTK / YaRN are scored as reference seeds (their own factors and
attention factor) and join the initial population: exactly where the space can represent them (then they are
always scored in full, so the search's best is never worse than them), projected onto the space otherwise.
Candidates race ([`~hf_longrope2.search.scoring.accumulate`]): one whose losses so far say it cannot become a
parent is dropped before its last samples. Candidates are scored in fixed-size steps spread over processes
and gathered; the pruning threshold only changes between steps, so the result does not depend on the number of
processes. The state is a JSON-serialisable dict written atomically after every step, so ``--resume`` continues
a killed search to the same result.
"""

from __future__ import annotations

import math
import random
import time

from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .config import SearchConfig
from .space import Candidate

STATE_VERSION = 4  # 2: seeds carry their own long_mscale; 3: spaces, racing, per-sample losses; 4: "inputs" by content


class Search:
    """The evolutionary loop over a [`SearchSpace`], with its state as a JSON-serialisable dict."""

    def __init__(self, args: SearchConfig, space, rotary_dim: int, evaluate, distributed, state: dict):
        self.args, self.space, self.rotary_dim = args, space, rotary_dim
        self.evaluate, self.distributed, self.state = evaluate, distributed, state
        self.parents = min(args.parents, args.population // 2)
        self.rng = random.Random()
        self.rng.setstate(_rng_from_json(state["rng"]))
        self.bar = None

    @staticmethod
    def new_state(args: SearchConfig, rng: random.Random, seeds: dict[str, dict]) -> dict:
        return {
            "version": STATE_VERSION,
            "settings": args.result_settings(),
            "rng": _rng_to_json(rng.getstate()),
            "iteration": 0,
            "pending": [],
            "pending_generated": False,
            "seeds": {name: dict(seed) for name, seed in seeds.items()},
            "evaluated": {},
            "best_per_iteration": [],
            "sample_forwards": 0,
            "duplicates_skipped": 0,
            "wall_time_s": 0.0,
            "done": False,
        }

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def ranked(self) -> list[str]:
        done = [(r["total"], key) for key, r in self.state["evaluated"].items() if not r["pruned"]]
        return [key for _, key in sorted(done)]

    def threshold(self) -> float:
        ranked = self.ranked()
        if self.args.racing == "off" or len(ranked) < self.parents:
            return math.inf
        return self.state["evaluated"][ranked[self.parents - 1]]["total"]

    def reference(self) -> list[float] | None:
        """The ``k``-th best candidate's per-sample losses: what the paired racing test compares against."""
        ranked = self.ranked()
        if self.args.racing != "paired" or len(ranked) < self.parents:
            return None
        return self.state["evaluated"][ranked[self.parents - 1]].get("losses")

    def contained_seeds(self) -> dict[str, str]:
        """Seed name -> the key of the candidate equal to it, for the seeds this space can represent."""
        return {name: seed["candidate"] for name, seed in self.state["seeds"].items() if seed.get("candidate")}

    def score(self, total: float) -> float:
        return math.exp(total / self.args.num_samples)

    def best(self) -> tuple[str, dict]:
        key = self.ranked()[0]
        return key, self.state["evaluated"][key]

    # -- generation --------------------------------------------------------------------------------------------
    def generate(self) -> list[str]:
        seen = set(self.state["evaluated"])
        if self.state["iteration"] == 0:
            extra = []
            for seed in self.state["seeds"].values():
                exact = self.space.represent(seed["long_factor"])
                seed["candidate"] = exact.key if exact is not None else None
                extra.append(exact or self.space.project(seed["long_factor"], self.space.critical_dims[-1]))
            return [c.key for c in self.space.initial_population(self.rng, self.args.population, seen, extra)]
        parents = [Candidate.from_key(k) for k in self.ranked()[: self.parents]]
        children: list[str] = []
        wanted = self.args.population - self.parents
        mutants = wanted // 2
        for _ in range(wanted * 10):
            if len(children) >= wanted:
                break
            if len(children) < mutants or len(parents) < 2:
                child = self.space.mutate(self.rng, self.rng.choice(parents), seen)
            else:
                first, second = self.rng.sample(parents, 2)
                child = self.space.crossover(self.rng, first, second, seen)
            if child is None:
                self.state["duplicates_skipped"] += 1
                continue
            seen.add(child.key)
            children.append(child.key)
        return children

    # -- evaluation --------------------------------------------------------------------------------------------
    def run_jobs(self, jobs: list[tuple], threshold: float, reference: list[float] | None = None,
                 exempt: frozenset[str] = frozenset()) -> list[dict]:
        """Score `jobs` (key, long_factor, critical_dim[, long_mscale]) spread over processes; every process gets
        every result. Keys in `exempt` are scored in full (no racing)."""
        rank, world = self.distributed.process_index, self.distributed.num_processes

        def score(job: tuple) -> dict:
            if job[0] in exempt:
                return self.evaluate(*job[1:3], math.inf, *job[3:])
            return self.evaluate(*job[1:3], threshold, *job[3:], reference=reference,
                                 confidence=self.args.racing_confidence)

        mine = [(i, score(job)) for i, job in enumerate(jobs) if i % world == rank]
        if world > 1:
            mine = gather_object(mine)
        return [result for _, result in sorted(mine, key=lambda item: item[0])]

    def save(self, started: float) -> float:
        now = time.perf_counter()
        self.state["wall_time_s"] += now - started
        self.state["rng"] = _rng_to_json(self.rng.getstate())
        if self.distributed.is_main_process:
            self.args.run_folder.save_state(self.state)
        return now

    def run(self) -> dict:
        """Score the references, then evolve; the state is saved after every step (resumable after Ctrl-C)."""
        self.bar = None
        try:
            return self._run()
        finally:
            if self.bar is not None:
                self.bar.close()  # before any message about an interruption

    def _run(self) -> dict:
        args, state = self.args, self.state
        children_per_iteration = args.population - self.parents
        total = len(state["seeds"]) + args.population + args.iterations * children_per_iteration
        done = sum(1 for s in state["seeds"].values() if "total" in s) + len(state["evaluated"])
        main = self.distributed.is_main_process
        self.bar = tqdm(total=total, initial=done, desc="search", unit="cand", disable=not main, dynamic_ncols=True)
        started = time.perf_counter()
        todo = [name for name, s in state["seeds"].items() if "total" not in s]
        if todo:
            # each reference is scored as its method defines it: its own factors and its own attention factor
            jobs = [(name, state["seeds"][name]["long_factor"], None, state["seeds"][name].get("long_mscale"))
                    for name in todo]
            for name, result in zip(todo, self.run_jobs(jobs, math.inf), strict=True):
                state["seeds"][name].update(total=result["total"], score=self.score(result["total"]))
                state["seeds"][name]["losses"] = result.get("losses")
                state["sample_forwards"] += result["samples"]
            best_seed = min(state["seeds"].values(), key=lambda s: s["total"])
            if best_seed.get("losses"):  # hardest samples first: early rejection triggers sooner
                state["sample_order"] = sorted(range(len(best_seed["losses"])), key=lambda j: -best_seed["losses"][j])
            self.bar.update(len(todo))
            started = self.save(started)
        if state.get("sample_order") and hasattr(self.evaluate, "order"):
            self.evaluate.order = list(state["sample_order"])
        while state["iteration"] <= args.iterations:
            if not state["pending_generated"]:
                state["pending"], state["pending_generated"] = self.generate(), True
                started = self.save(started)
            while state["pending"]:
                step = state["pending"][: args.candidates_per_step]
                candidates = [Candidate.from_key(k) for k in step]
                jobs = [(c.key, c.long_factor(self.rotary_dim), c.critical_dim) for c in candidates]
                exempt = frozenset(self.contained_seeds().values())
                results = self.run_jobs(jobs, self.threshold(), self.reference(), exempt)
                for c, result in zip(candidates, results, strict=True):
                    state["evaluated"][c.key] = {
                        "critical_dim": c.critical_dim,
                        "total": result["total"],
                        "score": None if result["pruned"] else self.score(result["total"]),
                        "pruned": result["pruned"],
                        "raced": result.get("raced", False),
                        "samples": result["samples"],
                        "iteration": state["iteration"],
                        "losses": result.get("losses"),
                    }
                    state["sample_forwards"] += result["samples"]
                state["pending"] = state["pending"][len(step) :]
                self.bar.update(len(step))
                best_key, best = self.best()
                self.bar.set_postfix(best=f"{best['score']:.4g}", d_rcd=best["critical_dim"])
                started = self.save(started)
            best_key, best = self.best()
            state["best_per_iteration"].append({"iteration": state["iteration"], "key": best_key, "score": best["score"]})
            this = [r for r in state["evaluated"].values() if r["iteration"] == state["iteration"]]
            if main:
                self.bar.write(
                    f"iteration {state['iteration']}/{args.iterations}: best {best['score']:.4f} "
                    f"(d_rcd {best['critical_dim']}), {len(this)} new candidates, "
                    f"{sum(r['pruned'] for r in this)} stopped early ({sum(r['raced'] for r in this)} by the paired test)"
                )
            state["iteration"] += 1
            state["pending_generated"] = False
            started = self.save(started)
        state["done"] = True
        self.save(started)
        self.bar.close()
        return state


def _rng_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _rng_from_json(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])
