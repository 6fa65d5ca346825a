"""Running a search: the model and samples, the loop, and the output folder (``hf-longrope2 search``).

```python
>>> from hf_longrope2.search import SearchConfig, run
>>> run(SearchConfig(model="HuggingFaceTB/SmolLM2-135M", target_length=32768, output_dir="smollm2-32k",
...                  dataset="builtin:pydoc"))
```

The output folder is a complete extended model (weights copied from the source files, cloned where the file system can) with
``search_log.json``, ``search_progress.png``, ``factors.png`` and a model card.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from transformers import AutoConfig, AutoTokenizer

from .. import factors
from ..data.needles import NeedleSettings, needle_samples
from ..extension import extend, save_extended
from ..factors import METHODS, baseline
from ..modeling.modeling_longrope2 import architecture_for
from ..modeling.rope import ROPE_TYPE, RopeGeometry
from ..plots import plot_factor_curves, plot_search_progress
from ..publish.cards import model_origin, write_model_card
from ..utils.atomic import write_json_atomically
from ..utils.environment import torch_dtype, versions
from ..utils.identity import run_identity
from ..utils.loading import load_causal_lm, model_source
from .config import SearchConfig, parse_critical_dims
from .evolution import STATE_VERSION, Search
from .scoring import FactorScorer
from .space import Candidate, SearchSpace


def distributed_state():
    """accelerate's process state; on a machine without CUDA (or with ACCELERATE_USE_CPU=1) processes use gloo."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def load_model(args: SearchConfig, device: torch.device):
    """The model to score candidates with, in the chosen dtype and attention implementation, on `device`."""
    kwargs = {"dtype": torch_dtype(args.dtype, device)}
    if args.attn_implementation:
        kwargs["attn_implementation"] = args.attn_implementation
    model = load_causal_lm(args.model, **kwargs)
    return model.to(device).eval()


def geometry(model_name: str, target_length: int) -> dict:
    """Rotary dimension, base and original window of `model_name`, validated for a search to `target_length`."""
    config = AutoConfig.from_pretrained(model_name)
    architecture_for(config.model_type)  # ValueError listing the supported types (e.g. for GPT-2)
    geometry = RopeGeometry.from_config(config)
    rope_type, original = geometry.rope_type, geometry.original_window
    if rope_type not in ("default", ROPE_TYPE):
        raise ValueError(
            f"{model_name} uses rope_type {rope_type!r}; the search starts from the original RoPE ('default') or a "
            f"longrope2 model"
        )
    if target_length <= original:
        raise ValueError(
            f"--target-length ({target_length}) must be larger than the model's original window ({original})"
        )
    dim, theta = geometry.rotary_dim, geometry.rope_theta
    return {
        "rotary_dim": dim,
        "rope_theta": theta,
        "original_max_position_embeddings": original,
        "scale": target_length / original,
        "theoretical_critical_dim": factors.critical_dimension(dim, theta, original),
        "ten_period_dim": factors.ten_period_dimension(dim, theta, original),
    }


def write_output(args: SearchConfig, search: Search, model, tokenizer, geo: dict, seeds: dict, started_at: float) -> Path:
    """The extended model folder plus ``search_log.json`` and the two PNGs, written atomically."""
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
    contained = search.contained_seeds()
    for name, key in contained.items():
        log["seeds"][name]["candidate_score"] = state["evaluated"][key]["score"]
    log["space"] = args.space
    log.update(model_origin(args.model))  # the card's base_model: a Hub id, never the path as typed
    log["seeds_in_space"] = sorted(contained)
    better = sorted(name for name, s in state["seeds"].items() if s["score"] < best["score"])
    log["seeds_better_than_best"] = better
    how = {}

    def write(tmp: Path) -> None:
        how["weights"] = save_extended(model, tmp, source=args.model, tokenizer=tokenizer)
        log["weights"] = how["weights"]
        write_json_atomically(tmp / "search_log.json", log)
        plot_search_progress([b["score"] for b in state["best_per_iteration"]], tmp / "search_progress.png")
        curves = {"longrope2": long_factor, **{name: seed["long_factor"] for name, seed in seeds.items()}}
        plot_factor_curves(curves, tmp / "factors.png", best_candidate.critical_dim, geo["theoretical_critical_dim"])
        write_model_card(tmp, base_model=args.model, search=log)

    out = args.run_folder.publish(write, overwrite=args.overwrite)
    print(
        f"best score {best['score']:.4f} (space {args.space}, d_rcd {best_candidate.critical_dim}); seeds: "
        + ", ".join(f"{n} {s['score']:.4f}" for n, s in state["seeds"].items())
        + f"; weights {how['weights']}; {time.perf_counter() - started_at:.1f}s -> {out}"
    )
    for line in better_seed_advice(args, state["seeds"], best["score"], contained):
        print(line, file=sys.stderr)
    return out


