"""Cost of the factor search: forward passes under racing, evaluation memory and process scaling, in one run.

    python benchmarks/search_cost.py            # writes benchmarks/results/search_cost.json (~35 min, 2 cores)
    python benchmarks/search_cost.py --help     # the settings that can be changed (defaults = the recorded run)

Everything runs offline on the CPU. The model is the shipped tiny base (``hf_longrope2.tiny.base``: Llama,
256-token window, head_dim 64, rotary dim 64), searched for 2048 tokens (8x) with the needle objective on
``builtin:pydoc`` (6 samples), as the demo does, in the ``longrope2`` space.

(a) Forward passes, for each of ``--seeds`` (one decoder row = one sample forward, counted by a forward hook):
    *Reference schedule*: a plain elitist GA as in the reference LongRoPE code, which scores every member of
    each generation's population on every sample with no early stopping: every iteration the surviving
    parents are scored again (no memo) alongside the new children. It is run: ``--racing off`` with ``Search``
    replaced by a subclass that re-scores that iteration's parents before breeding (and checks the totals are
    reproduced exactly). Its own log's ``sample_forwards`` is the memo-only schedule.
    ``forward_ratio`` = memo only / reference; ``exact_forward_ratio`` = ``--racing exact`` / reference (the
    exact bound alone: the same candidates and the same best as the reference, checked);
    ``racing_forward_ratio`` = ``--racing paired`` (the default, 95% confidence) / reference; the same at
    ``--low-confidence`` is reported as ``racing_forward_ratio_low_confidence``. Racing changes which candidates
    breed, so its best can differ: each run's best score is compared with the reference's, in units of the
    reference best's sample noise (the standard error of its mean per-sample NLL, as a factor on the score).
    Every ratio is the mean over seeds; the per-seed values are kept.
(b) ``memory_ratio`` = peak(needle evaluation, ``labelled_nll``) / peak(full logits, ``full_logits_nll``),
    new/old. Each runs once in a fresh subprocess on a random Llama (2 layers, hidden 64) with SmolLM2's
    vocabulary size (49,152), extended with YaRN factors from 2,048 to 8,192 tokens, on 8,192 random tokens
    (labels -100 except the last 8). Linux only. Peak = the kernel's high-water mark of resident memory
    (``VmHWM``), reset with ``/proc/self/clear_refs`` just before the evaluation, minus the resident memory
    at that moment: the memory the evaluation itself added.
(c) ``two_process_speedup`` = time(1 process) / time(2 processes), old/new, > 1 is a speed-up: the same
    search (seed 0, paired racing) through ``accelerate launch`` with 1 (``--cpu``) and 2 (``--multi_gpu`` with
    ``ACCELERATE_USE_CPU=1``, gloo) processes, one torch thread per process in both, timed by the ``wall_time_s``
    of each ``search_log.json`` (the search loop, without start-up); the whole subprocess time is recorded too,
    as is a single process with torch's default thread count. The 1- and 2-process runs alternate ``--repeats``
    times and the fastest of each counts. All runs must find the same best factors.

The machine's load average is recorded next to each timing: other work on a 2-core machine skews (c).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/search_cost.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, ROOT, envelope, free_port, peak_rss, run_in_fresh_process, write_results

RESULT = RESULTS / "search_cost.json"
LABELLED_TOKENS = 8

SEARCH = dict(
    target_length=2048,
    population=32,
    parents=16,
    iterations=20,
    num_samples=6,
    objective="needle",
    candidates_per_step=32,
    dataset="builtin:pydoc",
)  # critical dims: the package default (the paper's [d10_tcd, d_tcd])
MEMORY = dict(length=8192, vocab_size=49152, hidden_size=64, num_layers=2, heads=4, kv_heads=2, original=2048)
THREADS_PER_PROCESS = 1


# -- setup ---------------------------------------------------------------------------------------------------------
def search_argv(model: Path, output_dir: Path, search: dict, *extra: str) -> list[str]:
    argv = ["--model", str(model), "--output-dir", str(output_dir)]
    for key, value in search.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return [*argv, *extra]


def read_log(output_dir: Path) -> dict:
    return json.loads((output_dir / "search_log.json").read_text())


def best_of(log: dict) -> dict:
    return {"critical_dim": log["best"]["critical_dim"], "long_factor": log["best"]["long_factor"]}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def sample_noise(log: dict) -> float:
    """The best's score noise as a factor: exp(standard error of its mean per-sample NLL)."""
    best = next(e for e in log["evaluated"] if not e["pruned"] and e["score"] == log["best"]["score"])
    losses = best["losses"]
    return math.exp(statistics.stdev(losses) / math.sqrt(len(losses)))


