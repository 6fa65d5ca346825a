"""``hf-longrope2 export-serving``: a longrope2 folder in transformers' built-in ``longrope`` format (vLLM reads it).

```bash
hf-longrope2 export-serving --model smollm2-32k --output-dir smollm2-32k-serving
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..publish.cards import export_with_card
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog


@dataclass
class ExportArguments:
    model: str = field(default="", metadata={"help": "A saved longrope2 model folder (required)"})
    output_dir: str = field(
        default="", metadata={"help": "Destination folder in the built-in 'longrope' format (required)"}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})
    link: bool = field(default=False, metadata={"help": "Hard-link the weights instead of copying them (shared with "
                                                        "--model: editing one edits the other)"})

    def __post_init__(self) -> None:
        if not self.model or not self.output_dir:
            raise ValueError("--model and --output-dir are required")


def make_parser() -> Parser:
    return make_dataclass_parser((ExportArguments,), "hf-longrope2 export-serving",
                                 "Export a longrope2 folder for vLLM / plain transformers.", epilog("serving"))


def parse_args(argv: Sequence[str]) -> ExportArguments:
    return parse_dataclasses((ExportArguments,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    print(f"exported -> {export_with_card(args.model, args.output_dir, overwrite=args.overwrite, link=args.link)}")
    return 0
