"""The LongRoPE2 paper's comparison in miniature, on the embedded tiny base (256-token window), CPU only.

```bash
python benchmarks/micro_reproduction.py                       # 3 seeds; writes benchmarks/results/micro_reproduction.*
python benchmarks/micro_reproduction.py --seeds 0 --quick     # a smoke run (not a result)
```

Per seed, every method extends the base to 8x its window (2048 tokens) and is evaluated at 1x-16x:

- ``original``: the base, no extension; ``pi``, ``ntk``, ``yarn``: the classic factor vectors;
- ``longrope2_search``: needle-driven LongRoPE2 search only; ``longrope2``: search + mixed-window midtraining;
- ``pi_midtrain``, ``ntk_midtrain``, ``yarn_midtrain``: the classic vectors + the same midtraining;
- ablations: ``longrope2_ppl_objective`` (search on plain perplexity, ``--objective ppl``, + the same
  midtraining) and ``longrope2_long_only`` (the needle search + midtraining on long rows only,
  ``short_fraction: 0``: the model never trains with the original RoPE on short documents).

Every midtraining run has the same steps, batch, row length and data (the recall corpus of
``hf_longrope2.tiny.recall_data``), so the same tokens, and every baseline has its own attention factor. The seed
changes the search, the midtraining data and order, and the evaluation samples (so the deterministic methods
vary only through the samples). Measures, mean and standard deviation over seeds:

- NIAH exact match at 1x-16x (16x is beyond the trained length) and the perplexity at the native window
  (``ppl_native``) with its retention against the base;
- NIAH on two templates (``niah_magic``: the paper's question; ``niah_echo``: a question that repeats the needle's
  words, RULER-style), each with ``answer_nll_<template>``: the mean NLL of the answer digits per length
  (continuous: it separates methods where exact match saturates), for every model, so before (``pi``, ``yarn``,
  ``longrope2_search``, ...) and after midtraining;
- retention on text the base was pretrained on and midtraining never saw: ``retention_heldout`` (the held-out
  pydoc slice, where the NIAH haystacks and perplexity documents come from) and ``retention_stdlib_heldout``;
- ``niah_by_steps``: NIAH at 8x after 10, 20, ... steps and at the end, from midtraining checkpoints;
- ``ruler``: RULER-style multi-key, multi-value and variable tracking at 8x, never trained on;
- ``niah_digits``: at 2x and 8x, the share of NIAH answers whose first 7 generated digits are the answer
  (RULER's "contains" criterion) and the share that are right but go on with more digits (``overshoot``):
  exact match counts those as wrong, and the overshoot measures how well a model still counts the 7 digits, a
  local-order skill that lives in the high-frequency rotary pairs.

Results in ``benchmarks/results/micro_reproduction.json`` and ``.md``. Every stage is kept in ``--work-dir``, so
an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from transformers import AutoConfig

from hf_longrope2.demo import QUICK
from hf_longrope2.factors import METHODS
from hf_longrope2.midtrain.runner import checkpoints_dir
from hf_longrope2.pipeline import (
    DATASET,
    NIAH_TEMPLATES,
    RETENTION_DATASETS,
    SEARCH_DATASET,
    Budget,
    data_stage,
    eval_stage,
    extend_stage,
    midtrain_stage,
    search_stage,
)
from hf_longrope2.tiny.base import tiny_base_path
from hf_longrope2.utils.atomic import write_json_atomically

if not __package__:  # run as `python benchmarks/micro_reproduction.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, envelope, write_results

# 11 models per seed, so fewer needles than the demo; RULER tasks at 8x only
MICRO = Budget(population=16, iterations=4, search_samples=6, midtrain_steps=80, needles=4,
               depths=(0.0, 0.5, 1.0), ppl_documents=2, ruler_samples=2)

NAMES = ("original", "pi", "ntk", "yarn", "longrope2_search", "longrope2", "pi_midtrain", "ntk_midtrain",
         "yarn_midtrain", "longrope2_ppl_objective", "longrope2_long_only")


MIDTRAINED = ("longrope2", "pi_midtrain", "ntk_midtrain", "yarn_midtrain", "longrope2_ppl_objective",
              "longrope2_long_only")
RULER_TASKS = ("niah_multikey", "niah_multivalue", "variable_tracking")
CURVE_STEPS = (10, 20, 40, 80)


def niah_at(folder: Path, length: int, budget: Budget, seed: int) -> float:
    """NIAH exact match at one length (the evaluation's grid and scorer), e.g. of a midtraining checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_longrope2.data.texts import load_texts
    from hf_longrope2.evaluation.niah import haystack_stream, niah_grid, score_niah

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    docs = [tok(t, add_special_tokens=False)["input_ids"] for t in load_texts(DATASET)]
    stream = haystack_stream(docs, tok("\n\n", add_special_tokens=False)["input_ids"], length, seed)
    grid = niah_grid(tok, stream, [length], list(budget.depths), budget.needles, seed=seed)
    accuracy = score_niah(model, tok, grid.values(), batch_size=4)
    return sum(accuracy.values()) / len(accuracy)


def niah_digits(folder: Path, lengths: list[int], budget: Budget, seed: int) -> dict[str, dict[str, float]]:
    """Per length: exact match, the share whose first digits are the answer, the share of those that go on with
    further digits, and the share that starts with no digit at all (greedy, 3 tokens beyond the answer room)."""
    import re

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_longrope2.data.texts import load_texts
    from hf_longrope2.evaluation.niah import exact_match, greedy_continuations, haystack_stream, niah_grid

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    docs = [tok(t, add_special_tokens=False)["input_ids"] for t in load_texts(DATASET)]
    stream = haystack_stream(docs, tok("\n\n", add_special_tokens=False)["input_ids"], max(lengths), seed)
    grid = niah_grid(tok, stream, lengths, list(budget.depths), budget.needles, seed=seed)
    counts: dict[int, list[int]] = {n: [0, 0, 0, 0, 0] for n in lengths}  # exact, right, overshoot, none, samples
    for (length, _), cell in grid.items():
        for out, answer in zip(greedy_continuations(model, cell.prompts, cell.max_new_tokens + 3), cell.answers,
                               strict=True):
            text = tok.decode(out, skip_special_tokens=True)
            digits = re.match(r"\s*(\d*)", text).group(1)
            c = counts[length]
            c[0] += exact_match(text, answer)
            c[1] += digits.startswith(answer)
            c[2] += digits.startswith(answer) and len(digits) > len(answer)
            c[3] += not digits
            c[4] += 1
    return {str(n): {"exact": c[0] / c[4], "digits": c[1] / c[4], "overshoot": c[2] / c[4], "no_answer": c[3] / c[4]}
            for n, c in counts.items()}


def run_seed(seed: int, work: Path, base: Path, window: int, budget: Budget, scale: int, max_scale: int) -> dict:
    """Every stage of one seed; returns the evaluation report plus the learning curves and digit counts."""
    target = scale * window
    search_stage(base=base, target=target, out=work / "search", budget=budget, seed=seed, resume=True)
    search_stage(base=base, target=target, out=work / "search_ppl", budget=budget, seed=seed, resume=True,
                 objective="ppl")
    for method in METHODS:
        extend_stage(base=base, method=method, target=target, out=work / method, resume=True)
    data_stage(base=base, out=work / "data", target=target, window=window, steps=budget.midtrain_steps, seed=seed,
               resume=True)
    trained = {"longrope2": "search", "longrope2_ppl_objective": "search_ppl", "pi_midtrain": "pi",
               "ntk_midtrain": "ntk", "yarn_midtrain": "yarn"}
    curve = [s for s in CURVE_STEPS if s < budget.midtrain_steps]
    every = curve[0] if curve else None
    for name, source in trained.items():
        midtrain_stage(model=work / source, out=work / name, target=target, steps=budget.midtrain_steps, seed=seed,
                       resume=True, data=work / "data", save_steps=every)
    midtrain_stage(model=work / "search", out=work / "longrope2_long_only", target=target,
                   steps=budget.midtrain_steps, seed=seed, resume=True, data=work / "data", short_fraction=0.0,
                   save_steps=every)
    folders = {"original": base, "pi": work / "pi", "ntk": work / "ntk", "yarn": work / "yarn",
               "longrope2_search": work / "search"}
    folders.update({name: work / name for name in NAMES if name not in folders})
    lengths = [window * 2**k for k in range(max_scale.bit_length()) if 2**k <= max_scale]
    eval_stage(models=folders, out=work / "report", lengths=lengths, budget=budget, seed=1000 + seed, resume=True,
               ruler_lengths=[target], ruler_tasks=RULER_TASKS)
    report = json.loads((work / "report" / "report.json").read_text())
    extra_file = work / "extra.json"
    extra = json.loads(extra_file.read_text()) if extra_file.exists() else {}
    if "niah_by_steps" not in extra:
        extra["niah_by_steps"] = {
            name: {str(s): niah_at(checkpoints_dir(work / name) / f"checkpoint-{s}", target, budget, 1000 + seed) for s in curve}
            | {str(budget.midtrain_steps): niah_at(work / name, target, budget, 1000 + seed)}
            for name in MIDTRAINED
        }
        write_json_atomically(extra_file, extra)
    if "niah_digits" not in extra:
        extra["niah_digits"] = {name: niah_digits(folder, [2 * window, target], budget, 3000 + seed)
                                for name, folder in folders.items()}
        write_json_atomically(extra_file, extra)
    return report | extra


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": _spread(values)}


def aggregate(reports: list[dict]) -> dict:
    """``methods`` -> name -> mean / std over seeds of every measure (see the module docstring)."""
    methods = {}
    for name in NAMES:
        entries = [r["models"][name] for r in reports]
        lengths = sorted(entries[0]["niah_mean"], key=int)
        ppl = [e["short"]["ppl"] for e in entries]
        first = next(iter(entries[0]["niah_by_template"]))
        methods[name] = {
            "niah": {n: statistics.fmean(e["niah_mean"][n] for e in entries) for n in lengths},
            "niah_std": {n: _spread([e["niah_mean"][n] for e in entries]) for n in lengths},
            "answer_nll": {n: statistics.fmean(e["answer_nll"][first][n] for e in entries) for n in lengths},
            "answer_nll_std": {n: _spread([e["answer_nll"][first][n] for e in entries]) for n in lengths},
            "ruler": {t: mean_std([next(iter(e["ruler"][t].values())) for e in entries]) for t in entries[0]["ruler"]},
            "ppl_native": statistics.fmean(ppl),
            "ppl_native_std": _spread(ppl),
            "retention_pct": statistics.fmean(e["short"]["retention_pct"] for e in entries),
            "ppl_by_length": {n: statistics.fmean(e["perplexity"][n]["ppl"] for e in entries)
                              for n in sorted(entries[0]["perplexity"], key=int)},
            "niah_digits": {n: {k: mean_std([r["niah_digits"][name][n][k] for r in reports])
                                for k in ("exact", "digits", "overshoot")}
                            for n in reports[0]["niah_digits"][name]},
            "seeds": len(entries),
        }
        for template in entries[0]["niah_by_template"]:
            methods[name][f"niah_{template}"] = {
                n: statistics.fmean(e["niah_by_template"][template][n] for e in entries) for n in lengths}
            methods[name][f"niah_{template}_std"] = {
                n: _spread([e["niah_by_template"][template][n] for e in entries]) for n in lengths}
            methods[name][f"answer_nll_{template}"] = {
                n: mean_std([e["answer_nll"][template][n] for e in entries]) for n in lengths}
        for source in entries[0]["retention"]:  # the evaluation's held-out slice first, then the other source
            key = "retention_heldout" if source == DATASET else "retention_" + source.split(":", 1)[1].replace(":", "_")
            methods[name][key] = mean_std([e["retention"][source]["retention_pct"] for e in entries])
        if name in MIDTRAINED:
            curves = [r["niah_by_steps"][name] for r in reports]
            methods[name]["niah_by_steps"] = {
                steps: {"mean": statistics.fmean(c[steps] for c in curves), "std": _spread([c[steps] for c in curves])}
                for steps in sorted(curves[0], key=int)
            }
    return methods


def plus_minus(m: dict | tuple, pct: bool = False, digits: int = 2) -> str:
    """``mean ± std`` of a ``{"mean", "std"}`` dict or a pair, as whole percents (`pct`) or with `digits` decimals."""
    mean, std = (m["mean"], m["std"]) if isinstance(m, dict) else m
    return f"{100 * mean:.0f} ± {100 * std:.0f}%" if pct else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(result: dict) -> str:
    methods = result["methods"]
    lengths = list(next(iter(methods.values()))["niah"])
    window, target = result["native_window"], result["settings"]["target_length"]
    scales = [f"{int(n) // window}x ({n})" for n in lengths]
    geo = result["geometry"]
    lines = [
        "# Micro reproduction: LongRoPE2 vs PI / NTK / YaRN on the embedded tiny base",
        "",
        f"Native window {window} tokens, extended to {target} (8x; 16x is beyond the trained length); head_dim "
        f"{geo['head_dim']}, rope_theta {geo['rope_theta']:g}, theoretical critical dimension "
        f"{geo['critical_dim_theory']} of {geo['head_dim'] // 2} pairs. {result['settings']['seeds']} seeds "
        f"(mean ± std). Command: `{result['command']}`. Wall time {result['wall_time_s'] / 60:.1f} min.",
        "",
        "## NIAH exact match (mean over depths) and short-window quality",
        "",
        "| method | " + " | ".join(scales) + " | ppl@native | retention |",
        "|" + "---|" * (len(lengths) + 3),
    ]
    for name, m in methods.items():
        cells = [plus_minus((m["niah"][n], m["niah_std"][n]), pct=True) for n in lengths]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {plus_minus((m['ppl_native'], m['ppl_native_std']), digits=3)} | {m['retention_pct']:.1f}% |")
    sources = [k for k in next(iter(methods.values())) if k.startswith("retention_") and k != "retention_pct"]
    lines += ["", "## Short-window retention on text the base was pretrained on and midtraining never saw", "",
              "100 x ppl(original) / ppl(method) on windows of the native length (goal: >= 97% for the mixed-window "
              "model; `longrope2_long_only` is its ablation without short rows)", "",
              "| method | " + " | ".join(f"`{k}`" for k in sources) + " |", "|" + "---|" * (len(sources) + 1)]
    for name, m in methods.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]['mean']:.1f} ± {m[k]['std']:.1f}%" for k in sources) + " |")
    templates = [k[len("answer_nll_"):] for k in next(iter(methods.values())) if k.startswith("answer_nll_")
                 and k != "answer_nll_std"]
    for template in templates:
        lines += ["", f"## NIAH exact match, template `{template}`", "",
                  "| method | " + " | ".join(scales) + " |", "|" + "---|" * (len(lengths) + 1)]
        for name, m in methods.items():
            lines.append(f"| {name} | " + " | ".join(
                plus_minus((m[f"niah_{template}"][n], m[f"niah_{template}_std"][n]), pct=True) for n in lengths) + " |")
        lines += ["", f"## Answer-token NLL, template `{template}` (nats per digit; lower is better, ln 10 = 2.30 is "
                  "chance)", "", "| method | " + " | ".join(scales) + " |", "|" + "---|" * (len(lengths) + 1)]
        for name, m in methods.items():
            lines.append(f"| {name} | " + " | ".join(plus_minus(m[f"answer_nll_{template}"][n]) for n in lengths) + " |")
    tasks = list(next(iter(methods.values()))["ruler"])
    lines += ["", f"## RULER-style tasks at {target} tokens (8x), never trained on", "",
              "| method | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for name, m in methods.items():
        lines.append(f"| {name} | " + " | ".join(plus_minus(m["ruler"][t], pct=True) for t in tasks) + " |")
    digit_lengths = list(next(iter(methods.values()))["niah_digits"])
    lines += ["", "## Exact match vs digits right: NIAH answers at "
              + " and ".join(f"{int(n) // window}x" for n in digit_lengths)
              + " (separate samples; digits right: the first 7 generated digits are the answer, RULER's criterion; "
              "overshoot: right, then more digits, which exact match counts as wrong)", "",
              "| method | " + " | ".join(f"{int(n) // window}x {k}" for n in digit_lengths
                                        for k in ("exact", "digits right", "overshoot")) + " |",
              "|" + "---|" * (3 * len(digit_lengths) + 1)]
    for name, m in methods.items():
        lines.append(f"| {name} | " + " | ".join(plus_minus(m["niah_digits"][n][k], pct=True) for n in digit_lengths
                                                for k in ("exact", "digits", "overshoot")) + " |")
    curved = {name: m["niah_by_steps"] for name, m in methods.items() if "niah_by_steps" in m}
    steps = list(next(iter(curved.values())))
    lines += ["", f"## Learning curve: NIAH at {target} tokens after n midtraining steps", "",
              "| method | " + " | ".join(steps) + " |", "|" + "---|" * (len(steps) + 1)]
    for name, curve in curved.items():
        lines.append(f"| {name} | " + " | ".join(plus_minus(curve[n], pct=True) for n in steps) + " |")
    lines += ["", "Settings: `" + json.dumps(result["settings"]) + "`", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="One full run per seed")
    parser.add_argument("--quick", action="store_true", help="Tiny budgets: a smoke run, not a result")
    parser.add_argument("--work-dir", default="micro-reproduction-work", help="Every stage's output (resumable)")
    parser.add_argument("--output", default=str(RESULTS / "micro_reproduction"), help="Results path without suffix")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else MICRO
    base = tiny_base_path()
    window = AutoConfig.from_pretrained(base).max_position_embeddings
    started = time.perf_counter()
    reports = []
    for seed in args.seeds:
        reports.append(run_seed(seed, Path(args.work_dir) / f"seed{seed}", base, window, budget, scale=8,
                                max_scale=16))
    from hf_longrope2 import factors
    from hf_longrope2.modeling.rope import RopeGeometry

    geometry = RopeGeometry.from_config(AutoConfig.from_pretrained(base))
    head_dim, theta = geometry.rotary_dim, geometry.rope_theta
    result = {
        "methods": aggregate(reports),
        "native_window": window,
        "geometry": {"head_dim": head_dim, "rope_theta": theta,
                     "critical_dim_theory": factors.critical_dimension(head_dim, theta, window),
                     "ten_period_dim": factors.ten_period_dimension(head_dim, theta, window)},
        "settings": {"seeds": len(args.seeds), "seed_values": args.seeds, "target_length": 8 * window,
                     "eval_lengths": sorted(reports[0]["models"]["original"]["niah_mean"], key=int),
                     "budget": budget.__dict__ | {"depths": list(budget.depths)}, "quick": args.quick,
                     "midtrain_tokens_per_run": budget.midtrain_steps * 2 * 8 * window,
                     "base": "hf_longrope2/tiny_base", "search_dataset": SEARCH_DATASET, "eval_dataset": DATASET,
                     "retention_datasets": [DATASET, *RETENTION_DATASETS], "niah_templates": list(NIAH_TEMPLATES),
                     "midtrain_data": "hf_longrope2.tiny.recall_data: long recall documents of the target length and "
                                      "short ones (<= window) replaying the base's pretraining rows, both over "
                                      "builtin:stdlib:train + builtin:pydoc:train, short_fraction 0.3 (long_only: "
                                      "0), lr 3e-4 cosine; NIAH template, keys and the held-out slices never seen",
                     "ruler_tasks": list(RULER_TASKS), "learning_curve_steps": list(CURVE_STEPS),
                     "answer_nll": "the evaluation's NIAH samples, every depth, teacher-forced"},
        **envelope(started, "micro_reproduction.py", argv),
    }
    write_results(Path(args.output).with_suffix(".json"), result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