def better_seed_advice(args: SearchConfig, seeds: dict[str, dict], best_score: float,
                       contained: dict[str, str]) -> list[str]:
    """The closing lines when a reference seed (its own factors and attention factor) beat the search's best:
    which one, by how much, and the commands that give it (they are the last thing a user reads)."""
    better = sorted((s["score"], name) for name, s in seeds.items() if s["score"] < best_score)
    if not better:
        return []
    score, name = better[0]
    lines = [
        f"warning: the reference {name} ({', '.join(f'{n} {v:.4f}' for v, n in better)}) scored better than the best "
        f"{args.space}-space candidate ({best_score:.4f}) on the same samples; "
        + ("the space holds its factors but not its attention factor."
           if name in contained else f"the {args.space} space cannot represent its factors."),
        f"  to use {name}: hf-longrope2 extend --model {args.model} --method {name} --target-length "
        f"{args.target_length} --output-dir {os.path.normpath(args.output_dir)}-{name}",
    ]
    if args.space == "longrope2":
        lines.append("  or search the space that contains it (every pair, seeded with PI/NTK/YaRN): "
                     "rerun this search with --space longrope")
    return lines


def run_inputs(args: SearchConfig) -> dict:
    """The identity of a search's inputs (what a ``--resume`` must find unchanged): the model folder and the
    dataset files by content, every other setting by value (see [`run_identity`])."""
    settings = {k: v for k, v in args.result_settings().items() if k not in ("model", "dataset")}
    return run_identity({"--model": args.model}, {"--dataset": args.dataset}, settings)


def run(config: SearchConfig, *, scorer: type[FactorScorer] = FactorScorer, search_class: type[Search] = Search
        ) -> Path:
    """Search the LongRoPE2 factors of ``config.model`` and write the extended model to ``config.output_dir``.

    The entry point of ``hf-longrope2 search`` and ``recipes/search.py`` (see the package docstring). With several
    processes (``accelerate launch``) every process scores its share of each step; the main process writes.

    `scorer` and `search_class` are seams for measurements (``benchmarks/search_cost.py`` counts forwards with a
    subclass of each); the search is the same.

    Returns:
        `Path`: the output folder.

    Raises:
        ValueError: a bad model, target length or state to resume; nothing is written then.
    """
    started_at = time.perf_counter()
    distributed = distributed_state()
    folder = config.run_folder
    folder.begin(overwrite=config.overwrite, resume=config.resume)
    args = replace(config, model=model_source(config.model))  # the caller's config is left as it was
    args.parents_given = config.parents_given  # replace() passes the resolved number back in
    if args.resume:
        state, state_file = folder.read_state(), folder.state_file
        if not isinstance(state, dict) or "settings" not in state:
            raise ValueError(f"--resume: {state_file} is not a search state (no 'settings'); delete "
                             f"{folder.state_dir} and start again")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"--resume: {state_file} has state version {state.get('version')}, this hf-longrope2 "
                             f"writes {STATE_VERSION}; delete {folder.state_dir} and start again")
        folder.check_resume(run_inputs(args), state.get("inputs"))
    geo = geometry(args.model, args.target_length)
    dims = parse_critical_dims(
        args.critical_dims, geo["ten_period_dim"], geo["theoretical_critical_dim"], geo["rotary_dim"] // 2
    )
    space = SearchSpace(geo["rotary_dim"], geo["scale"], dims, args.mutation_prob, kind=args.space)
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
        state["inputs"] = run_inputs(args)
    if args.parents_given and args.parents > args.population // 2 and distributed.is_main_process:
        print(f"note: --parents {args.parents} > population/2; using {args.population // 2}", file=sys.stderr)
    model = load_model(args, distributed.device)
    evaluate = scorer(model, samples, args.target_length, args.batch_size)
    search = search_class(args, space, geo["rotary_dim"], evaluate, distributed, state)
    if distributed.is_main_process:
        print(
            f"search {args.model}: {geo['original_max_position_embeddings']} -> {args.target_length} tokens, "
            f"space {args.space}"
            + (f" (d_rcd in {dims})" if args.space == "longrope2" else " (every pair)")
            + f", racing {args.racing}, {args.num_samples} {args.objective} samples, {distributed.num_processes} process(es)"
            + (f", resuming at iteration {state['iteration']}" if args.resume else "")
        )
    search.run()
    if distributed.is_main_process:
        write_output(args, search, model, tokenizer, geo, seeds, started_at)
    distributed.wait_for_everyone()
    return Path(args.output_dir)
