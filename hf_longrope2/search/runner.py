"""``hf-longrope2 search``: needle-driven evolutionary search of the LongRoPE2 rescale factors.

```bash
hf-longrope2 search --model HuggingFaceTB/SmolLM2-135M --target-length 32768 --output-dir smollm2-32k
accelerate launch recipes/search.py --config recipes/smollm2-135m-32k/search.yaml   # one replica per process
```

The search (paper sections 2-4): candidates ``(d_rcd, tail)`` from [`~hf_longrope2.search.space`] are scored
by needle-driven perplexity (``exp`` of the mean answer-token NLL over the needle samples); the best
``--parents`` survive each iteration (elitist) and breed mutants and crossovers. PI / NTK / YaRN are scored
as reference seeds and, projected onto the search space, join the initial population.

Evaluation is lean: only answer positions reach the output head, ``use_cache=False``, a candidate seen before
is never re-scored, and a candidate whose partial NLL sum already exceeds the current ``k``-th best total is
stopped early (exact: per-sample losses are non-negative, so it could not have become a parent). Candidates
are scored in fixed-size steps, spread over processes and gathered; the pruning threshold only changes
between steps, so the result does not depend on the number of processes. The state is saved atomically after
every step; ``--resume`` continues a killed search to the same result.

The output folder is a complete extended model (weights hard-linked from the source when possible) with
``search_log.json``, ``search_progress.png`` and ``factors.png``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_VERSION = 2  # 2: reference seeds carry their own long_mscale
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class SearchArguments:
    model: str = field(default="", metadata={"help": "Hub id or local folder of a supported causal LM (required)"})
    target_length: int = field(default=0, metadata={"help": "Target context length in tokens (required)"})
    output_dir: str = field(default="", metadata={"help": "Folder for the extended model (required; must be new)"})
    dataset: str = field(
        default="emozilla/pg19",
        metadata={
            "help": "Haystack source: Hub dataset id, a local .txt/.md/.jsonl/.json/.parquet file or folder, or "
            "builtin:pydoc / builtin:stdlib (offline). Default: PG19 (the paper's choice)"
        },
    )
    dataset_split: str = field(default="validation", metadata={"help": "Split of a Hub dataset"})
    dataset_config: str | None = field(default=None, metadata={"help": "Config name of a Hub dataset"})
    text_column: str = field(default="text", metadata={"help": "Column holding the text (Hub, jsonl, json, parquet)"})
    num_samples: int = field(default=10, metadata={"help": "Needle samples, one haystack document each (paper: 10)"})
    population: int = field(default=64, metadata={"help": "Population size P (paper: 64)"})
    iterations: int = field(default=40, metadata={"help": "Evolution iterations after the initial population"})
    mutation_prob: float = field(default=0.3, metadata={"help": "Per-pair mutation / crossover probability"})
    parents: int = field(default=32, metadata={"help": "Elitist parents kept per iteration (at most P/2 is used)"})
    critical_dims: str | None = field(
        default=None,
        metadata={
            "help": "d_rcd values to search: 'LO-HI' or 'a,b,c'. Default: from the 10-period bound to the "
            "theoretical critical dimension"
        },
    )
    objective: str = field(
        default="needle", metadata={"help": "needle (answer-token NLL) or ppl (every token; the paper's ablation)"}
    )
    max_depth: float = field(default=0.5, metadata={"help": "Needle depths spread over [0, max_depth] of the haystack"})
    seed: int = field(default=0, metadata={"help": "Seed of the samples and of the evolution"})
    dtype: str = field(default="auto", metadata={"help": f"One of {DTYPES}; auto = bfloat16 on GPU, float32 on CPU"})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, eager, flash_attention_2, ...; default: the model's default"}
    )
    batch_size: int = field(default=1, metadata={"help": "Samples per forward pass"})
    candidates_per_step: int = field(
        default=16,
        metadata={
            "help": "Candidates scored between state saves and pruning-threshold updates; spread over processes. "
            "Results do not depend on the number of processes, but do on this value"
        },
    )
    prune: bool = field(default=True, metadata={"help": "Exact early rejection of hopeless candidates"})
    resume: bool = field(default=False, metadata={"help": "Continue from the state in OUTPUT_DIR.search-state"})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})

    def __post_init__(self) -> None:
        for name in ("model", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} is required")
        if self.target_length <= 0:
            raise ValueError(f"--target-length must be a positive number of tokens, got {self.target_length}")
        checks = {
            "num_samples": self.num_samples >= 1,
            "population": self.population >= 2,
            "iterations": self.iterations >= 0,
            "parents": self.parents >= 1,
            "batch_size": self.batch_size >= 1,
            "candidates_per_step": self.candidates_per_step >= 1,
            "mutation_prob": 0.0 < self.mutation_prob <= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')}: invalid value {getattr(self, name)!r}")
        if self.objective not in ("needle", "ppl"):
            raise ValueError(f"--objective must be 'needle' or 'ppl', got {self.objective!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def state_dir(self) -> Path:
        return Path(f"{os.path.normpath(self.output_dir)}.search-state")

    def result_settings(self) -> dict:
        """The settings a resumed search must share with the state it continues."""
        skip = {"resume", "overwrite", "output_dir"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def parse_critical_dims(spec: str | None, low: int, high: int, half: int) -> list[int]:
    """`spec` 'LO-HI' or 'a,b,c' (or None: ``[low, high]``) as a sorted list inside ``[0, half)``."""
    if spec is None:
        values = list(range(low, min(high, half - 1) + 1))
    else:
        try:
            if "-" in spec:
                lo, hi = (int(x) for x in spec.split("-"))
                values = list(range(lo, hi + 1))
            else:
                values = [int(x) for x in spec.split(",")]
        except ValueError as exc:
            raise ValueError(f"--critical-dims must be 'LO-HI' or 'a,b,c', got {spec!r}") from exc
    bad = [v for v in values if not 0 <= v < half]
    if not values or bad:
        raise ValueError(f"--critical-dims must lie in [0, {half - 1}] (rotary pairs), got {spec!r}")
    return sorted(set(values))


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
    """Scores long-factor vectors on fixed samples with one model replica (see module docstring).

    Samples are scored in ``order`` (set by the search to hardest-first, from the best reference seed's
    per-sample losses), so a hopeless candidate's partial sum crosses the pruning threshold as early as possible.
    """

    def __init__(self, model, samples, target_length: int, batch_size: int = 1):
        self.model, self.samples, self.target_length, self.batch_size = model, samples, target_length, batch_size
        self.order = list(range(samples.input_ids.shape[0]))

    def _batches(self, losses: dict[int, float]):
        import torch

        from ..losses import labelled_nll

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
        from ..extension import extend

        extend(self.model, long_factor, max_position_embeddings=self.target_length, critical_dim=critical_dim,
               long_mscale=long_mscale)
        losses: dict[int, float] = {}
        result = accumulate(self._batches(losses), len(self.order), threshold)
        if not result["pruned"]:
            result["losses"] = [losses[i] for i in range(len(self.order))]
        return result


class Search:
    """The evolutionary loop over a [`SearchSpace`], with its state as a JSON-serialisable dict."""

    def __init__(self, args: SearchArguments, space, rotary_dim: int, evaluate, distributed, state: dict):
        self.args, self.space, self.rotary_dim = args, space, rotary_dim
        self.evaluate, self.distributed, self.state = evaluate, distributed, state
        self.parents = min(args.parents, args.population // 2)
        self.rng = random.Random()
        self.rng.setstate(_rng_from_json(state["rng"]))
        self.bar = None

    @staticmethod
    def new_state(args: SearchArguments, rng: random.Random, seeds: dict[str, dict]) -> dict:
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
        if not self.args.prune or len(ranked) < self.parents:
            return math.inf
        return self.state["evaluated"][ranked[self.parents - 1]]["total"]

    def score(self, total: float) -> float:
        return math.exp(total / self.args.num_samples)

    def best(self) -> tuple[str, dict]:
        key = self.ranked()[0]
        return key, self.state["evaluated"][key]

    # -- generation --------------------------------------------------------------------------------------------
    def generate(self) -> list[str]:
        from .space import Candidate

        seen = set(self.state["evaluated"])
        if self.state["iteration"] == 0:
            extra = [
                self.space.project(s["long_factor"], self.space.critical_dims[-1]) for s in self.state["seeds"].values()
            ]
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
    def run_jobs(self, jobs: list[tuple], threshold: float) -> list[dict]:
        """Score `jobs` (key, long_factor, critical_dim[, long_mscale]) spread over processes; every process gets
        every result."""
        rank, world = self.distributed.process_index, self.distributed.num_processes
        mine = [(i, self.evaluate(*job[1:3], threshold, *job[3:])) for i, job in enumerate(jobs) if i % world == rank]
        if world > 1:
            from accelerate.utils import gather_object

            mine = gather_object(mine)
        return [result for _, result in sorted(mine, key=lambda item: item[0])]

    def save(self, started: float) -> float:
        now = time.perf_counter()
        self.state["wall_time_s"] += now - started
        self.state["rng"] = _rng_to_json(self.rng.getstate())
        if self.distributed.is_main_process:
            from ..utils.atomic import write_json_atomically

            self.args.state_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomically(self.args.state_dir / "state.json", self.state)
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
        from tqdm.auto import tqdm

        from .space import Candidate

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
                for c, result in zip(candidates, self.run_jobs(jobs, self.threshold()), strict=True):
                    state["evaluated"][c.key] = {
                        "critical_dim": c.critical_dim,
                        "total": result["total"],
                        "score": None if result["pruned"] else self.score(result["total"]),
                        "pruned": result["pruned"],
                        "samples": result["samples"],
                        "iteration": state["iteration"],
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
                    f"{sum(r['pruned'] for r in this)} stopped early"
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


def distributed_state():
    """accelerate's process state; on a machine without CUDA (or with ACCELERATE_USE_CPU=1) processes use gloo."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def load_model(args: SearchArguments, device):
    import torch
    from transformers import AutoModelForCausalLM

    if args.dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    kwargs = {"dtype": dtype}
    if args.attn_implementation:
        kwargs["attn_implementation"] = args.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    return model.to(device).eval()


