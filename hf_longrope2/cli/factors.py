"""``hf-longrope2 factors``: print a PI / NTK / YaRN factor vector and the critical dimensions as JSON.

```bash
hf-longrope2 factors --model HuggingFaceTB/SmolLM2-135M --method yarn --target-length 32768
hf-longrope2 factors --method ntk --rotary-dim 128 --rope-theta 500000 --original-length 8192 --target-length 131072
```
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import AutoConfig

from .. import factors
from ..factors import METHODS
from ..modeling.rope import RopeGeometry
from ..utils.arguments import Parser, check_token_count, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from ..utils.loading import model_source
from . import epilog


@dataclass
class FactorsArguments:
    method: str = field(default="yarn", metadata={"help": f"Baseline factor vector: one of {METHODS}"})
    target_length: int = field(default=0, metadata={"help": "Target context length in tokens (required)"})
    model: str | None = field(
        default=None, metadata={"help": "Model folder or Hub id to read head_dim, rope_theta and window from"}
    )
    rotary_dim: int | None = field(default=None, metadata={"help": "Rotary dimension (instead of --model)"})
    rope_theta: float | None = field(default=None, metadata={"help": "RoPE base (instead of --model)"})
    original_length: int | None = field(default=None, metadata={"help": "Pre-training window (instead of --model)"})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        check_token_count("--target-length", self.target_length)
        if self.rope_theta is not None and not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
            raise ValueError(f"--rope-theta must be a finite number > 1, got {self.rope_theta}")
        if self.rotary_dim is not None and (self.rotary_dim < 2 or self.rotary_dim % 2):
            raise ValueError(f"--rotary-dim must be an even number >= 2, got {self.rotary_dim}")
        check_token_count("--original-length", self.original_length)


def _rope_geometry(args: FactorsArguments) -> tuple[int, float, int]:
    if args.model is not None:
        config = AutoConfig.from_pretrained(model_source(args.model, weights=False))
        geometry = RopeGeometry.from_config(config)
        return geometry.rotary_dim, geometry.rope_theta, geometry.original_window
    missing = [n for n in ("rotary_dim", "rope_theta", "original_length") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"pass --model, or all of --rotary-dim --rope-theta --original-length (missing: {missing})")
    return args.rotary_dim, args.rope_theta, args.original_length


def make_parser() -> Parser:
    return make_dataclass_parser((FactorsArguments,), "hf-longrope2 factors", "Print a baseline factor vector as JSON.",
                                 epilog("extension"))


def parse_args(argv: Sequence[str]) -> FactorsArguments:
    return parse_dataclasses((FactorsArguments,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    dim, theta, original = _rope_geometry(args)
    if args.target_length <= original:
        raise ValueError(f"--target-length ({args.target_length}) must exceed the original window ({original})")
    out = {
        "method": args.method,
        "rotary_dim": dim,
        "rope_theta": theta,
        "original_max_position_embeddings": original,
        "max_position_embeddings": args.target_length,
        "critical_dim": factors.critical_dimension(dim, theta, original),
        "ten_period_dim": factors.ten_period_dimension(dim, theta, original),
        **factors.baseline(args.method, dim, theta, original, args.target_length),
    }
    print(json.dumps(out, indent=2, allow_nan=False))
    return 0
