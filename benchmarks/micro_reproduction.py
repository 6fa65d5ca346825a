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

Every midtraining run has the same steps, batch and row length, so the same tokens. The seed changes the search,
the midtraining data order and the evaluation samples (so the deterministic methods vary only through the
samples). Results: mean and standard deviation over seeds of NIAH accuracy per length and of the perplexity at
the native window (``ppl_native``), in ``benchmarks/results/micro_reproduction.json`` and ``.md``. Every stage
is kept in ``--work-dir``, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from transformers import AutoConfig

from hf_longrope2.atomic import write_json_atomically, write_text_atomically
from hf_longrope2.demo import METHODS, MICRO, QUICK, Budget, eval_stage, extend_stage, midtrain_stage, search_stage
from hf_longrope2.embedded import tiny_base_path
from hf_longrope2.search import versions

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = ("original", "pi", "ntk", "yarn", "longrope2_search", "longrope2", "pi_midtrain", "ntk_midtrain",
         "yarn_midtrain", "longrope2_ppl_objective", "longrope2_long_only")


def run_seed(seed: int, work: Path, base: Path, window: int, budget: Budget, scale: int, max_scale: int) -> dict:
    """Every stage of one seed; returns the evaluation report."""
    target = scale * window
    search_stage(base, target, work / "search", budget, seed, resume=True)
    search_stage(base, target, work / "search_ppl", budget, seed, resume=True, objective="ppl")
    for method in METHODS:
        extend_stage(base, method, target, work / method, resume=True)
    trained = {"longrope2": "search", "longrope2_ppl_objective": "search_ppl", "pi_midtrain": "pi",
               "ntk_midtrain": "ntk", "yarn_midtrain": "yarn"}
    for name, source in trained.items():
        midtrain_stage(work / source, work / name, target, budget.midtrain_steps, seed, resume=True)
    midtrain_stage(work / "search", work / "longrope2_long_only", target, budget.midtrain_steps, seed, resume=True,
                   short_fraction=0.0)
    folders = {"original": base, "pi": work / "pi", "ntk": work / "ntk", "yarn": work / "yarn",
               "longrope2_search": work / "search"}
    folders.update({name: work / name for name in NAMES if name not in folders})
    lengths = [window * 2**k for k in range(max_scale.bit_length()) if 2**k <= max_scale]
    eval_stage(folders, work / "report", lengths, budget, 1000 + seed, resume=True)
    return json.loads((work / "report" / "report.json").read_text())


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(reports: list[dict]) -> dict:
    """``methods`` -> name -> mean / std over seeds of NIAH accuracy per length and of ``ppl_native``."""
    methods = {}
    for name in NAMES:
        entries = [r["models"][name] for r in reports]
        lengths = sorted(entries[0]["niah_mean"], key=int)
        ppl = [e["short"]["ppl"] for e in entries]
        methods[name] = {
            "niah": {n: statistics.fmean(e["niah_mean"][n] for e in entries) for n in lengths},
            "niah_std": {n: _spread([e["niah_mean"][n] for e in entries]) for n in lengths},
            "ppl_native": statistics.fmean(ppl),
            "ppl_native_std": _spread(ppl),
            "retention_pct": statistics.fmean(e["short"]["retention_pct"] for e in entries),
            "ppl_by_length": {n: statistics.fmean(e["perplexity"][n]["ppl"] for e in entries)
                              for n in sorted(entries[0]["perplexity"], key=int)},
            "seeds": len(entries),
        }
    return methods


def markdown(result: dict) -> str:
    methods = result["methods"]
    lengths = list(next(iter(methods.values()))["niah"])
    window = result["native_window"]
    header = "| method | " + " | ".join(f"{int(n) // window}x ({n})" for n in lengths) + " | ppl@native | retention |"
    lines = [
        "# Micro reproduction: LongRoPE2 vs PI / NTK / YaRN on the embedded tiny base",
        "",
        f"Native window {window} tokens, extended to {result['settings']['target_length']} (8x); "
        f"{result['settings']['seeds']} seeds (mean ± std). NIAH: exact-match accuracy, mean over depths. "
        f"Command: `{result['command']}`. Wall time {result['wall_time_s'] / 60:.1f} min.",
        "",
        header,
        "|" + "---|" * (len(lengths) + 3),
    ]
    for name, m in methods.items():
        cells = [f"{100 * m['niah'][n]:.0f} ± {100 * m['niah_std'][n]:.0f}%" for n in lengths]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {m['ppl_native']:.3f} ± {m['ppl_native_std']:.3f} | {m['retention_pct']:.1f}% |")
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
    result = {
        "methods": aggregate(reports),
        "native_window": window,
        "settings": {"seeds": len(args.seeds), "seed_values": args.seeds, "target_length": 8 * window,
                     "eval_lengths": sorted(reports[0]["models"]["original"]["niah_mean"], key=int),
                     "budget": budget.__dict__ | {"depths": list(budget.depths)}, "quick": args.quick,
                     "midtrain_tokens_per_run": budget.midtrain_steps * 2 * 8 * window,
                     "base": "hf_longrope2/tiny_base", "dataset": "builtin:pydoc (eval, search)",
                     "midtrain_data": "builtin:stdlib (long) + builtin:pydoc paragraphs (short), short_fraction "
                                      "0.3 (long_only: 0), lr 1e-4"},
        "versions": versions(),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "command": "python benchmarks/micro_reproduction.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(output.with_suffix(".json"), result)
    write_text_atomically(output.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