# -- (a) forward passes --------------------------------------------------------------------------------------------
def forward_counts(model: Path, work: Path, search: dict, seed: int, low_confidence: float) -> dict:
    """Run the reference schedule and the racing modes in this process; count executed decoder forwards."""
    import torch

    from hf_longrope2.cli import parse_args
    from hf_longrope2.search import runner as search_module
    from hf_longrope2.search.space import Candidate

    counter = {"rows": 0}

    class CountingScorer(search_module.FactorScorer):
        """The package's FactorScorer plus a forward hook on the decoder that counts the sample rows it runs."""

        def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(model, *args, **kwargs)

            def hook(_module: Any, hook_args: tuple, hook_kwargs: dict, _output: Any) -> None:
                ids = hook_kwargs.get("input_ids", hook_args[0] if hook_args else None)
                counter["rows"] += int(ids.shape[0])

            model.get_decoder().register_forward_hook(hook, with_kwargs=True)

    rescored = {"rows": 0, "candidates": 0, "max_abs_diff": 0.0}

    class ReferenceSchedule(search_module.Search):
        """Before breeding each iteration, score the surviving parents again, in full (the reference GA)."""

        def generate(self) -> list[str]:
            if self.state["iteration"] > 0:
                keys = self.ranked()[: self.parents]
                candidates = [Candidate.from_key(k) for k in keys]
                jobs = [(c.key, c.long_factor(self.rotary_dim), c.critical_dim) for c in candidates]
                for key, result in zip(keys, self.run_jobs(jobs, math.inf), strict=True):
                    assert not result["pruned"]
                    rescored["rows"] += result["samples"]
                    rescored["candidates"] += 1
                    diff = abs(result["total"] - self.state["evaluated"][key]["total"])
                    rescored["max_abs_diff"] = max(rescored["max_abs_diff"], diff)
            return super().generate()

    torch.set_num_threads(THREADS_PER_PROCESS)
    runs: dict[str, dict] = {}
    modes = (
        ("reference", ["--racing", "off"], ReferenceSchedule),
        ("exact", ["--racing", "exact"], search_module.Search),
        ("paired", ["--racing", "paired"], search_module.Search),
        ("paired_low_confidence", ["--racing", "paired", "--racing-confidence", str(low_confidence)],
         search_module.Search),
    )
    for name, extra, search_class in modes:
        counter["rows"] = 0
        out = work / f"forwards-{seed}-{name}"
        started = time.perf_counter()
        with (work / f"forwards-{seed}-{name}.log").open("w") as sink, redirect_stdout(sink), redirect_stderr(sink):
            config = parse_args("search", search_argv(model, out, search, "--seed", str(seed), *extra))
            search_module.run(config, scorer=CountingScorer, search_class=search_class)
        total_seconds = time.perf_counter() - started
        log = read_log(out)
        runs[name] = {
            "forwards": counter["rows"],
            "sample_forwards_in_log": log["sample_forwards"],
            "candidates_evaluated": len(log["evaluated"]),
            "candidates_stopped_early": sum(bool(e["pruned"]) for e in log["evaluated"]),
            "candidates_raced": sum(bool(e.get("raced")) for e in log["evaluated"]),
            "search_seconds": log["wall_time_s"],
            "total_seconds": total_seconds,
            "best": best_of(log),
            "best_score": log["best"]["score"],
            "best_sample_noise": sample_noise(log),
            "seed_scores": {seed_name: s["score"] for seed_name, s in log["seeds"].items()},
            "evaluated_keys": [e["key"] for e in log["evaluated"]],
        }
    ref = runs["reference"]
    ref["parents_rescored"] = rescored["candidates"]
    ref["parent_rescoring_forwards"] = rescored["rows"]
    ref["rescoring_max_abs_total_diff"] = rescored["max_abs_diff"]
    noise = ref["best_sample_noise"]
    for run in runs.values():
        run["forward_ratio_vs_reference"] = run["forwards"] / ref["forwards"]
        run["best_vs_reference"] = run["best_score"] / ref["best_score"]  # < 1: better than the reference's best
        run["best_within_noise"] = abs(math.log(run["best_vs_reference"])) <= math.log(noise)
        run["same_best"] = run["best"] == ref["best"]
    checks = {
        "exact_same_best": runs["exact"]["best"] == ref["best"],
        "exact_same_candidates_visited": runs["exact"]["evaluated_keys"] == ref["evaluated_keys"],
        "reference_counted_equals_log_plus_rescoring": ref["forwards"]
        == ref["sample_forwards_in_log"] + rescored["rows"],
        "counted_equals_log": all(runs[n]["forwards"] == runs[n]["sample_forwards_in_log"] for n in runs if n != "reference"),
        "rescoring_reproduces_totals": rescored["max_abs_diff"] == 0.0,
    }
    for run in runs.values():
        del run["evaluated_keys"]
    return {
        "seed": seed,
        "forward_ratio": ref["sample_forwards_in_log"] / ref["forwards"],
        "exact_forward_ratio": runs["exact"]["forward_ratio_vs_reference"],
        "racing_forward_ratio": runs["paired"]["forward_ratio_vs_reference"],
        "racing_forward_ratio_low_confidence": runs["paired_low_confidence"]["forward_ratio_vs_reference"],
        "runs": runs,
        "checks": checks,
    }


