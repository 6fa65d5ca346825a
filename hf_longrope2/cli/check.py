"""``hf-longrope2 check``: measure that the longrope2 rope type behaves as specified, on every architecture.

```bash
hf-longrope2 check                                   # every supported architecture, ~1 min on a CPU
hf-longrope2 check --model-types llama qwen3 --output-dir check   # + check.json
```
"""

from __future__ import annotations

from collections.abc import Sequence

from ..selfcheck import CheckConfig, run
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog


def make_parser() -> Parser:
    return make_dataclass_parser((CheckConfig,), "hf-longrope2 check",
                                 "Measure that the longrope2 rope type behaves as specified, on every architecture.",
                                 epilog("demo"))


def parse_args(argv: Sequence[str]) -> CheckConfig:
    return parse_dataclasses((CheckConfig,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    results = run(parse_args(argv))
    return 0 if all(r["ok"] for r in results.values()) else 1
