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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import AutoConfig, AutoTokenizer

from .evaluation import EvalConfig
from .evaluation import run as evaluate
from .evaluation.report import summary_table
from .extension import extend_pretrained
from .factors import METHODS
from .midtrain import MidtrainConfig
from .midtrain import run as midtrain
from .publish.cards import card_inputs, write_model_card
from .search import SearchConfig
from .search import run as search
from .tiny.base import tiny_base_path
from .tiny.recall_data import RecallCorpusSettings, write_recall_corpus
from .utils.atomic import check_output_dir
from .utils.loading import check_model_folder_loadable

DATASET = "builtin:pydoc"  # needle haystacks and perplexity documents, never midtrained on


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


@dataclass(frozen=True)
class Budget:
    """How much work each stage does (full run vs --quick)."""

    population: int
    iterations: int
    search_samples: int  # at most 6: builtin:pydoc has 6 documents longer than 2048 tokens
    midtrain_steps: int
    needles: int
    depths: tuple[float, ...]
    ppl_documents: int
    ruler_samples: int = 0  # per (task, length) cell at 2x-8x the window; 0: no RULER-style tasks


FULL = Budget(population=16, iterations=4, search_samples=6, midtrain_steps=150, needles=6,
              depths=(0.0, 0.25, 0.5, 0.75, 1.0), ppl_documents=3, ruler_samples=2)
QUICK = Budget(population=4, iterations=1, search_samples=2, midtrain_steps=6, needles=2, depths=(0.0, 0.5, 1.0),
               ppl_documents=1)
# benchmarks/micro_reproduction.py: 11 models per seed, so fewer needles than the demo; RULER tasks at 8x only
MICRO = Budget(population=16, iterations=4, search_samples=6, midtrain_steps=80, needles=4,
               depths=(0.0, 0.5, 1.0), ppl_documents=2, ruler_samples=2)


