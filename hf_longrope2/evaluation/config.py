"""Settings of ``hf-longrope2 eval``: one dataclass, every field a flag (``--help``) and a YAML key.

```python
>>> from hf_longrope2.evaluation import EvalConfig, run
>>> run(EvalConfig(model=["base", "extended"], lengths=[4096, 8192, 16384, 32768], output_dir="report"))
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.needles import TEMPLATES
from ..utils.arguments import OutputArguments, TextSourceArguments, check_choices, flag_name, require_fields
from ..utils.environment import DTYPES
from ..utils.run_folder import RunFolder
from .ruler import RULER_TASKS

NONE = "none"


def _all_ruler_tasks() -> list[str]:
    return list(RULER_TASKS)


@dataclass
class EvalConfig(TextSourceArguments, OutputArguments):
    """What to measure on which models; checked once, here (see [`~hf_longrope2.evaluation.run`])."""

    model: list[str] = field(
        default_factory=list,
        metadata={"help": "Model folders or Hub ids, base model first (--model A --model B or --model A B)"},
    )
    name: list[str] = field(default_factory=list, metadata={"help": "Display names, one per --model (default: folder names)"})
    # OutputArguments' field, redeclared for a help that says what the folder holds
    output_dir: str = field(default="", metadata={"help": "Folder for report.json, report.md and PNGs (required; new)"})
    lengths: list[int] = field(
        default_factory=list, metadata={"help": "NIAH lengths in tokens; default: 1, 2, 4, 8 x the first model's window"}
    )
    depths: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], metadata={"help": "Needle depths (0 = start, 1 = end)"}
    )
    needles_per_cell: int = field(default=4, metadata={"help": "NIAH samples per (length, depth) cell"})
    niah_templates: list[str] = field(
        default_factory=lambda: ["magic"],
        metadata={"help": f"NIAH question templates, each its own table: {sorted(TEMPLATES)} (magic: the paper's; "
                          "echo: the question repeats the needle's words, RULER-style)"},
    )
    niah_nll: bool = field(
        default=True, metadata={"help": "Also score the answer's NLL per NIAH length (one more forward per sample)"}
    )
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
    retention_datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "More sources for short-window retention, each its own column (e.g. builtin:stdlib:heldout)"},
    )
    max_documents: int = field(default=1000, metadata={"help": "Read at most this many documents"})
    dtype: str = field(default="auto", metadata={"help": "auto = bfloat16 on GPU, float32 on CPU", "choices": DTYPES})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, flash_attention_2, eager, ...; default: the model's default"}
    )
    device: str = field(default="auto", metadata={"help": "cuda, cpu, cuda:1, ...; auto = cuda when available"})
    batch_size: int = field(default=1, metadata={"help": "Rows per forward pass (NIAH rows of one length batch)"})
    seed: int = field(default=0, metadata={"help": "Seed of the samples"})
    resume: bool = field(default=False, metadata={"help": "Continue from OUTPUT_DIR.eval-state"})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required (one or more model folders or Hub ids, the base model first)")
        require_fields(self, "output_dir")
        if self.name and len(self.name) != len(self.model):
            raise ValueError(f"--name needs one name per --model: {len(self.name)} names for {len(self.model)} models")
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}; pass --name")
        check_choices(self)
        if [t.lower() for t in self.ruler_tasks] == [NONE]:
            self.ruler_tasks = []
        unknown = sorted(set(self.ruler_tasks) - set(_all_ruler_tasks()))
        if unknown:
            raise ValueError(f"--ruler-tasks: unknown {unknown}; accepted: {_all_ruler_tasks()} or 'none'")
        for key in ("needles_per_cell", "ppl_documents", "short_windows", "ruler_samples", "batch_size", "max_documents"):
            if getattr(self, key) < 1:
                raise ValueError(f"{flag_name(key)} must be >= 1, got {getattr(self, key)}")
        for key in ("lengths", "ppl_lengths", "ruler_lengths"):
            bad = [x for x in getattr(self, key) if x < 16]
            if bad:
                raise ValueError(f"{flag_name(key)} must be token counts >= 16, got {bad}")
        unknown = [t for t in self.niah_templates if t not in TEMPLATES]
        if unknown or not self.niah_templates or len(set(self.niah_templates)) != len(self.niah_templates):
            raise ValueError(f"--niah-templates must be distinct names from {sorted(TEMPLATES)}, got {self.niah_templates}")
        bad_depths = [d for d in self.depths if not 0.0 <= d <= 1.0]
        if bad_depths or not self.depths:
            raise ValueError(f"--depths must be fractions in [0, 1], got {self.depths}")

    @property
    def names(self) -> list[str]:
        return list(self.name) or [Path(m.rstrip("/")).name or m for m in self.model]

    @property
    def run_folder(self) -> RunFolder:
        return RunFolder(self.output_dir, "eval")


REPEATABLE = ("--model", "--name")


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


def merge_model_flags(argv: Sequence[str]) -> list[str]:
    """The ``hf-longrope2 eval`` arguments with every repeated ``--model`` / ``--name`` merged (see above)."""
    return merge_repeated_flags(argv, REPEATABLE)