def geometry(model_name: str, target_length: int) -> dict:
    """Rotary dimension, base and original window of `model_name`, validated for a search to `target_length`."""
    from transformers import AutoConfig

    from .. import factors
    from ..modeling.modeling_longrope2 import architecture_for, longrope2_parameters
    from ..modeling.rope import ROPE_TYPE, rotary_dim_of

    config = AutoConfig.from_pretrained(model_name)
    architecture_for(config.model_type)  # ValueError listing the supported types (e.g. for GPT-2)
    params = longrope2_parameters(config)
    rope_type = params.get("rope_type", "default")
    if rope_type not in ("default", ROPE_TYPE):
        raise ValueError(
            f"{model_name} uses rope_type {rope_type!r}; the search starts from the original RoPE ('default') or a "
            f"longrope2 model"
        )
    original = int(params.get("original_max_position_embeddings", config.max_position_embeddings))
    if target_length <= original:
        raise ValueError(
            f"--target-length ({target_length}) must be larger than the model's original window ({original})"
        )
    dim, theta = rotary_dim_of(config, params), float(params["rope_theta"])
    return {
        "rotary_dim": dim,
        "rope_theta": theta,
        "original_max_position_embeddings": original,
        "scale": target_length / original,
        "theoretical_critical_dim": factors.critical_dimension(dim, theta, original),
        "ten_period_dim": factors.ten_period_dimension(dim, theta, original),
    }


