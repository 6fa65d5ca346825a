"""``hf-longrope2 extend``: extend a model with a factor vector and save a folder that loads anywhere.

```bash
hf-longrope2 extend --model HuggingFaceTB/SmolLM2-135M --method yarn --target-length 32768 --output-dir smollm2-32k
hf-longrope2 extend --model HuggingFaceTB/SmolLM2-135M --factors-file factors.json --target-length 32768 --output-dir out
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..extension import extend_pretrained
from ..factors import METHODS
from ..modeling.rope import LongRoPE2Parameters
from ..utils.arguments import Parser, check_token_count, parse_dataclasses, require_fields
from ..utils.arguments import make_parser as make_dataclass_parser
from ..utils.environment import DTYPES
from . import epilog


@dataclass
class ExtendArguments:
    model: str = field(default="", metadata={"help": "Model folder or Hub id of a supported causal LM (required)"})
    output_dir: str = field(
        default="", metadata={"help": "Folder to write the extended model to (required, must not exist or be empty)"}
    )
    target_length: int = field(
        default=0, metadata={"help": "Target context length (max_position_embeddings) in tokens (required)"}
    )
    method: str = field(
        default="yarn", metadata={"help": f"Factor vector: one of {METHODS}; ignored with --factors-file"}
    )
    factors_file: str | None = field(
        default=None, metadata={"help": "JSON file with 'long_factor' (and optional 'critical_dim', 'long_mscale')"}
    )
    original_length: int | None = field(
        default=None, metadata={"help": "Pre-training window; default: the model's current window"}
    )
    dtype: str = field(default="auto", metadata={"help": "Weights dtype: auto, float32, bfloat16 or float16"})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})

    def __post_init__(self) -> None:
        require_fields(self, "model", "output_dir")
        check_token_count("--target-length", self.target_length)
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")


def make_parser() -> Parser:
    return make_dataclass_parser((ExtendArguments,), "hf-longrope2 extend",
                                 "Extend a model with a factor vector and save it.", epilog("extension"))


def parse_args(argv: Sequence[str]) -> ExtendArguments:
    return parse_dataclasses((ExtendArguments,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    model = extend_pretrained(args.model, args.output_dir, args.target_length, method=args.method,
                              factors_file=args.factors_file, original_length=args.original_length, dtype=args.dtype,
                              overwrite=args.overwrite)
    p = LongRoPE2Parameters.from_config(model.config)
    print(
        f"extended {args.model} from {p.original_max_position_embeddings} to {p.max_position_embeddings} "
        f"tokens (long_mscale {p.long_mscale:.4f}) -> {Path(args.output_dir)}"
    )
    return 0
