"""The pipeline as stages: search, extend, midtraining data, midtrain, evaluate, each into its own folder.

```python
>>> from hf_longrope2.pipeline import Budget, search_stage, eval_stage
>>> search_stage(base=base, target=2048, out=out / "search", budget=budget, seed=0, resume=True)
```

A stage runs unless `resume` and its folder is complete ([`is_complete`]), so an interrupted run reruns only what is
missing. ``hf-longrope2 demo`` and the benchmarks build on these; every argument is a keyword.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from transformers import AutoTokenizer

from .evaluation import EvalConfig
from .evaluation import run as evaluate
from .extension import extend_pretrained
from .midtrain import MidtrainConfig
from .midtrain import run as midtrain
from .publish.cards import card_inputs, write_model_card
from .search import SearchConfig
from .search import run as search
from .tiny.recall_data import RecallCorpusSettings, write_recall_corpus
from .utils.loading import check_model_folder_loadable
from .utils.run_folder import RunFolder

SEARCH_DATASET = "builtin:pydoc"  # the search's needle haystacks (factors only: no weight is trained on them)
DATASET = "builtin:pydoc:heldout"  # NIAH haystacks, perplexity and retention: pretrained on, never midtrained on
RETENTION_DATASETS = ("builtin:stdlib:heldout",)  # retention on the base's other pretraining source, held out too
NIAH_TEMPLATES = ("magic", "echo")  # the paper's question, and one that repeats the needle's words (RULER-style)


@dataclass(frozen=True)
class Budget:
    """How much work each stage does (full run vs --quick)."""

    population: int
    iterations: int
    search_samples: int  # at most 6: builtin:pydoc (SEARCH_DATASET) has 6 documents longer than 2048 tokens
    midtrain_steps: int
    needles: int
    depths: tuple[float, ...]
    ppl_documents: int
    ruler_samples: int = 0  # per (task, length) cell at 2x-8x the window; 0: no RULER-style tasks



def midtrain_config(model: Path, output_dir: Path, target_length: int, steps: int, seed: int, data: Path,
                    short_fraction: float = 0.3, learning_rate: float = 3e-4) -> dict:
    """The midtraining recipe of the demo (written next to its output as ``midtrain.yaml``).

    The data is the recall corpus of [`hf_longrope2.tiny.recall_data`] in `data`: long documents of up to
    `target_length` tokens whose lookups reach far back (long-window rows), and short documents replaying the
    base's pretraining rows (short-window rows, original RoPE), both over the training slices of the base's
    corpus. No document holds the evaluation's needle template, key vocabulary or held-out text.
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


def stage(name: str, folder: Path, *, resume: bool, run: Callable[[], object], done_marker: str | None = None
          ) -> bool:
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


def data_stage(*, base: Path, out: Path, target: int, window: int, steps: int, seed: int, resume: bool) -> bool:
    """The recall corpus for midtraining (enough long and short documents for `steps` steps of 2 rows)."""
    settings = RecallCorpusSettings(target_length=target, window=window, long_documents=2 * steps + 8,
                                    short_documents=8 * steps + 32, seed=seed)

    def run() -> None:
        write_recall_corpus(AutoTokenizer.from_pretrained(base), out, settings, overwrite=True)

    return stage("midtraining data", out, resume=resume, run=run, done_marker="settings.json")


def search_stage(*, base: Path, target: int, out: Path, budget: Budget, seed: int, resume: bool,
                 objective: str = "needle", space: str = "longrope2") -> bool:
    """``hf-longrope2 search`` of the factors of `base` to `target` tokens in `space` into `out`."""
    config = SearchConfig(
        model=str(base), target_length=target, dataset=SEARCH_DATASET, output_dir=str(out), population=budget.population,
        parents=max(2, budget.population // 2), iterations=budget.iterations, num_samples=budget.search_samples,
        candidates_per_step=budget.population, seed=seed, objective=objective, space=space, overwrite=True,
    )
    return stage(f"search ({objective}, space {space})", out, resume=resume, run=lambda: search(config))


def extend_stage(*, base: Path, method: str, target: int, out: Path, resume: bool) -> bool:
    """``hf-longrope2 extend`` of `base` with the `method` factor vector (pi, ntk or yarn), with its card."""
    card = lambda tmp: write_model_card(tmp, base_model=str(base), output_dir=out)  # noqa: E731
    return stage(method, out, resume=resume,
                 run=lambda: extend_pretrained(str(base), out, target, method=method, overwrite=True, write_card=card))


def card_stage(model: Path, report: dict, report_model: str) -> Path:
    """Re-render the card of the midtrained `model` with its evaluation `report`: the card names `model` (the
    folder it describes, as the midtraining log recorded it), never the checkpoints folder beside it."""
    inputs = card_inputs(model)
    return write_model_card(model, output_dir=model, report=report, report_model=report_model, **inputs)


def midtrain_stage(*, model: Path, out: Path, target: int, steps: int, seed: int, resume: bool, data: Path,
                   short_fraction: float = 0.3, learning_rate: float = 3e-4, save_steps: int | None = None) -> bool:
    """``hf-longrope2 midtrain`` of the extended `model` into `out` (its recipe saved as ``out.yaml``)."""
    recipe = midtrain_config(model, out, target, steps, seed, data, short_fraction, learning_rate)
    if save_steps:  # checkpoints (weights only) for a learning curve
        recipe.update(save_strategy="steps", save_steps=save_steps, save_only_model=True)
    config = out.with_name(out.name + ".yaml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"# hf-longrope2 midtrain --config {config.name}   (written by hf-longrope2 demo)\n"
                      + yaml.safe_dump(recipe))
    return stage(f"midtrain {model.name} -> {out.name}", out, resume=resume,
                 run=lambda: midtrain(MidtrainConfig.from_dict(recipe)))


def eval_stage(*, models: dict[str, Path], out: Path, lengths: Sequence[int], budget: Budget, seed: int,
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
        dataset=DATASET, retention_datasets=list(RETENTION_DATASETS), niah_templates=list(NIAH_TEMPLATES),
        seed=seed, overwrite=True,
        resume=resume and RunFolder(out, "eval").has_state(),  # an interrupted evaluation continues from its cells
        **ruler,
    )
    return stage("evaluate", out, resume=resume, run=lambda: evaluate(config))