# -- (b) memory ----------------------------------------------------------------------------------------------------
def memory_worker(kind: str, settings: dict) -> dict:
    """One evaluation (`kind` = needle or full) in this fresh process; its peak resident-memory growth in MB."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_longrope2 import factors
    from hf_longrope2.extension import extend
    from hf_longrope2.losses import IGNORE_INDEX, full_logits_nll, labelled_nll

    torch.set_num_threads(THREADS_PER_PROCESS)
    torch.manual_seed(0)
    s = settings
    config = LlamaConfig(
        vocab_size=s["vocab_size"],
        hidden_size=s["hidden_size"],
        intermediate_size=2 * s["hidden_size"],
        num_hidden_layers=s["num_layers"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        max_position_embeddings=s["original"],
        tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).eval()
    head_dim = s["hidden_size"] // s["heads"]
    scale = s["length"] / s["original"]
    extend(model, factors.yarn(head_dim, 1e4, scale, s["original"]), max_position_embeddings=s["length"])
    ids = torch.randint(0, s["vocab_size"], (1, s["length"]))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -LABELLED_TOKENS:] = ids[:, -LABELLED_TOKENS:]
    evaluate: Callable = labelled_nll if kind == "needle" else full_logits_nll
    with peak_rss() as memory:
        started = time.perf_counter()
        with torch.inference_mode():
            nll = float(evaluate(model, ids, labels)[0])
        seconds = time.perf_counter() - started
    return {"kind": kind, **memory, "nll": nll, "seconds": seconds}


def memory_peaks(settings: dict) -> dict:
    results = {}
    for kind in ("needle", "full"):
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS_PER_PROCESS)}
        args = ["--memory-worker", kind, "--memory-settings", json.dumps(settings)]
        results[kind] = run_in_fresh_process(Path(__file__).resolve(), args, env, f"memory worker {kind}")
    needle, full = results["needle"], results["full"]
    return {
        "memory_ratio": needle["peak_growth_mb"] / full["peak_growth_mb"],
        "needle": needle,
        "full_logits": full,
        "full_logits_tensor_mb": (settings["length"] - 1) * settings["vocab_size"] * 4 / 2**20,
        "nll_abs_diff": abs(needle["nll"] - full["nll"]),
        "method": "VmHWM after the evaluation minus VmRSS before it; VmHWM reset via /proc/self/clear_refs (5) "
        "right before the evaluation; one evaluation per fresh subprocess, no warm-up",
    }


# -- (c) processes -------------------------------------------------------------------------------------------------
def timed_search(name: str, launcher: list[str], argv: list[str], env: dict, work: Path) -> dict:
    log_file = work / f"{name}.log"
    load = load_average()
    started = time.perf_counter()
    with log_file.open("w") as sink:
        done = subprocess.run([*launcher, *argv], env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    total = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} search failed (exit {done.returncode}):\n{log_file.read_text()[-4000:]}")
    log = read_log(Path(argv[argv.index("--output-dir") + 1]))
    return {
        "command": " ".join([*(launcher[2:] if launcher[1] == "-m" else launcher[1:]), "..."]),
        "omp_num_threads": env.get("OMP_NUM_THREADS", "unset (torch default)"),
        "num_processes": log["num_processes"],
        "search_seconds": log["wall_time_s"],
        "total_seconds": total,
        "sample_forwards": log["sample_forwards"],
        "best": best_of(log),
        "load_average_before": load,
    }


def process_scaling(model: Path, work: Path, search: dict, repeats: int) -> dict:
    """1 vs 2 processes, `repeats` times each, interleaved; then 1 process with torch's default threads, once."""
    recipe = str(ROOT / "recipes" / "search.py")
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1"]
    accelerate += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "ACCELERATE_USE_CPU")}
    one_thread = {**base, "OMP_NUM_THREADS": str(THREADS_PER_PROCESS)}
    configs = {
        "one_process": ([*accelerate, "--cpu", "--num_processes", "1", recipe], one_thread),
        "two_processes": (
            [*accelerate, "--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port()), recipe],
            {**one_thread, "ACCELERATE_USE_CPU": "1"},
        ),
        "one_process_default_threads": ([sys.executable, recipe], base),
    }
    order = [*(["one_process", "two_processes"] * repeats), "one_process_default_threads"]
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for i, name in enumerate(order):
        launcher, env = configs[name]
        argv = search_argv(model, work / f"{name}-{i}", search, "--seed", "0")
        runs[name].append(timed_search(f"{name}-{i}", launcher, argv, env, work))
    summary = {
        name: {
            "search_seconds_min": min(r["search_seconds"] for r in results),
            "search_seconds_median": statistics.median(r["search_seconds"] for r in results),
            "total_seconds_min": min(r["total_seconds"] for r in results),
            "repeats": len(results),
        }
        for name, results in runs.items()
    }
    one, two = summary["one_process"], summary["two_processes"]
    median_speedup = one["search_seconds_median"] / two["search_seconds_median"]
    bests = {json.dumps(r["best"]) for results in runs.values() for r in results}
    return {
        "two_process_speedup": one["search_seconds_min"] / two["search_seconds_min"],
        "two_process_speedup_total_time": one["total_seconds_min"] / two["total_seconds_min"],
        "two_process_speedup_of_medians": median_speedup,
        "same_best_across_process_counts": len(bests) == 1,
        "best": json.loads(next(iter(bests))) if len(bests) == 1 else None,
        "summary": summary,
        "runs": runs,
    }


# -- report --------------------------------------------------------------------------------------------------------
def mean(values) -> float:
    return statistics.fmean(values)


def print_table(result: dict) -> None:
    rows = []
    for seed in result["forwards"]:
        runs = seed["runs"]
        rows.append((f"(a) seed {seed['seed']}: forwards reference / memo / exact / paired / paired low",
                     " / ".join(str(x) for x in (runs["reference"]["forwards"],
                                                 runs["reference"]["sample_forwards_in_log"],
                                                 runs["exact"]["forwards"], runs["paired"]["forwards"],
                                                 runs["paired_low_confidence"]["forwards"])),
                     "best vs ref: " + ", ".join(f"{runs[n]['best_vs_reference']:.3f}"
                                                 for n in ("exact", "paired", "paired_low_confidence"))
                     + f" (noise x{runs['reference']['best_sample_noise']:.3f})"))
    rows.append(
        ("(a) mean ratios memo / exact / paired / paired low", " / ".join(
            f"{result[k]:.3f}" for k in ("forward_ratio", "exact_forward_ratio", "racing_forward_ratio",
                                         "racing_forward_ratio_low_confidence")), ""))
    m, p = result["memory"], result["processes"]
    if m:
        rows.append(("(b) peak MB: needle / full logits",
         f"{m['needle']['peak_growth_mb']:.1f} / {m['full_logits']['peak_growth_mb']:.1f}",
         f"memory_ratio {result['memory_ratio']:.4f}"))
    if p:
        one, two = p["summary"]["one_process"], p["summary"]["two_processes"]
        default = p["summary"]["one_process_default_threads"]
        rows += [("(c) search s: 1 proc / 2 procs", f"{one['search_seconds_min']:.2f} / {two['search_seconds_min']:.2f}",
         f"two_process_speedup {result['two_process_speedup']:.2f}"),
        ("    total s: 1 proc / 2 procs", f"{one['total_seconds_min']:.2f} / {two['total_seconds_min']:.2f}",
         f"same best: {p['same_best_across_process_counts']}"),
        ("    1 proc, default threads: search s", f"{default['search_seconds_min']:.2f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for label, values, ratio in rows:
        print(f"{label:<{width}}  {values:<30} {ratio}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    for key, value in SEARCH.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value, help="search setting")
    parser.add_argument("--critical-dims", default=None, help="search setting (default: the package's range)")
    parser.add_argument("--seeds", default="0,1,2", help="search seeds of (a), comma-separated")
    parser.add_argument("--low-confidence", type=float, default=0.8, help="the second racing confidence of (a)")
    parser.add_argument("--parts", default="a,b,c", help="which of (a), (b), (c) to run (the others: from --output)")
    parser.add_argument("--repeats", type=int, default=2, help="timed 1- and 2-process runs each, interleaved")
    parser.add_argument("--memory-length", type=int, default=MEMORY["length"])
    parser.add_argument("--memory-vocab-size", type=int, default=MEMORY["vocab_size"])
    parser.add_argument("--output", type=Path, default=RESULT, help="where the JSON goes")
    parser.add_argument("--memory-worker", choices=("needle", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-settings", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


DEFINITIONS = {
    "forward_ratio": "new/old = sample forwards with the memo only (a candidate seen before is never re-scored; no "
    "early stopping) / sample forwards of the reference schedule (plain elitist GA as in the reference LongRoPE "
    "code: every generation's whole population, surviving parents included, scored on every sample); mean over seeds",
    "exact_forward_ratio": "new/old = sample forwards with --racing exact (memo + the exact bound) / reference",
    "racing_forward_ratio": "new/old = sample forwards with --racing paired (memo + exact bound + a one-sided paired "
    "t-test at 95% against the k-th parent, the default) / reference; mean over seeds",
    "racing_forward_ratio_low_confidence": "the same with --racing-confidence LOW (see settings.low_confidence)",
    "memory_ratio": "new/old = peak resident-memory growth of one labelled_nll evaluation / of one full_logits_nll "
    "evaluation (model(...).logits), same model, tokens and length; < 1 is a saving",
    "two_process_speedup": "old/new = search-loop seconds (search_log.json wall_time_s) with 1 process / with 2 "
    "processes (accelerate launch, gloo, 1 torch thread per process); > 1 is a speed-up",
}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, json.loads(args.memory_settings))))
        return {}
    started = time.perf_counter()
    parts = set(args.parts.split(","))
    previous = json.loads(args.output.read_text()) if args.output.is_file() and parts != {"a", "b", "c"} else {}
    search = {key: getattr(args, key) for key in (*SEARCH, "critical_dims")}
    memory = {**MEMORY, "length": args.memory_length, "vocab_size": args.memory_vocab_size}
    seeds = [int(x) for x in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="search_cost.") as tmp:
        work = Path(tmp)
        os.environ["HF_LONGROPE2_CACHE"] = str(work / "cache")
        os.environ["HF_HUB_OFFLINE"] = "1"

        import torch
        import transformers

        from hf_longrope2.tiny.base import tiny_base_path

        default_threads = torch.get_num_threads()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        model = tiny_base_path()
        forwards = previous.get("forwards")
        if "a" in parts:
            forwards = []
            for seed in seeds:
                print(f"(a) forward passes, seed {seed}: reference schedule, exact, paired, paired at "
                      f"{args.low_confidence} ...", flush=True)
                forwards.append(forward_counts(model, work, search, seed, args.low_confidence))
        memory_result = previous.get("memory")
        if "b" in parts:
            print("(b) peak memory: needle vs full logits ...", flush=True)
            memory_result = memory_peaks(memory)
        processes = previous.get("processes")
        if "c" in parts:
            print("(c) one process vs two ...", flush=True)
            processes = process_scaling(model, work, search, args.repeats)
    result = {
        "forward_ratio": mean(f["forward_ratio"] for f in forwards),
        "exact_forward_ratio": mean(f["exact_forward_ratio"] for f in forwards),
        "racing_forward_ratio": mean(f["racing_forward_ratio"] for f in forwards),
        "racing_forward_ratio_low_confidence": mean(f["racing_forward_ratio_low_confidence"] for f in forwards),
        "racing_best_within_noise": [f["runs"]["paired"]["best_within_noise"] for f in forwards],
        "racing_best_vs_reference": [f["runs"]["paired"]["best_vs_reference"] for f in forwards],
        "racing_low_confidence_best_within_noise": [f["runs"]["paired_low_confidence"]["best_within_noise"]
                                                    for f in forwards],
        "memory_ratio": memory_result["memory_ratio"] if memory_result else None,
        "two_process_speedup": processes["two_process_speedup"] if processes else None,
        "definitions": DEFINITIONS,
        "forwards": forwards,
        "memory": memory_result,
        "processes": processes,
        "settings": {
            "search": search,
            "seeds": seeds,
            "low_confidence": args.low_confidence,
            "model": "hf_longrope2.tiny.base (the shipped tiny base: Llama, 256-token window, rotary dim 64)",
            "memory": {**memory, "labelled_tokens": LABELLED_TOKENS, "attn_implementation": "sdpa", "dtype": "float32"},
            "threads_per_process": THREADS_PER_PROCESS,
            "parts_run_now": sorted(parts),
        },
        **envelope(started, "search_cost.py", argv, torch_default_threads=default_threads),
    }
    write_results(args.output, result)
    print_table(result)
    print(f"{result['wall_time_s']:.0f} s -> {args.output}")
    failed = [f"seed {f['seed']}: {name}" for f in forwards for name, ok in f["checks"].items() if not ok]
    failed += [] if not processes or processes["same_best_across_process_counts"] else ["same_best_across_processes"]
    if failed:
        print(f"CHECKS FAILED: {failed}", file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
