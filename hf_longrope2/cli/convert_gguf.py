"""``hf-longrope2 convert-gguf``: turn a local GGUF file into a regular Hugging Face model folder.

```bash
hf-longrope2 convert-gguf SmolLM2-135M-Instruct.Q4_1.gguf smollm2-135m
hf-longrope2 convert-gguf model.gguf out --dtype bfloat16 --overwrite
```
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..publish.gguf_convert import convert_gguf
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from ..utils.environment import FLOAT_DTYPES
from . import epilog


@dataclass
class ConvertGGUFArguments:
    gguf_file: str = field(
        default="", metadata={"help": "The local .gguf file to convert (required; or the first positional argument)"}
    )
    output_dir: str = field(
        default="",
        metadata={"help": "Folder to write (required, must not exist or be empty; or the second positional argument)"},
    )
    dtype: str = field(
        default="float32",
        metadata={"help": f"Weights dtype, one of {FLOAT_DTYPES}; float32 keeps the dequantised values exactly"},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output folder"})

    def __post_init__(self) -> None:
        if not self.gguf_file or not self.output_dir:
            raise ValueError("usage: hf-longrope2 convert-gguf FILE OUT (or --gguf-file FILE --output-dir OUT)")
        if self.dtype not in FLOAT_DTYPES:
            raise ValueError(f"--dtype must be one of {FLOAT_DTYPES}, got {self.dtype!r}")


def positionals_as_flags(argv: Sequence[str]) -> list[str]:
    """``FILE OUT [flags]`` -> ``--gguf_file FILE --output_dir OUT [flags]`` (up to two leading positionals)."""
    rest = list(argv)
    flags: list[str] = []
    for name in ("--gguf_file", "--output_dir"):
        if not rest or rest[0].startswith("-"):
            break
        flags += [name, rest.pop(0)]
    return flags + rest


def make_parser() -> Parser:
    return make_dataclass_parser(
        (ConvertGGUFArguments,),
        "hf-longrope2 convert-gguf",
        "Convert a local GGUF file into a Hugging Face folder (safetensors, config, tokenizer). "
        "Usage: hf-longrope2 convert-gguf FILE OUT [--dtype float32] [--overwrite]",
        epilog("gguf"),
    )


def parse_args(argv: Sequence[str]) -> ConvertGGUFArguments:
    return parse_dataclasses((ConvertGGUFArguments,), positionals_as_flags(argv), parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        out = convert_gguf(args.gguf_file, args.output_dir, dtype=args.dtype, overwrite=args.overwrite)
    except ImportError as exc:
        print(f"hf-longrope2 convert-gguf: error: {exc}", file=sys.stderr)
        return 2
    config = json.loads((out / "config.json").read_text())
    print(
        f"converted {args.gguf_file} ({config['model_type']}, {config['num_hidden_layers']} layers, "
        f"{config['max_position_embeddings']}-token window) -> {out} ({args.dtype} safetensors)"
    )
    return 0
