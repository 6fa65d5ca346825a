"""Why LongRoPE2 trails YaRN in the micro reproduction: the factor shape and the attention factor, one at a time.

```bash
python benchmarks/micro_reproduction.py --work-dir micro-work      # first: the searches, the data and the baselines
python benchmarks/micro_ablations.py --work-dir micro-work         # then: 3 hybrids per seed, same midtraining
```

The searched LongRoPE2 model and YaRN differ in two things: the factor vector (below the critical dimension
LongRoPE2 scales the pairs NTK-like, ``factor[d_rcd] ** (i / d_rcd)``, where YaRN keeps the fastest pairs at 1 and
ramps up later; above it the search chose the factors) and the attention factor (LongRoPE2's
``sqrt(1 + ln s / ln L)``, 1.1726 for 256 -> 2048, against YaRN's ``0.1 ln s + 1``, 1.2079). Each hybrid swaps
one of them, and gets the same midtraining as every method of the micro reproduction (same recipe, data, steps and
seed), so a difference between a hybrid and its parent is that one change:

- ``longrope2_yarn_left``: the searched vector with YaRN's factors below ``d_rcd`` (LongRoPE2's attention factor);
- ``longrope2_yarn_mscale``: the searched vector with YaRN's attention factor;
- ``yarn_lr2_mscale``: YaRN's vector with LongRoPE2's attention factor.

They are evaluated with the parents (``longrope2``, ``yarn_midtrain``, read from the micro reproduction's work
folder) on the same NIAH grid, answer NLL probes and perplexity. On the first seed, a second test separates distance
from length: the needle right before the question (depth 1.0, about 25 tokens from it) in prompts of 1.5x to 8x the
window, densely over the last eighth of the trained length (``adjacent``: exact match, digits right, and the share
of answers with no digit at all). Results in
``benchmarks/results/micro_ablations.json`` and ``.md``; every stage is kept in the work folder (resumable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from transformers import AutoConfig

from hf_longrope2.demo import QUICK
from hf_longrope2.pipeline import Budget, eval_stage, midtrain_stage
from hf_longrope2.tiny.base import tiny_base_path
from hf_longrope2.utils.atomic import save_atomically, write_json_atomically

if not __package__:  # run as `python benchmarks/micro_ablations.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, envelope, write_results
from benchmarks.micro_reproduction import MICRO, mean_std, niah_digits, plus_minus

PARENTS = ("longrope2", "yarn_midtrain")
HYBRIDS = ("longrope2_yarn_left", "longrope2_yarn_mscale", "yarn_lr2_mscale")
ADJACENT_SAMPLES = 12  # per length


def rope_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())["rope_parameters"]


def hybrid_rope(name: str, searched: dict, yarn: dict) -> dict:
    """The rope parameters of hybrid `name` (see the module docstring) from the searched and YaRN's parameters."""
    if name == "longrope2_yarn_left":
        d = searched["critical_dim"]
        return searched | {"long_factor": yarn["long_factor"][:d] + searched["long_factor"][d:]}
    if name == "longrope2_yarn_mscale":
        return searched | {"long_mscale": yarn["long_mscale"]}
    if name == "yarn_lr2_mscale":
        return yarn | {"long_mscale": searched["long_mscale"]}
    raise ValueError(f"unknown hybrid {name!r}; expected one of {HYBRIDS}")


def make_hybrid(work: Path, name: str) -> Path:
    """The extended (not yet midtrained) model of hybrid `name`: its parent's folder with the rope parameters swapped."""
    out = work / f"{name}_extended"
    if (out / "config.json").exists():
        return out
    parent = work / ("yarn" if name.startswith("yarn") else "search")
    rope = hybrid_rope(name, rope_of(work / "search"), rope_of(work / "yarn"))

    def write(tmp: Path) -> None:
        shutil.copytree(parent, tmp, dirs_exist_ok=True)
        config = json.loads((tmp / "config.json").read_text())
        config["rope_parameters"] = rope
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    save_atomically(out, write, overwrite=True)
    return out


def run_seed(seed: int, work: Path, base: Path, window: int, budget: Budget) -> dict:
    target = 8 * window
    if not (work / "report" / "report.json").exists():
        raise FileNotFoundError(f"{work} has no micro reproduction report; run benchmarks/micro_reproduction.py "
                                f"--work-dir {work.parent} first")
    folders = {"original": base} | {name: work / name for name in PARENTS}
    for name in HYBRIDS:
        midtrain_stage(model=make_hybrid(work, name), out=work / name, target=target, steps=budget.midtrain_steps,
                       seed=seed, resume=True, data=work / "data")
        folders[name] = work / name
    lengths = [window * 2**k for k in range(4)]
    eval_stage(models=folders, out=work / "ablations_report", lengths=lengths,
               budget=dataclasses.replace(budget, ruler_samples=0), seed=1000 + seed, resume=True)
    return json.loads((work / "ablations_report" / "report.json").read_text())  # answer NLL included


