"""Settings of ``hf-longrope2 search``: one dataclass, every field a flag (``--help``) and a YAML key.

```python
>>> from hf_longrope2.search import SearchConfig, run
>>> run(SearchConfig(model="HuggingFaceTB/SmolLM2-135M", target_length=32768, output_dir="smollm2-32k"))
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..utils.arguments import (
    ModelArguments,
    OutputArguments,
    TextSourceArguments,
    check_choices,
    check_token_count,
    flag_name,
    require_fields,
)
from ..utils.environment import DTYPES
from ..utils.run_folder import RunFolder
from .space import SPACES

DEFAULT_PARENTS = 32  # the paper's, for its population of 64
RACING = ("paired", "exact", "off")  # how candidates are dropped before their last sample (search/scoring.py)


@dataclass
class SearchConfig(TextSourceArguments, OutputArguments, ModelArguments):
    """What a search runs on and how hard it looks; checked once, here (see [`~hf_longrope2.search.run`])."""

    target_length: int = field(default=0, metadata={"help": "Target context length in tokens (required)"})
    dataset: str = field(
        default="emozilla/pg19",
        metadata={
            "help": "Haystack source: Hub dataset id, a local .txt/.md/.jsonl/.json/.parquet file or folder, or "
            "builtin:pydoc / builtin:stdlib (offline). Default: PG19 (the paper's choice)"
        },
    )
    num_samples: int = field(default=10, metadata={"help": "Needle samples, one haystack document each (paper: 10)"})
    population: int = field(default=64, metadata={"help": "Population size P (paper: 64)"})
    iterations: int = field(default=40, metadata={"help": "Evolution iterations after the initial population"})
    mutation_prob: float = field(default=0.3, metadata={"help": "Per-pair mutation / crossover probability"})
    parents: int | None = field(
        default=None,
        metadata={"help": f"Elitist parents kept per iteration, at most P/2 (a note says when that caps it); "
                  f"default: {DEFAULT_PARENTS} or P/2, the smaller"},
    )
    critical_dims: str | None = field(
        default=None,
        metadata={
            "help": "d_rcd values to search: 'LO-HI' or 'a,b,c'. Default: from the 10-period bound to the "
            "theoretical critical dimension"
        },
    )
    objective: str = field(
        default="needle",
        metadata={"help": "needle (answer-token NLL) or ppl (every token; the paper's ablation)",
                  "choices": ("needle", "ppl")},
    )
    max_depth: float = field(default=0.5, metadata={"help": "Needle depths spread over [0, max_depth] of the haystack"})
    seed: int = field(default=0, metadata={"help": "Seed of the samples and of the evolution"})
    dtype: str = field(default="auto", metadata={"help": "auto = bfloat16 on GPU, float32 on CPU", "choices": DTYPES})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, eager, flash_attention_2, ...; default: the model's default"}
    )
    batch_size: int = field(default=1, metadata={"help": "Samples per forward pass"})
    candidates_per_step: int = field(
        default=16,
        metadata={
            "help": "Candidates scored between state saves and pruning-threshold updates; spread over processes. "
            "Results do not depend on the number of processes, but do on this value"
        },
    )
    space: str = field(
        default="longrope2",
        metadata={
            "help": "longrope2 (the paper's: NTK-shaped pairs below d_rcd, a monotone tail in [s, 2s]) or longrope "
            "(every pair searched, monotone in [1, 2s], started from PI/NTK/YaRN and their mutants)",
            "choices": SPACES,
        },
    )
    racing: str = field(
        default="paired",
        metadata={
            "help": "Dropping candidates before their last sample: paired (exact bound + a paired t-test against the "
            "k-th parent), exact (only when the partial sum already exceeds the k-th parent's total), off",
            "choices": RACING,
        },
    )
    racing_confidence: float = field(
        default=0.95, metadata={"help": "Confidence of the paired racing test (one-sided), in [0.5, 1)"}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from the state in OUTPUT_DIR.search-state"})

    def __post_init__(self) -> None:
        require_fields(self, "model", "output_dir")
        check_token_count("--target-length", self.target_length)
        # not a field, so not in asdict(): a resumed search compares the resolved number, and only a --parents the
        # user gave earns the "capped at P/2" note
        self.parents_given = self.parents is not None
        if self.parents is None:
            self.parents = min(DEFAULT_PARENTS, max(1, self.population // 2))
        checks = {
            "num_samples": self.num_samples >= 1,
            "population": self.population >= 2,
            "iterations": self.iterations >= 0,
            "parents": self.parents >= 1,
            "batch_size": self.batch_size >= 1,
            "candidates_per_step": self.candidates_per_step >= 1,
            "mutation_prob": 0.0 < self.mutation_prob <= 1.0,
            "racing_confidence": 0.5 <= self.racing_confidence < 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{flag_name(name)}: invalid value {getattr(self, name)!r}")
        check_choices(self)

    @property
    def run_folder(self) -> RunFolder:
        return RunFolder(self.output_dir, "search")

    def result_settings(self) -> dict:
        """The settings a resumed search must share with the state it continues."""
        skip = {"resume", "overwrite", "output_dir"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def parse_critical_dims(spec: str | None, low: int, high: int, half: int) -> list[int]:
    """`spec` 'LO-HI' or 'a,b,c' (or None: ``[low, high]``) as a sorted list inside ``[0, half)``."""
    if spec is None:
        values = list(range(low, min(high, half - 1) + 1))
    else:
        try:
            if "-" in spec:
                lo, hi = (int(x) for x in spec.split("-"))
                values = list(range(lo, hi + 1))
            else:
                values = [int(x) for x in spec.split(",")]
        except ValueError as exc:
            raise ValueError(f"--critical-dims must be 'LO-HI' or 'a,b,c', got {spec!r}") from exc
    bad = [v for v in values if not 0 <= v < half]
    if not values or bad:
        raise ValueError(f"--critical-dims must lie in [0, {half - 1}] (rotary pairs), got {spec!r}")
    return sorted(set(values))