def write_output(args, search: Search, model, tokenizer, geo: dict, seeds: dict, started_at: float) -> Path:
    """The extended model folder plus ``search_log.json`` and the two PNGs, written atomically."""
    from ..extension import extend, save_extended
    from ..plots import plot_factor_curves, plot_search_progress
    from ..publish.cards import write_model_card
    from ..utils.atomic import save_atomically, write_json_atomically
    from ..utils.environment import versions
    from .space import Candidate

    state = search.state
    best_key, best = search.best()
    best_candidate = Candidate.from_key(best_key)
    long_factor = best_candidate.long_factor(geo["rotary_dim"])
    extend(model, long_factor, max_position_embeddings=args.target_length, critical_dim=best_candidate.critical_dim)
    log = {
        "settings": asdict(args),
        "versions": versions(),
        "geometry": geo,
        "num_processes": search.distributed.num_processes,
        "device": str(model.device),
        "wall_time_s": state["wall_time_s"],
        "sample_forwards": state["sample_forwards"],
        "duplicates_skipped": state["duplicates_skipped"],
        "best": {"critical_dim": best_candidate.critical_dim, "long_factor": long_factor, "score": best["score"]},
        "seeds": {name: {"score": s["score"], "long_factor": s["long_factor"], "long_mscale": s.get("long_mscale"),
                         "losses": s.get("losses")}
                  for name, s in state["seeds"].items()},
        "sample_order": state.get("sample_order"),
        "best_per_iteration": state["best_per_iteration"],
        "evaluated": [
            {"critical_dim": r["critical_dim"], "tail": [x / 100 for x in Candidate.from_key(k).tail], **r, "key": k}
            for k, r in state["evaluated"].items()
        ],
    }
    better = sorted(name for name, s in state["seeds"].items() if s["score"] < best["score"])
    log["seeds_better_than_best"] = better
    if better:
        print(
            f"note: the reference seed(s) {better} scored better than the best searched candidate "
            f"({best['score']:.4g}); the LongRoPE2 space (NTK-style below d_rcd, tail in [s, 2s]) cannot represent "
            "them. Widen --critical-dims, search longer, or compare after midtraining",
            file=sys.stderr,
        )
    how = {}

    def write(tmp: Path) -> None:
        how["weights"] = save_extended(model, tmp, source=args.model, tokenizer=tokenizer)
        log["weights"] = how["weights"]
        write_json_atomically(tmp / "search_log.json", log)
        plot_search_progress([b["score"] for b in state["best_per_iteration"]], tmp / "search_progress.png")
        curves = {"longrope2": long_factor, **{name: seed["long_factor"] for name, seed in seeds.items()}}
        plot_factor_curves(curves, tmp / "factors.png", best_candidate.critical_dim, geo["theoretical_critical_dim"])
        write_model_card(tmp, base_model=args.model, search=log)

    out = save_atomically(args.output_dir, write, overwrite=args.overwrite)
    print(
        f"best score {best['score']:.4f} (d_rcd {best_candidate.critical_dim}); seeds: "
        + ", ".join(f"{n} {s['score']:.4f}" for n, s in state["seeds"].items())
        + f"; weights {how['weights']}; {time.perf_counter() - started_at:.1f}s -> {out}"
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hf-longrope2 search`` and ``recipes/search.py``."""
    from transformers import AutoTokenizer

    from ..data.needles import NeedleSettings, needle_samples
    from ..factors import METHODS, baseline
    from ..utils.arguments import parse_dataclass
    from ..utils.atomic import check_output_dir
    from ..utils.loading import model_source, read_json
    from .space import SearchSpace

    started_at = time.perf_counter()
    argv = sys.argv[1:] if argv is None else argv
    args = parse_dataclass(SearchArguments, argv, "hf-longrope2 search", "Search LongRoPE2 rescale factors.")
    distributed = distributed_state()
    check_output_dir(args.output_dir, args.overwrite)
    state_file = args.state_dir / "state.json"
    if args.resume and not state_file.exists():
        raise FileNotFoundError(f"--resume: no search state at {state_file}")
    if not args.resume and state_file.exists():
        raise FileExistsError(
            f"a previous search left its state in {args.state_dir}; pass --resume to continue it, or delete the folder"
        )
    args.model = model_source(args.model)
    if args.resume:
        state = read_json(state_file, "--resume: the search state")
        if not isinstance(state, dict) or "settings" not in state:
            raise ValueError(f"--resume: {state_file} is not a search state (no 'settings'); delete {args.state_dir} "
                             "and start again")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"--resume: {state_file} has state version {state.get('version')}, this hf-longrope2 "
                             f"writes {STATE_VERSION}; delete {args.state_dir} and start again")
        differing = sorted(k for k, v in args.result_settings().items() if state["settings"].get(k) != v)
        if differing:
            raise ValueError(f"--resume: settings differ from the saved search in {differing}; pass the same values")
    geo = geometry(args.model, args.target_length)
    dims = parse_critical_dims(
        args.critical_dims, geo["ten_period_dim"], geo["theoretical_critical_dim"], geo["rotary_dim"] // 2
    )
    space = SearchSpace(geo["rotary_dim"], geo["scale"], dims, args.mutation_prob)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    settings = NeedleSettings(
        dataset=args.dataset,
        target_length=args.target_length,
        num_samples=args.num_samples,
        split=args.dataset_split,
        text_column=args.text_column,
        dataset_config=args.dataset_config,
        seed=args.seed,
        max_depth=args.max_depth,
        objective=args.objective,
    )
    samples = needle_samples(tokenizer, settings)
    seeds = {
        m: baseline(m, geo["rotary_dim"], geo["rope_theta"], geo["original_max_position_embeddings"], args.target_length)
        for m in METHODS
    }
    if not args.resume:
        state = Search.new_state(args, random.Random(args.seed), seeds)
    if args.parents > args.population // 2 and distributed.is_main_process:
        print(f"note: --parents {args.parents} > population/2; using {args.population // 2}", file=sys.stderr)
    model = load_model(args, distributed.device)
    evaluate = Evaluator(model, samples, args.target_length, args.batch_size)
    search = Search(args, space, geo["rotary_dim"], evaluate, distributed, state)
    if distributed.is_main_process:
        print(
            f"search {args.model}: {geo['original_max_position_embeddings']} -> {args.target_length} tokens, "
            f"d_rcd in {dims}, {args.num_samples} {args.objective} samples, {distributed.num_processes} process(es)"
            + (f", resuming at iteration {state['iteration']}" if args.resume else "")
        )
    search.run()
    if distributed.is_main_process:
        write_output(args, search, model, tokenizer, geo, seeds, started_at)
        shutil.rmtree(args.state_dir, ignore_errors=True)
    distributed.wait_for_everyone()
    return 0
