"""``hf-longrope2 eval``: NIAH grid, perplexity vs length, short-window retention, RULER-style tasks, lm-eval.

```
hf-longrope2 eval --model base-folder --model extended-folder --lengths 4096 8192 16384 32768 --output-dir report
accelerate launch recipes/evaluate.py --config recipes/smollm2-135m-32k/evaluate.yaml      # same main
```

Every model is scored on the same samples: a needle-in-a-haystack grid (lengths x depths, several needles per
cell, greedy answers, exact match; [`hf_longrope2.evaluation.niah`]), perplexity at each length on long documents and
at the first model's original window ([`hf_longrope2.evaluation.perplexity`]; retention is reported against the first
model, so list the base model first), the offline RULER-style tasks ([`hf_longrope2.evaluation.ruler`]) and, with
lm-eval installed, chosen lm-eval tasks on the same model objects ([`hf_longrope2.evaluation.lm_eval_bridge`]). Without
``--dataset`` the haystack and documents are the Python documentation shipped with every Python
(``builtin:pydoc``), so it runs with no hub.

The output folder gets ``report.json`` (every number, the settings, versions), ``report.md`` (tables) and PNGs
(a NIAH heatmap per model, accuracy / perplexity / RULER scores vs length), written at once at the end.
Finished cells are kept in ``OUTPUT_DIR.eval-state/`` as the run goes; ``--resume`` continues an interrupted
run there. One progress bar counts the cells of every model.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")
NONE = "none"


def _all_ruler_tasks() -> list[str]:
    from .ruler import RULER_TASKS

    return list(RULER_TASKS)


@dataclass
class EvalArguments:
    model: list[str] = field(
        default_factory=list,
        metadata={"help": "Model folders or Hub ids, base model first (--model A --model B or --model A B)"},
    )
    name: list[str] = field(default_factory=list, metadata={"help": "Display names, one per --model (default: folder names)"})
    output_dir: str = field(default="", metadata={"help": "Folder for report.json, report.md and PNGs (required; new)"})
    lengths: list[int] = field(
        default_factory=list, metadata={"help": "NIAH lengths in tokens; default: 1, 2, 4, 8 x the first model's window"}
    )
    depths: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], metadata={"help": "Needle depths (0 = start, 1 = end)"}
    )
    needles_per_cell: int = field(default=4, metadata={"help": "NIAH samples per (length, depth) cell"})
    ppl_lengths: list[int] = field(default_factory=list, metadata={"help": "Perplexity lengths; default: --lengths"})
    ppl_documents: int = field(default=4, metadata={"help": "Documents per perplexity length (the first L tokens each)"})
    short_windows: int = field(default=8, metadata={"help": "Windows of the original length for the retention ppl"})
    ruler_tasks: list[str] = field(
        default_factory=_all_ruler_tasks, metadata={"help": "RULER-style tasks, or 'none' (default: all)"}
    )
    ruler_lengths: list[int] = field(default_factory=list, metadata={"help": "RULER lengths; default: --lengths"})
    ruler_samples: int = field(default=2, metadata={"help": "Samples per (task, length) cell"})
    lm_eval_tasks: list[str] = field(
        default_factory=list, metadata={"help": "lm-eval tasks (e.g. mmlu hellaswag gsm8k ruler); needs lm-eval"}
    )
    lm_eval_limit: float | None = field(default=None, metadata={"help": "lm-eval --limit (examples per task)"})
    lm_eval_num_fewshot: int | None = field(default=None, metadata={"help": "lm-eval few-shot examples"})
    lm_eval_include_path: str | None = field(default=None, metadata={"help": "Folder of extra lm-eval task YAMLs"})
    lm_eval_max_seq_lengths: list[int] = field(
        default_factory=list, metadata={"help": "Lengths for lm-eval's RULER tasks (metadata max_seq_lengths)"}
    )
    dataset: str = field(
        default="builtin:pydoc",
        metadata={
            "help": "Haystack and documents: Hub dataset id, local .txt/.md/.jsonl/.json/.parquet file or folder, "
            "or builtin:pydoc / builtin:stdlib (offline, the default)"
        },
    )
    ppl_dataset: str | None = field(
        default=None,
        metadata={"help": "Documents for perplexity and retention, if not --dataset (e.g. builtin:stdlib: long files)"},
    )
    dataset_split: str = field(default="validation", metadata={"help": "Split of a Hub dataset"})
    dataset_config: str | None = field(default=None, metadata={"help": "Config name of a Hub dataset"})
    text_column: str = field(default="text", metadata={"help": "Column holding the text (Hub, jsonl, json, parquet)"})
    max_documents: int = field(default=1000, metadata={"help": "Read at most this many documents"})
    dtype: str = field(default="auto", metadata={"help": f"One of {DTYPES}; auto = bfloat16 on GPU, float32 on CPU"})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, flash_attention_2, eager, ...; default: the model's default"}
    )
    device: str = field(default="auto", metadata={"help": "cuda, cpu, cuda:1, ...; auto = cuda when available"})
    batch_size: int = field(default=1, metadata={"help": "Rows per forward pass (NIAH rows of one length batch)"})
    seed: int = field(default=0, metadata={"help": "Seed of the samples"})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})
    resume: bool = field(default=False, metadata={"help": "Continue from OUTPUT_DIR.eval-state"})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required (one or more model folders or Hub ids, the base model first)")
        if not self.output_dir:
            raise ValueError("--output-dir is required")
        if self.name and len(self.name) != len(self.model):
            raise ValueError(f"--name needs one name per --model: {len(self.name)} names for {len(self.model)} models")
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}; pass --name")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")
        if [t.lower() for t in self.ruler_tasks] == [NONE]:
            self.ruler_tasks = []
        unknown = sorted(set(self.ruler_tasks) - set(_all_ruler_tasks()))
        if unknown:
            raise ValueError(f"--ruler-tasks: unknown {unknown}; accepted: {_all_ruler_tasks()} or 'none'")
        for key in ("needles_per_cell", "ppl_documents", "short_windows", "ruler_samples", "batch_size", "max_documents"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        for key in ("lengths", "ppl_lengths", "ruler_lengths"):
            bad = [x for x in getattr(self, key) if x < 16]
            if bad:
                raise ValueError(f"--{key.replace('_', '-')} must be token counts >= 16, got {bad}")
        bad_depths = [d for d in self.depths if not 0.0 <= d <= 1.0]
        if bad_depths or not self.depths:
            raise ValueError(f"--depths must be fractions in [0, 1], got {self.depths}")

    @property
    def names(self) -> list[str]:
        return list(self.name) or [Path(m.rstrip("/")).name or m for m in self.model]

    @property
    def state_dir(self) -> Path:
        out = Path(self.output_dir)
        return out.with_name(out.name + ".eval-state")


def merge_repeated_flags(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``--model A --model B`` -> ``--model A B`` (argparse lists take one flag with several values)."""
    argv = list(argv)
    for flag in flags:
        values, rest, i = [], [], 0
        seen = False
        while i < len(argv):
            if argv[i] == flag:
                seen = True
                i += 1
                while i < len(argv) and not argv[i].startswith("--"):
                    values.append(argv[i])
                    i += 1
            else:
                rest.append(argv[i])
                i += 1
        argv = rest + ([flag, *values] if seen else [])
    return argv


