"""Cost of the factor search: forward passes, evaluation memory and process scaling, side by side in one run.

    python benchmarks/search_cost.py            # writes benchmarks/results/search_cost.json (a few minutes, 2 cores)
    python benchmarks/search_cost.py --help     # the settings that can be changed (defaults = the recorded run)

Everything runs offline on the CPU in a temporary folder (``HF_LONGROPE2_CACHE`` points there too). The model
is a tiny Llama (``hf_longrope2.tiny.models.tiny_config("llama")``: 2 layers, hidden 64, rotary dim 16, the 100-symbol
character tokenizer) with a 128-token window, trained for a few seconds on a synthetic corpus of pangrams and
searched for 512 tokens: like a real LM and unlike a random one, its loss at the target length depends strongly
on the factors (a random tiny model scores every candidate within a few percent, and exact early rejection
then almost never fires).
The search uses ``--objective ppl``: the answer of a needle is a random number this model cannot predict,
which would flatten the landscape; pruning works the same for both objectives (sums of non-negative
per-sample losses).

(a) ``forward_ratio`` = forwards(ours) / forwards(reference), new/old, < 1 is a saving. One forward = one
    sample through the decoder (counted by a forward hook on the decoder, so only executed passes count).
    *Reference schedule*: a plain elitist GA as in the reference LongRoPE code, which scores every member of
    each generation's population on every sample with no early stopping: every iteration the surviving
    parents are scored again (no memo) alongside the new children, and no candidate is ever stopped early.
    It is run, not computed: ``hf_longrope2.search.main`` with ``--prune false`` and ``Search`` replaced by
    a subclass that, before breeding each iteration, re-scores that iteration's parents with the same
    Evaluator (and checks the totals are reproduced exactly). Children come from the same generator with
    the same seed in both runs, so both visit the same candidates and must find the same best factors.
    *Ours*: the package's default (a candidate seen before is never re-scored; exact early rejection).
    ``memo_only_ratio`` and ``pruning_only_ratio`` split the saving (the reference run's own log is the
    memo-only schedule). Exact rejection stops a candidate only once its partial sum exceeds the k-th best
    total, so with per-sample losses of similar size it needs a candidate about n/(n-1) times worse than the
    k-th best and then saves the last sample or so; on this flat a landscape most of the saving is the memo.
(b) ``memory_ratio`` = peak(needle evaluation, ``labelled_nll``) / peak(full logits, ``full_logits_nll``),
    new/old. Each runs once in a fresh subprocess on a random Llama (2 layers, hidden 64) with SmolLM2's
    vocabulary size (49,152), extended with YaRN factors from 2,048 to 8,192 tokens, on 8,192 random tokens
    (labels -100 except the last 8). Linux only. Peak = the kernel's high-water mark of resident memory
    (``VmHWM``), reset with ``/proc/self/clear_refs`` just before the evaluation, minus the resident memory
    at that moment: the memory the evaluation itself added.
(c) ``two_process_speedup`` = time(1 process) / time(2 processes), old/new, > 1 is a speed-up: the same
    search through ``accelerate launch`` with 1 (``--cpu``) and 2 (``--multi_gpu`` with ``ACCELERATE_USE_CPU=1``,
    gloo) processes, one torch thread per process in both, timed by the ``wall_time_s`` of each
    ``search_log.json`` (the search loop, without start-up); the whole subprocess time is recorded too, as is
    a single process with torch's default thread count. The 1- and 2-process runs alternate ``--repeats``
    times and the fastest of each counts. All runs must find the same best factors as each other and as (a).

The machine's load average is recorded next to each timing: other work on a 2-core machine skews (c).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
RESULT = Path(__file__).parent / "results" / "search_cost.json"
PANGRAMS = (
    "the quick brown fox jumps over the lazy dog. ",
    "pack my box with five dozen liquor jugs! ",
    "how vexingly quick daft zebras jump? ",
    "sphinx of black quartz, judge my vow; ",
)
LABELLED_TOKENS = 8

SEARCH = dict(
    target_length=512,
    population=16,
    parents=8,
    iterations=6,
    num_samples=10,
    objective="ppl",
    candidates_per_step=16,
    seed=0,
)  # critical dims: the package default (the paper's [d10_tcd, d_tcd])
TRAIN = dict(window=128, steps=200, batch_size=8, lr=1e-2, seed=0, documents=12)
MEMORY = dict(length=8192, vocab_size=49152, hidden_size=64, num_layers=2, heads=4, kv_heads=2, original=2048)
THREADS_PER_PROCESS = 1


# -- setup ---------------------------------------------------------------------------------------------------------
def write_corpus(folder: Path, documents: int, chars: int, seed: int) -> list[str]:
    """`documents` text files of random pangram sequences, each at least `chars` characters long."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    texts = []
    for i in range(documents):
        parts: list[str] = []
        while sum(map(len, parts)) < chars:
            parts.append(rng.choice(PANGRAMS))
        texts.append("".join(parts))
        (folder / f"doc{i:02d}.txt").write_text(texts[-1])
    return texts


