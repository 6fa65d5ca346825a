"""``hf-longrope2 search``: needle-driven evolutionary search of the LongRoPE2 rescale factors.

```bash
hf-longrope2 search --model HuggingFaceTB/SmolLM2-135M --target-length 32768 --output-dir smollm2-32k
accelerate launch recipes/search.py --config recipes/smollm2-135m-32k/search.yaml   # one replica per process
```
"""

from __future__ import annotations

from collections.abc import Sequence

from ..search import SearchConfig, run
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog


def make_parser() -> Parser:
    return make_dataclass_parser((SearchConfig,), "hf-longrope2 search", "Search LongRoPE2 rescale factors.",
                                 epilog("search"))


def parse_args(argv: Sequence[str]) -> SearchConfig:
    return parse_dataclasses((SearchConfig,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    run(parse_args(argv))
    return 0