def original_window(config) -> int:
    """The pre-training window of a (possibly extended) model config."""
    from ..modeling.modeling_longrope2 import longrope2_parameters

    params = longrope2_parameters(config)
    return int(params.get("original_max_position_embeddings") or config.max_position_embeddings)


def rope_type(config) -> str:
    from ..modeling.modeling_longrope2 import longrope2_parameters

    return str(longrope2_parameters(config).get("rope_type", "default"))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(path: str, args: EvalArguments, device: torch.device):
    """`path` as an eval-mode causal LM in the chosen dtype and attention implementation, on `device`."""
    from transformers import AutoModelForCausalLM

    from ..modeling import rope  # noqa: F401  (registers the longrope2 rope type and auto classes)

    dtype = (torch.bfloat16 if device.type == "cuda" else torch.float32) if args.dtype == "auto" else getattr(
        torch, args.dtype
    )
    kwargs = {"dtype": dtype}
    if args.attn_implementation:
        kwargs["attn_implementation"] = args.attn_implementation
    return AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device).eval()


@dataclass
class ModelSpec:
    """A model to evaluate: its display name, where it comes from, and how to build it (loaded lazily)."""

    name: str
    path: str
    load: Callable[[], torch.nn.Module]
    config: Any = None  # default: AutoConfig of `path`


