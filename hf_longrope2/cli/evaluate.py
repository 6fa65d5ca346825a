"""``hf-longrope2 eval``: evaluate long-context models side by side (NIAH, perplexity, retention, RULER, lm-eval).

```bash
hf-longrope2 eval --model base-folder --model extended-folder --lengths 4096 8192 16384 32768 --output-dir report
accelerate launch recipes/evaluate.py --config recipes/smollm2-135m-32k/evaluate.yaml      # same main
```
"""

from __future__ import annotations

from collections.abc import Sequence

from ..evaluation import EvalConfig, run
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog

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


def make_parser() -> Parser:
    return make_dataclass_parser((EvalConfig,), "hf-longrope2 eval", "Evaluate long-context models side by side.",
                                 epilog("evaluation"))


def parse_args(argv: Sequence[str]) -> EvalConfig:
    return parse_dataclasses((EvalConfig,), merge_repeated_flags(argv, REPEATABLE), parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    run(parse_args(argv))
    return 0