def adjacent(work: Path, window: int, budget: Budget, seed: int) -> dict:
    """The needle next to the question at growing lengths, for each midtrained model of one seed (cached)."""
    cache = work / "ablations_adjacent.json"
    if cache.exists():
        return json.loads(cache.read_text())
    lengths = [window * k // 4 for k in (6, 8, 16, 24, 28, 30, 31, 32)]  # 1.5x ... 6x, then the last eighth of 8x
    one_depth = dataclasses.replace(budget, depths=(1.0,), needles=ADJACENT_SAMPLES)
    out = {name: niah_digits(work / name, lengths, one_depth, 4000 + seed) for name in PARENTS + HYBRIDS}
    write_json_atomically(cache, out)
    return out


def aggregate(reports: list[dict]) -> dict:
    methods = {}
    for name in reports[0]["models"]:
        entries = [r["models"][name] for r in reports]
        lengths = sorted(entries[0]["niah_mean"], key=int)
        methods[name] = {
            "niah": {n: mean_std([e["niah_mean"][n] for e in entries]) for n in lengths},
            "answer_nll": {n: mean_std([next(iter(e["answer_nll"].values()))[n] for e in entries]) for n in lengths},
            "retention_pct": mean_std([e["short"]["retention_pct"] for e in entries]),
        }
    return methods


def markdown(result: dict) -> str:
    methods, window = result["methods"], result["native_window"]
    lengths = list(next(iter(methods.values()))["niah"])
    head = [f"{int(n) // window}x" for n in lengths]
    lines = ["# Micro ablations: the factor shape and the attention factor, one at a time", "",
             f"Each hybrid swaps one thing between the searched LongRoPE2 model and YaRN and gets the micro "
             f"reproduction's midtraining ({result['settings']['midtrain_steps']} steps, same data and seed). "
             f"{len(result['settings']['seed_values'])} seeds, mean ± std. Command: `{result['command']}`. "
             f"Wall time {result['wall_time_s'] / 60:.1f} min.", "",
             "| method | " + " | ".join(f"NIAH {h}" for h in head) + " | " + " | ".join(f"answer NLL {h}" for h in head)
             + " | retention |", "|" + "---|" * (2 * len(lengths) + 2)]
    for name, m in methods.items():
        niah = [plus_minus(m["niah"][n], pct=True) for n in lengths]
        nll = [plus_minus(m["answer_nll"][n]) for n in lengths]
        lines.append(f"| {name} | " + " | ".join(niah + nll) + f" | {m['retention_pct']['mean']:.1f}% |")
    sweep = result["adjacent"]
    lengths = list(next(iter(sweep.values())))
    lines += ["", f"## The needle next to the question (depth 1.0), seed {result['settings']['seed_values'][0]}, "
              f"{result['settings']['adjacent_samples']} samples per length: exact match / no digit at all", "",
              "| method | " + " | ".join(f"{int(n) / window:g}x ({n})" for n in lengths) + " |",
              "|" + "---|" * (len(lengths) + 1)]
    for name, row in sweep.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[n]['exact']:.0f}% / {100 * row[n]['no_answer']:.0f}%"
                                                for n in lengths) + " |")
    lines += ["", "Rope parameters of each hybrid (seed " + str(result["settings"]["seed_values"][0]) + "):", ""]
    for name, rope in result["hybrid_rope"].items():
        factors = ", ".join(f"{f:.2f}" for f in rope["long_factor"])
        lines.append(f"- `{name}`: long_mscale {rope['long_mscale']:.4f}, long_factor [{factors}]")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds of the micro reproduction")
    parser.add_argument("--quick", action="store_true", help="The micro reproduction ran with --quick")
    parser.add_argument("--work-dir", default="micro-reproduction-work", help="The micro reproduction's --work-dir")
    parser.add_argument("--output", default=str(RESULTS / "micro_ablations"), help="Results path without suffix")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else MICRO
    base = tiny_base_path()
    window = AutoConfig.from_pretrained(base).max_position_embeddings
    started = time.perf_counter()
    reports = [run_seed(seed, Path(args.work_dir) / f"seed{seed}", base, window, budget) for seed in args.seeds]
    first = Path(args.work_dir) / f"seed{args.seeds[0]}"
    result = {
        "methods": aggregate(reports),
        "native_window": window,
        "hybrid_rope": {name: rope_of(first / name) for name in HYBRIDS},
        "adjacent": adjacent(first, window, budget, args.seeds[0]),
        "settings": {"seed_values": args.seeds, "midtrain_steps": budget.midtrain_steps, "quick": args.quick,
                     "needles": budget.needles, "depths": list(budget.depths),
                     "adjacent_samples": ADJACENT_SAMPLES},
        **envelope(started, "micro_ablations.py", argv),
    }
    write_results(Path(args.output).with_suffix(".json"), result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