def evaluate_models(
    specs: Sequence[ModelSpec], tokenizer, args: EvalArguments, state: dict | None = None, save_state=None
) -> dict:
    """Score every model of `specs` on the same samples and return the report (see the module docstring).

    Args:
        specs: The models, base first (its short-window perplexity is the retention reference).
        tokenizer: Shared by every model.
        args: What to measure.
        state: Finished cells from an earlier run (``{"cells": {model: {cell: result}}}``), updated in place.
        save_state: Called with `state` after every finished cell (for ``--resume``).
    """
    from transformers import AutoConfig

    from ..data.texts import load_texts
    from .plan import EvalPlan

    started = time.perf_counter()
    configs = {s.name: s.config if s.config is not None else AutoConfig.from_pretrained(s.path) for s in specs}
    window = original_window(configs[specs[0].name])
    def read(dataset: str) -> list[str]:
        return load_texts(dataset, split=args.dataset_split, text_column=args.text_column,
                          config_name=args.dataset_config, max_documents=args.max_documents)

    texts = read(args.dataset)
    plan = EvalPlan.build(tokenizer, texts, args, window, read(args.ppl_dataset) if args.ppl_dataset else None)
    state = state if state is not None else {}
    cells = state.setdefault("cells", {})
    from tqdm.auto import tqdm

    total = len(specs) * plan.cells_per_model
    done = sum(len(cells.get(s.name, {})) for s in specs)
    bar = tqdm(total=total, initial=done, desc="eval", unit="cell", dynamic_ncols=True)
    models = {}
    for spec in specs:
        finished = cells.setdefault(spec.name, {})
        config = configs[spec.name]
        models[spec.name] = {
            "path": spec.path,
            "original_window": original_window(config),
            "max_position_embeddings": int(config.max_position_embeddings),
            "rope_type": rope_type(config),
        }
        if len(finished) < plan.cells_per_model:
            bar.set_postfix_str(spec.name)
            model = spec.load()

            def record(key: str, value, finished=finished) -> None:
                finished[key] = value
                bar.update(1)
                if save_state is not None:
                    save_state(state)

            plan.run(model, tokenizer, finished, record, args)
            del model
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    bar.close()
    from .report import assemble

    return assemble(args, plan, models, cells, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hf-longrope2 eval`` and ``recipes/evaluate.py``."""
    import json
    import shutil
    import sys

    from transformers import AutoTokenizer

    from ..data.needles import tokenizer_fingerprint
    from ..utils.arguments import parse_dataclass
    from ..utils.atomic import check_output_dir, save_atomically, write_json_atomically
    from ..utils.loading import model_source, read_json
    from .report import write_report

    argv = merge_repeated_flags(sys.argv[1:] if argv is None else argv, ("--model", "--name"))
    args = parse_dataclass(EvalArguments, argv, "hf-longrope2 eval", "Evaluate long-context models side by side.")
    check_output_dir(args.output_dir, args.overwrite)
    state_file = args.state_dir / "state.json"
    settings = json.loads(json.dumps(asdict(args), default=str))
    for key in ("overwrite", "resume"):
        settings.pop(key)
    if args.resume:
        if not state_file.exists():
            raise FileNotFoundError(f"--resume: no evaluation state at {state_file}")
        state = read_json(state_file, "--resume: the evaluation state")
        if not isinstance(state, dict) or not isinstance(state.get("cells"), dict):
            raise ValueError(f"--resume: {state_file} is not an evaluation state (no 'cells'); delete "
                             f"{args.state_dir} and rerun without --resume")
        if state.get("settings") != settings:
            raise ValueError(f"--resume: the settings differ from the interrupted run's ({state_file}); rerun without it")
    else:
        if state_file.exists():
            raise FileExistsError(
                f"an earlier evaluation left its state in {args.state_dir}; pass --resume to continue it, or delete it"
            )
        state = {"settings": settings, "cells": {}}
    args.model = [model_source(path) for path in args.model]  # every model checked before any work
    tokenizer = AutoTokenizer.from_pretrained(args.model[0])
    reference = tokenizer_fingerprint(tokenizer)
    for path in args.model[1:]:
        other = AutoTokenizer.from_pretrained(path)
        if tokenizer_fingerprint(other) != reference:
            raise ValueError(f"{path} has a different tokenizer from {args.model[0]}; every model must share one")
    device = resolve_device(args.device)
    specs = [
        ModelSpec(name, path, lambda path=path: load_model(path, args, device))
        for name, path in zip(args.names, args.model, strict=True)
    ]

    def save_state(data: dict) -> None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(state_file, data)

    report = evaluate_models(specs, tokenizer, args, state, save_state)
    save_atomically(args.output_dir, lambda tmp: write_report(report, tmp), overwrite=True)
    shutil.rmtree(args.state_dir, ignore_errors=True)
    from .report import summary_table

    print(summary_table(report))
    print(f"report: {Path(args.output_dir) / 'report.md'}")
    return 0
