"""Running an evaluation: every model on the same samples, cell by cell, resumable (``hf-longrope2 eval``).

```python
>>> from hf_longrope2.evaluation import EvalConfig, run
>>> report = run(EvalConfig(model=["base", "extended"], lengths=[4096, 8192], output_dir="report"))
```

The output folder gets ``report.json`` (every number, the settings, versions), ``report.md`` (tables) and PNGs
(a NIAH heatmap per model, accuracy / perplexity / RULER scores vs length), written at once at the end.
Finished cells are kept in ``OUTPUT_DIR.eval-state/`` as the run goes; ``resume`` continues an interrupted
run there. One progress bar counts the cells of every model.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer

from ..data.needles import tokenizer_fingerprint
from ..data.texts import load_texts
from ..modeling.rope import RopeGeometry
from ..utils.environment import torch_dtype, transformers_bars_off
from ..utils.identity import run_identity
from ..utils.loading import load_causal_lm, model_source
from .config import EvalConfig
from .lm_eval_bridge import check_lm_eval_tasks
from .plan import EvalPlan
from .report import assemble, summary_table, write_report


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(path: str, args: EvalConfig, device: torch.device):
    """`path` as an eval-mode causal LM in the chosen dtype and attention implementation, on `device`."""
    kwargs = {"dtype": torch_dtype(args.dtype, device)}
    if args.attn_implementation:
        kwargs["attn_implementation"] = args.attn_implementation
    return load_causal_lm(path, **kwargs).to(device).eval()


@dataclass
class ModelSpec:
    """A model to evaluate: its display name, where it comes from, and how to build it (loaded lazily)."""

    name: str
    path: str
    load: Callable[[], torch.nn.Module]
    config: Any = None  # default: AutoConfig of `path`


def evaluate_models(
    specs: Sequence[ModelSpec], tokenizer, args: EvalConfig, state: dict | None = None, save_state=None
) -> dict:
    """Score every model of `specs` on the same samples and return the report (see the module docstring).

    Args:
        specs: The models, base first (its short-window perplexity is the retention reference).
        tokenizer: Shared by every model.
        args: What to measure.
        state: Finished cells from an earlier run (``{"cells": {model: {cell: result}}}``), updated in place.
        save_state: Called with `state` after every finished cell (for ``--resume``).
    """
    started = time.perf_counter()
    configs = {s.name: s.config if s.config is not None else AutoConfig.from_pretrained(s.path) for s in specs}
    window = RopeGeometry.from_config(configs[specs[0].name]).original_window
    def read(dataset: str) -> list[str]:
        return load_texts(dataset, split=args.dataset_split, text_column=args.text_column,
                          config_name=args.dataset_config, max_documents=args.max_documents)

    texts = read(args.dataset)
    plan = EvalPlan.build(tokenizer, texts, args, window, read(args.ppl_dataset) if args.ppl_dataset else None,
                          {source: read(source) for source in args.retention_datasets})
    state = state if state is not None else {}
    cells = state.setdefault("cells", {})
    total = len(specs) * plan.cells_per_model
    done = sum(len(cells.get(s.name, {})) for s in specs)
    bar = tqdm(total=total, initial=done, desc="eval", unit="cell", dynamic_ncols=True)
    models = {}
    # closing(bar): the bar is closed before an error propagates, so the error line is the last one;
    # transformers' load bars would interleave with ours
    with transformers_bars_off(), contextlib.closing(bar):
        for spec in specs:
            finished = cells.setdefault(spec.name, {})
            geometry = RopeGeometry.from_config(configs[spec.name])
            models[spec.name] = {
                "path": spec.path,
                "original_window": geometry.original_window,
                "max_position_embeddings": geometry.max_position_embeddings,
                "rope_type": geometry.rope_type,
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
    return assemble(args, plan, models, cells, time.perf_counter() - started)


def run_inputs(args: EvalConfig) -> dict:
    """The identity of an evaluation's inputs (what a ``--resume`` must find unchanged): every model folder and
    dataset file by content, every other setting by value (see [`run_identity`])."""
    paths = ("model", "dataset", "ppl_dataset", "retention_datasets", "lm_eval_include_path", "output_dir",
             "overwrite", "resume")
    settings = {k: v for k, v in asdict(args).items() if k not in paths}
    settings["names"] = args.names
    models = {"--model" if len(args.model) == 1 else f"--model[{i}]": m for i, m in enumerate(args.model)}
    data = {"--dataset": args.dataset, "--ppl-dataset": args.ppl_dataset,
            "--lm-eval-include-path": args.lm_eval_include_path,
            **{f"--retention-datasets[{i}]": d for i, d in enumerate(args.retention_datasets)}}
    return run_identity(models, data, settings)


def run(config: EvalConfig) -> dict:
    """Evaluate ``config.model`` side by side and write the report folder ``config.output_dir``.

    The entry point of ``hf-longrope2 eval`` and ``recipes/evaluate.py`` (see the package docstring).

    Returns:
        `dict`: the report (what ``report.json`` holds).
    """
    folder = config.run_folder
    folder.begin(overwrite=config.overwrite, resume=config.resume)
    settings = json.loads(json.dumps(asdict(config), default=str))
    for key in ("overwrite", "resume"):
        settings.pop(key)
    args = replace(config, model=[model_source(path) for path in config.model])  # every model checked before any work
    inputs = run_inputs(args)
    state = {"settings": settings, "inputs": inputs, "cells": {}}
    if config.resume:
        state, state_file = folder.read_state(), folder.state_file
        if not isinstance(state, dict) or not isinstance(state.get("cells"), dict):
            raise ValueError(f"--resume: {state_file} is not an evaluation state (no 'cells'); delete "
                             f"{folder.state_dir} and rerun without --resume")
        folder.check_resume(inputs, state.get("inputs"))
    if args.lm_eval_tasks:  # lm-eval runs after every other cell: what can fail there fails now
        check_lm_eval_tasks(args.lm_eval_tasks, args.lm_eval_include_path)
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

    report = evaluate_models(specs, tokenizer, args, state, folder.save_state)
    folder.publish(lambda tmp: write_report(report, tmp), overwrite=True)
    print(summary_table(report))
    print(f"report: {Path(args.output_dir) / 'report.md'}")
    return report