def train_tiny_model(
    path: Path, texts: list[str], window: int, steps: int, batch_size: int, lr: float, seed: int
) -> dict:
    """Train ``tiny_config("llama")`` with a `window`-token context on `texts`; save it with the char tokenizer."""
    import torch
    from transformers import LlamaForCausalLM

    from hf_longrope2.tiny.models import char_tokenizer, tiny_config

    tokenizer = char_tokenizer()
    ids = torch.tensor(tokenizer("".join(texts), add_special_tokens=False)["input_ids"])
    torch.manual_seed(seed)
    config = tiny_config("llama")
    config.max_position_embeddings = window
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    started = time.perf_counter()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - window, (batch_size,)).tolist()
        batch = torch.stack([ids[s : s + window] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    model.eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return {"final_train_loss": float(loss.detach()), "train_seconds": seconds}


def search_argv(model: Path, dataset: Path, output_dir: Path, search: dict, *extra: str) -> list[str]:
    argv = ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(output_dir)]
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


# -- (a) forward passes --------------------------------------------------------------------------------------------
def forward_counts(model: Path, dataset: Path, work: Path, search: dict) -> dict:
    """Run the reference schedule and ours in this process; count executed decoder forwards (sample rows)."""
    import torch

    from hf_longrope2.cli.search import parse_args
    from hf_longrope2.search import runner as search_module
    from hf_longrope2.search.space import Candidate

    counter = {"rows": 0}

    class CountingEvaluator(search_module.Evaluator):
        """The package's Evaluator plus a forward hook on the decoder that counts the sample rows it runs."""

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
    for name, extra, search_class in (
        ("reference", ["--prune", "false"], ReferenceSchedule),
        ("ours", [], search_module.Search),
    ):
        counter["rows"] = 0
        out = work / f"forwards-{name}"
        with (
            mock.patch.object(search_module, "Evaluator", CountingEvaluator),
            mock.patch.object(search_module, "Search", search_class),
        ):
            started = time.perf_counter()
            with (work / f"forwards-{name}.log").open("w") as sink, redirect_stdout(sink), redirect_stderr(sink):
                search_module.run(parse_args(search_argv(model, dataset, out, search, *extra)))
            total_seconds = time.perf_counter() - started
        log = read_log(out)
        runs[name] = {
            "forwards": counter["rows"],
            "sample_forwards_in_log": log["sample_forwards"],
            "candidates_evaluated": len(log["evaluated"]),
            "candidates_stopped_early": sum(bool(e["pruned"]) for e in log["evaluated"]),
            "duplicates_skipped": log.get("duplicates_skipped"),
            "search_seconds": log["wall_time_s"],
            "total_seconds": total_seconds,
            "best": best_of(log),
            "best_score": log["best"]["score"],
            "seed_scores": {seed_name: seed["score"] for seed_name, seed in log["seeds"].items()},
            "geometry": log["geometry"],
            "evaluated_keys": [e["key"] for e in log["evaluated"]],
        }
    ref, ours = runs["reference"], runs["ours"]
    ref["parents_rescored"] = rescored["candidates"]
    ref["parent_rescoring_forwards"] = rescored["rows"]
    ref["rescoring_max_abs_total_diff"] = rescored["max_abs_diff"]
    checks = {
        "same_best": ref["best"] == ours["best"],
        "same_candidates_visited": ref["evaluated_keys"] == ours["evaluated_keys"],
        "reference_counted_equals_log_plus_rescoring": ref["forwards"]
        == ref["sample_forwards_in_log"] + rescored["rows"],
        "ours_counted_equals_log": ours["forwards"] == ours["sample_forwards_in_log"],
        "rescoring_reproduces_totals": rescored["max_abs_diff"] == 0.0,
    }
    for run in runs.values():
        del run["evaluated_keys"]
    return {
        "forward_ratio": ours["forwards"] / ref["forwards"],
        "search_time_ratio": ours["search_seconds"] / ref["search_seconds"],
        "memo_only_ratio": ref["sample_forwards_in_log"] / ref["forwards"],
        "pruning_only_ratio": ours["forwards"] / ref["sample_forwards_in_log"],
        "reference": ref,
        "ours": ours,
        "checks": checks,
    }


# -- (b) memory ----------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/self/status")
    return int(match.group(1))


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
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    with torch.inference_mode():
        nll = float(evaluate(model, ids, labels)[0])
    seconds = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    return {
        "kind": kind,
        "rss_before_mb": before / 1024,
        "peak_rss_mb": peak / 1024,
        "peak_growth_mb": (peak - before) / 1024,
        "nll": nll,
        "seconds": seconds,
    }


def memory_peaks(settings: dict) -> dict:
    results = {}
    for kind in ("needle", "full"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", kind, "--memory-settings"]
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS_PER_PROCESS)}
        done = subprocess.run([*cmd, json.dumps(settings)], capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"memory worker {kind} failed:\n{done.stderr[-4000:]}")
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
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
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def process_scaling(model: Path, dataset: Path, work: Path, search: dict, repeats: int) -> dict:
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
        argv = search_argv(model, dataset, work / f"{name}-{i}", search)
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
def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def print_table(result: dict) -> None:
    f, m, p = result["forwards"], result["memory"], result["processes"]
    one, two = p["summary"]["one_process"], p["summary"]["two_processes"]
    default = p["summary"]["one_process_default_threads"]
    rows = [
        (
            "(a) sample forwards: reference / ours",
            f"{f['reference']['forwards']} / {f['ours']['forwards']}",
            f"forward_ratio {result['forward_ratio']:.3f}",
        ),
        (
            "    no memo, no pruning / memo only",
            f"{f['reference']['forwards']} / {f['reference']['sample_forwards_in_log']}",
            f"memo-only ratio {f['memo_only_ratio']:.3f}",
        ),
        (
            "    stopped early / evaluated (ours)",
            f"{f['ours']['candidates_stopped_early']} / {f['ours']['candidates_evaluated']}",
            f"same best: {f['checks']['same_best']}",
        ),
        (
            "(b) peak MB: needle / full logits",
            f"{m['needle']['peak_growth_mb']:.1f} / {m['full_logits']['peak_growth_mb']:.1f}",
            f"memory_ratio {result['memory_ratio']:.4f}",
        ),
        (
            "(c) search s: 1 proc / 2 procs",
            f"{one['search_seconds_min']:.2f} / {two['search_seconds_min']:.2f}",
            f"two_process_speedup {result['two_process_speedup']:.2f}",
        ),
        (
            "    total s: 1 proc / 2 procs",
            f"{one['total_seconds_min']:.2f} / {two['total_seconds_min']:.2f}",
            f"same best: {p['same_best_across_process_counts']}",
        ),
        ("    1 proc, default threads: search s", f"{default['search_seconds_min']:.2f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for label, values, ratio in rows:
        print(f"{label:<{width}}  {values:<22} {ratio}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    for key, value in SEARCH.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value, help="search setting")
    parser.add_argument("--critical-dims", default=None, help="search setting (default: the package's range)")
    parser.add_argument("--train-steps", type=int, default=TRAIN["steps"])
    parser.add_argument("--repeats", type=int, default=2, help="timed 1- and 2-process runs each, interleaved")
    parser.add_argument("--memory-length", type=int, default=MEMORY["length"])
    parser.add_argument("--memory-vocab-size", type=int, default=MEMORY["vocab_size"])
    parser.add_argument("--output", type=Path, default=RESULT, help="where the JSON goes")
    parser.add_argument("--memory-worker", choices=("needle", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-settings", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, json.loads(args.memory_settings))))
        return {}
    started = time.perf_counter()
    search = {key: getattr(args, key) for key in (*SEARCH, "critical_dims")}
    train = {**TRAIN, "steps": args.train_steps}
    memory = {**MEMORY, "length": args.memory_length, "vocab_size": args.memory_vocab_size}
    with tempfile.TemporaryDirectory(prefix="search_cost.") as tmp:
        work = Path(tmp)
        os.environ["HF_LONGROPE2_CACHE"] = str(work / "cache")
        os.environ["HF_HUB_OFFLINE"] = "1"

        import torch
        import transformers

        from hf_longrope2.utils.environment import versions

        default_threads = torch.get_num_threads()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        texts = write_corpus(work / "corpus", train["documents"], 4 * search["target_length"], train["seed"])
        torch.set_num_threads(THREADS_PER_PROCESS)
        print(f"training the tiny model ({train['steps']} steps) ...", flush=True)
        model_info = train_tiny_model(
            work / "model", texts, train["window"], train["steps"], train["batch_size"], train["lr"], train["seed"]
        )
        print("(a) forward passes: reference schedule, then ours ...", flush=True)
        forwards = forward_counts(work / "model", work / "corpus", work, search)
        print("(b) peak memory: needle vs full logits ...", flush=True)
        memory_result = memory_peaks(memory)
        print("(c) one process vs two ...", flush=True)
        processes = process_scaling(work / "model", work / "corpus", work, search, args.repeats)
    same_as_a = processes["best"] == forwards["ours"]["best"]
    result = {
        "forward_ratio": forwards["forward_ratio"],
        "memory_ratio": memory_result["memory_ratio"],
        "two_process_speedup": processes["two_process_speedup"],
        "definitions": {
            "forward_ratio": "new/old = sample forwards of ours (memo + exact early rejection) / sample forwards of "
            "the reference schedule (plain elitist GA as in the reference LongRoPE code: every generation's whole "
            "population, surviving parents included, scored on every sample, no memo, no early stopping); "
            "< 1 is a saving. Both counted by a forward hook on the decoder; same seed, same candidates visited",
            "memory_ratio": "new/old = peak resident-memory growth of one labelled_nll evaluation / of one "
            "full_logits_nll evaluation (model(...).logits), same model, tokens and length; < 1 is a saving",
            "two_process_speedup": "old/new = search-loop seconds (search_log.json wall_time_s) with 1 process / "
            "with 2 processes (accelerate launch, gloo, 1 torch thread per process); > 1 is a speed-up",
        },
        "forwards": forwards,
        "memory": memory_result,
        "processes": {**processes, "same_best_as_a": same_as_a},
        "settings": {
            "search": search,
            "model": {
                "config": "hf_longrope2.tiny.models.tiny_config('llama') (2 layers, hidden 64, 4 heads, rotary dim 16) "
                "with max_position_embeddings = window, character tokenizer, trained at that window on the corpus",
                **train,
                **model_info,
            },
            "corpus": f"{train['documents']} documents of random pangram sequences, {4 * search['target_length']}+ "
            "characters each",
            "memory": {**memory, "labelled_tokens": LABELLED_TOKENS, "attn_implementation": "sdpa", "dtype": "float32"},
            "threads_per_process": THREADS_PER_PROCESS,
        },
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_default_threads": default_threads,
        },
        "command": " ".join(["python", "benchmarks/search_cost.py", *(sys.argv[1:] if argv is None else argv)]),
        "benchmark_seconds": time.perf_counter() - started,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomically(args.output, result)
    print_table(result)
    print(f"{result['benchmark_seconds']:.0f} s -> {args.output}")
    failed = [name for name, ok in forwards["checks"].items() if not ok]
    failed += [] if processes["same_best_across_process_counts"] else ["same_best_across_process_counts"]
    failed += [] if same_as_a else ["processes.same_best_as_a"]
    if failed:
        print(f"CHECKS FAILED: {failed}", file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
