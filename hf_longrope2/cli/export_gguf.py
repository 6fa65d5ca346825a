"""``hf-longrope2 export-gguf``: write a longrope2 Llama as a GGUF file llama.cpp runs at the extended length.

```bash
hf-longrope2 export-gguf --model smollm2-32k --output-file smollm2-32k.gguf
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..publish.gguf_export import MATRIX_DTYPES, export_gguf
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog


@dataclass
class ExportGGUFArguments:
    model: str = field(default="", metadata={"help": "A saved longrope2 Llama folder (required)"})
    output_file: str = field(default="", metadata={"help": "The .gguf file to write (required)"})
    dtype: str = field(default="float32", metadata={"help": f"Matrices as one of {MATRIX_DTYPES}"})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output-file"})

    def __post_init__(self) -> None:
        if not self.model or not self.output_file:
            raise ValueError("--model and --output-file are required")
        if self.dtype not in MATRIX_DTYPES:
            raise ValueError(f"--dtype must be one of {MATRIX_DTYPES}, got {self.dtype!r}")


def make_parser() -> Parser:
    return make_dataclass_parser(
        (ExportGGUFArguments,), "hf-longrope2 export-gguf",
        "Write a longrope2 Llama folder as a GGUF file for llama.cpp (LongRoPE factors included).", epilog("gguf"))


def parse_args(argv: Sequence[str]) -> ExportGGUFArguments:
    return parse_dataclasses((ExportGGUFArguments,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    out = export_gguf(args.model, args.output_file, dtype=args.dtype, overwrite=args.overwrite)
    print(f"exported {args.model} -> {out} ({args.dtype}, {out.stat().st_size:,} bytes); run it in llama.cpp with a "
          "context size above the original window to use the long factors")
    return 0
