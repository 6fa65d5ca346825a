"""The parser of ``recipes/pretrain_tiny.py`` (a recipe, not a verb): pretrain the embedded tiny base model.

```bash
python recipes/pretrain_tiny.py --output-dir tiny-base                  # the shipped model: see its README.md
python recipes/pretrain_tiny.py --output-dir tiny-base --resume         # continue an interrupted run
```
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..pretrain_tiny import PretrainConfig, run
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog


def make_parser() -> Parser:
    return make_dataclass_parser((PretrainConfig,), "recipes/pretrain_tiny.py",
                                 "Pretrain the embedded tiny base model on an offline corpus.", epilog("demo"))


def parse_args(argv: Sequence[str]) -> PretrainConfig:
    return parse_dataclasses((PretrainConfig,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    print(json.dumps(run(parse_args(argv))))
    return 0