def midtrain_config(model: Path, output_dir: Path, target_length: int, steps: int, seed: int, data: Path,
                    short_fraction: float = 0.3, learning_rate: float = 3e-4) -> dict:
    """The midtraining recipe of the demo (written next to its output as ``midtrain.yaml``).

    The data is the recall corpus of [`hf_longrope2.tiny.recall_data`] in `data`: long documents of up to
    `target_length` tokens whose lookups reach far back (long-window rows), and short documents replaying the
    base's pretraining rows (short-window rows, original RoPE). No long document holds the evaluation's needle
    template or key vocabulary, and no document its text.
    """
    return {
        "model_name_or_path": str(model),
        "output_dir": str(output_dir),
        "trainer": "sft",
        "target_length": target_length,
        "mixture": [
            {"name": "recall-long", "dataset": str(data / "long.jsonl"), "tokenized": True, "weight": 0.7},
            {"name": "recall-short", "dataset": str(data / "short.jsonl"), "tokenized": True, "weight": 0.3},
        ],
        "short_fraction": short_fraction,
        "max_steps": steps,
        "per_device_train_batch_size": 2,
        "learning_rate": learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": max(1, steps // 10),
        "logging_steps": max(1, steps // 6),
        "save_strategy": "no",
        "report_to": "none",
        "seed": seed,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": False,
        "gradient_checkpointing": False,
        "dataset_num_proc": 1,
        "overwrite": True,  # a stage that runs again starts over (with --resume, only an incomplete one does)
    }


def data_stage(base: Path, out: Path, target: int, window: int, steps: int, seed: int, resume: bool) -> bool:
    """The recall corpus for midtraining (enough long and short documents for `steps` steps of 2 rows)."""
    settings = RecallCorpusSettings(target_length=target, window=window, long_documents=2 * steps + 8,
                                    short_documents=8 * steps + 32, seed=seed)

    def run() -> None:
        write_recall_corpus(AutoTokenizer.from_pretrained(base), out, settings, overwrite=True)

    return stage("midtraining data", out, resume, run, done_marker="settings.json")


def is_complete(folder: Path, done_marker: str | None = None) -> bool:
    """True when `folder` holds a finished stage: its marker, a report, or a model whose weights are complete."""
    if done_marker:
        return (folder / done_marker).exists()
    if (folder / "report.json").is_file():
        return True
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        return False
    try:
        check_model_folder_loadable(folder)
    except ValueError:
        return False
    return True


def stage(name: str, folder: Path, resume: bool, run: Callable[[], object], done_marker: str | None = None) -> bool:
    """Run one stage unless `resume` and its folder is complete (see [`is_complete`]); True when it ran."""
    if resume and is_complete(folder, done_marker):
        print(f"[demo] {name}: kept from the earlier run ({folder})")
        return False
    if resume and folder.exists():
        print(f"[demo] {name}: {folder} is incomplete; running it again", flush=True)
        shutil.rmtree(folder)
    started = time.perf_counter()
    print(f"[demo] {name} -> {folder}", flush=True)
    run()
    print(f"[demo] {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return True


def search_stage(base: Path, target: int, out: Path, budget: Budget, seed: int, resume: bool,
                 objective: str = "needle", space: str = "longrope2") -> bool:
    """``hf-longrope2 search`` of the factors of `base` to `target` tokens in `space` into `out`."""
    config = SearchConfig(
        model=str(base), target_length=target, dataset=DATASET, output_dir=str(out), population=budget.population,
        parents=max(2, budget.population // 2), iterations=budget.iterations, num_samples=budget.search_samples,
        candidates_per_step=budget.population, seed=seed, objective=objective, space=space, overwrite=True,
    )
    return stage(f"search ({objective}, space {space})", out, resume, lambda: search(config))


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


def extend_stage(base: Path, method: str, target: int, out: Path, resume: bool) -> bool:
    """``hf-longrope2 extend`` of `base` with the `method` factor vector (pi, ntk or yarn)."""
    return stage(method, out, resume,
                 lambda: extend_pretrained(str(base), out, target, method=method, overwrite=True))


def midtrain_stage(model: Path, out: Path, target: int, steps: int, seed: int, resume: bool, data: Path,
                   short_fraction: float = 0.3, learning_rate: float = 3e-4, save_steps: int | None = None) -> bool:
    """``hf-longrope2 midtrain`` of the extended `model` into `out` (its recipe saved as ``out.yaml``)."""
    recipe = midtrain_config(model, out, target, steps, seed, data, short_fraction, learning_rate)
    if save_steps:  # checkpoints (weights only) for a learning curve
        recipe.update(save_strategy="steps", save_steps=save_steps, save_only_model=True)
    config = out.with_name(out.name + ".yaml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"# hf-longrope2 midtrain --config {config.name}   (written by hf-longrope2 demo)\n"
                      + yaml.safe_dump(recipe))
    return stage(f"midtrain {model.name} -> {out.name}", out, resume,
                 lambda: midtrain(MidtrainConfig.from_dict(recipe)))


def eval_stage(models: dict[str, Path], out: Path, lengths: Sequence[int], budget: Budget, seed: int,
               resume: bool, ruler_lengths: Sequence[int] | None = None, ruler_tasks: Sequence[str] | None = None
               ) -> bool:
    """``hf-longrope2 eval`` of `models` (base first) into `out`."""
    ruler: dict = {"ruler_tasks": []}
    if budget.ruler_samples:
        ruler = {"ruler_samples": budget.ruler_samples,
                 "ruler_lengths": list(lengths[1:] if ruler_lengths is None else ruler_lengths)}
        if ruler_tasks:
            ruler["ruler_tasks"] = list(ruler_tasks)
    config = EvalConfig(
        model=[str(path) for path in models.values()], name=list(models), output_dir=str(out), lengths=list(lengths),
        depths=list(budget.depths), needles_per_cell=budget.needles, ppl_documents=budget.ppl_documents,
        dataset=DATASET, seed=seed, overwrite=True,
        resume=resume and Path(f"{out}.eval-state").exists(),  # an interrupted evaluation continues from its cells
        **ruler,
    )
    return stage("evaluate", out, resume, lambda: evaluate(config))


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
        search_stage(base, target, folder, budget, args.seed, args.resume, space=space)
    spaces, winner = search_spaces_table(searches)
    print(f"[demo] search spaces (the better one is midtrained):\n{spaces}", flush=True)
    for method in METHODS:
        extend_stage(base, method, target, out / method, args.resume)
    data_stage(base, out / "data", target, window, budget.midtrain_steps, args.seed, args.resume)
    midtrain_stage(searches[winner], out / "longrope2", target, budget.midtrain_steps, args.seed, args.resume,
                   out / "data")
    models = {"original": base, "pi": out / "pi", "ntk": out / "ntk", "yarn": out / "yarn",
              "longrope2_search": searches[winner], "longrope2": out / "longrope2"}
    lengths = [window * k for k in (1, 2, 4, 8) if window * k <= target]
    ran = eval_stage(models, out / "report", lengths, budget, args.seed + 1, args.resume)
    report = json.loads((out / "report" / "report.json").read_text())
    if not ran:
        print(summary_table(report))
    print(f"\nSearch spaces: {winner} won; its factors are longrope2_search and were midtrained into longrope2.\n"
          f"{spaces}")
    write_model_card(out / "longrope2", **card_inputs(out / "longrope2"), report=report, report_model="longrope2")
    print(f"[demo] done in {time.perf_counter() - started:.0f} s: extended model {out / 'longrope2'}, "
          f"report {out / 'report' / 'report.md'}")
    return out / "longrope2"
