"""``hf-longrope2 demo``: the whole method on the embedded tiny base, on a laptop CPU, with no hub.

```bash
hf-longrope2 demo                          # ~10 min on 2 CPU cores -> longrope2-demo/
hf-longrope2 demo --quick                  # ~1 min (CI): fewer candidates, steps and needles
hf-longrope2 demo --output-dir d --resume  # skip the stages an interrupted run finished
```

Stages, each written atomically into its own folder of ``--output-dir`` (so ``--resume`` reruns only what is
missing):

1. ``search/`` and ``search-longrope/``: needle-driven factor search from the 256-token window to 8x (2048 tokens)
   on Python's documentation (``hf-longrope2 search``) in each search space: LongRoPE2's (``--space longrope2``)
   and LongRoPE's (``--space longrope``, every pair searched, started from PI / NTK / YaRN). The one with the
   better needle score is the search-only extended model the next stages use; the demo says which won;
2. ``pi/``, ``ntk/``, ``yarn/``: the same base extended with the classic factor vectors, each with its own
   attention factor (``hf-longrope2 extend``);
3. ``data/``: the midtraining corpus of [`hf_longrope2.tiny.recall_data`]: long documents of up to 2048 tokens whose
   lookups reach far back, over the standard library's sources, and short ones replaying the base's
   pretraining rows;
4. ``longrope2/``: mixed-context-window midtraining of the searched model on it (``hf-longrope2 midtrain``):
   **the extended model** (loads with ``trust_remote_code=True``);
5. ``report/``: ``hf-longrope2 eval`` of original / PI / NTK / YaRN / LongRoPE2 search-only / LongRoPE2
   search + midtrain at 1x, 2x, 4x and 8x the window: ``report.md``, ``report.json`` and PNGs.

The summary table is printed at the end. Nothing here is tuned on the evaluation samples: the search uses its
own needle samples (seed 0), the evaluation others (seed 1). The evaluation's text (Python's documentation)
never appears in the midtraining data, nor its needle template and key vocabulary in a document longer than
the window.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig

from .evaluation.report import summary_table
from .factors import METHODS
from .pipeline import Budget, card_stage, data_stage, eval_stage, extend_stage, midtrain_stage, search_stage
from .tiny.base import tiny_base_path
from .utils.atomic import check_output_dir


@dataclass
class DemoConfig:
    """How the demo runs (see the module docstring)."""

    output_dir: str = field(default="longrope2-demo", metadata={"help": "Folder for every stage and the report"})
    quick: bool = field(default=False, metadata={"help": "A smaller run for CI (about 1 minute on 2 cores; see docs/demo.md)"})
    resume: bool = field(default=False, metadata={"help": "Keep finished stages of an earlier run in --output-dir"})
    overwrite: bool = field(default=False, metadata={"help": "Start over in a non-empty --output-dir"})
    scale: int = field(default=8, metadata={"help": "Extension factor: target length = scale x the base window"})
    seed: int = field(default=0, metadata={"help": "Seed of the search, the midtraining and (+1) the evaluation"})

    def __post_init__(self) -> None:
        if self.scale < 2:
            raise ValueError(f"--scale must be >= 2, got {self.scale}")
        if self.resume and self.overwrite:
            raise ValueError("--resume keeps finished stages and --overwrite deletes them: pass one of them")


FULL = Budget(population=16, iterations=4, search_samples=6, midtrain_steps=150, needles=6,
              depths=(0.0, 0.25, 0.5, 0.75, 1.0), ppl_documents=3, ruler_samples=2)
QUICK = Budget(population=4, iterations=1, search_samples=2, midtrain_steps=6, needles=2, depths=(0.0, 0.5, 1.0),
               ppl_documents=1)


def search_spaces_table(searches: dict[str, Path]) -> tuple[str, str]:
    """(markdown table of each space's best score next to the reference seeds, the winning space's name)."""
    logs = {space: json.loads((folder / "search_log.json").read_text()) for space, folder in searches.items()}
    winner = min(logs, key=lambda space: logs[space]["best"]["score"])
    seeds = logs[winner]["seeds"]
    rows = ["| search space | best needle score (lower is better) | d_rcd | used |", "|---|---|---|---|"]
    rows += [f"| {space} | {log['best']['score']:.4f} | {log['best']['critical_dim']} | "
             f"{'yes' if space == winner else ''} |" for space, log in logs.items()]
    rows += [f"| {name} (reference, its own attention factor) | {seed['score']:.4f} | | |"
             for name, seed in seeds.items()]
    return "\n".join(rows), winner


def run(config: DemoConfig) -> Path:
    """Run every stage (see the module docstring) into ``config.output_dir``; returns the extended model's folder."""
    args = config
    budget = QUICK if args.quick else FULL
    out = Path(args.output_dir)
    if not args.resume:
        check_output_dir(out, args.overwrite)
        if out.exists():
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    base = tiny_base_path()
    window = AutoConfig.from_pretrained(base).max_position_embeddings
    target = args.scale * window
    started = time.perf_counter()
    searches = {"longrope2": out / "search", "longrope": out / "search-longrope"}
    for space, folder in searches.items():
        search_stage(base=base, target=target, out=folder, budget=budget, seed=args.seed, resume=args.resume,
                     space=space)
    spaces, winner = search_spaces_table(searches)
    print(f"[demo] search spaces (the better one is midtrained):\n{spaces}", flush=True)
    for method in METHODS:
        extend_stage(base=base, method=method, target=target, out=out / method, resume=args.resume)
    data_stage(base=base, out=out / "data", target=target, window=window, steps=budget.midtrain_steps, seed=args.seed,
               resume=args.resume)
    midtrain_stage(model=searches[winner], out=out / "longrope2", target=target, steps=budget.midtrain_steps,
                   seed=args.seed, resume=args.resume, data=out / "data")
    models = {"original": base, "pi": out / "pi", "ntk": out / "ntk", "yarn": out / "yarn",
              "longrope2_search": searches[winner], "longrope2": out / "longrope2"}
    lengths = [window * k for k in (1, 2, 4, 8) if window * k <= target]
    ran = eval_stage(models=models, out=out / "report", lengths=lengths, budget=budget, seed=args.seed + 1,
                     resume=args.resume)
    report = json.loads((out / "report" / "report.json").read_text())
    if not ran:
        print(summary_table(report))
    print(f"\nSearch spaces: {winner} won; its factors are longrope2_search and were midtrained into longrope2.\n"
          f"{spaces}")
    card_stage(out / "longrope2", report, "longrope2")
    print(f"[demo] done in {time.perf_counter() - started:.0f} s: extended model {out / 'longrope2'}, "
          f"report {out / 'report' / 'report.md'}")
    return out / "longrope2"
