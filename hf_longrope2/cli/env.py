"""``hf-longrope2 env``: print the versions that matter and the supported architectures.

```bash
hf-longrope2 env
```
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from ..modeling import SUPPORTED_MODEL_TYPES
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from ..utils.environment import __version__
from . import epilog

PACKAGES = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "huggingface-hub", "flash-attn")


@dataclass
class EnvArguments:
    """``hf-longrope2 env`` takes no options."""


def make_parser() -> Parser:
    return make_dataclass_parser((EnvArguments,), "hf-longrope2 env", "Print versions and the supported architectures.",
                                 epilog("extension"))


def parse_args(argv: Sequence[str]) -> EnvArguments:
    return parse_dataclasses((EnvArguments,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    parse_args(argv)
    print(f"hf-longrope2 {__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    for name in PACKAGES:
        try:
            print(f"{name} {version(name)}")
        except PackageNotFoundError:
            print(f"{name} (not installed)")
    print("supported model_type:", ", ".join(SUPPORTED_MODEL_TYPES))
    return 0
