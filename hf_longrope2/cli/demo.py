"""``hf-longrope2 demo``: the whole method on the embedded tiny base, on a laptop CPU, with no hub.

```bash
hf-longrope2 demo                          # ~10 min on 2 CPU cores -> longrope2-demo/
hf-longrope2 demo --quick                  # ~1 min (CI): fewer candidates, steps and needles
hf-longrope2 demo --output-dir d --resume  # skip the stages an interrupted run finished
```
"""

from __future__ import annotations

from collections.abc import Sequence

from ..demo import DemoConfig, run
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog


def make_parser() -> Parser:
    return make_dataclass_parser((DemoConfig,), "hf-longrope2 demo",
                                 "LongRoPE2 end to end on the embedded tiny base model.", epilog("demo"))


def parse_args(argv: Sequence[str]) -> DemoConfig:
    return parse_dataclasses((DemoConfig,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    run(parse_args(argv))
    return 0
