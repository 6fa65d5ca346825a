"""The ``hf-longrope2`` command line: one verb per pipeline stage.

```
hf-longrope2 env                                   # versions and supported architectures
hf-longrope2 factors --model DIR --method yarn --target-length 32768
hf-longrope2 extend --model DIR --method yarn --target-length 32768 --output-dir OUT
hf-longrope2 export-serving --model OUT --output-dir OUT-serving
hf-longrope2 search --model DIR --target-length 32768 --output-dir OUT   # LongRoPE2 factor search
hf-longrope2 midtrain --config recipes/tiny/midtrain.yaml                 # mixed-window midtraining
hf-longrope2 check                                 # end-to-end self-check on tiny random models
```

Each verb parses a dataclass (``--help`` shows every field's help string) and accepts ``--config x.yaml``
for defaults that flags override.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .atomic import check_output_dir, save_atomically
from .factors import METHODS


def parse_dataclass(cls: type, argv: Sequence[str], prog: str, description: str):
    """Parse `argv` into `cls`; ``--config x.yaml`` supplies defaults, flags override them."""
    parser = HfArgumentParser(cls, prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML file whose keys are this command's fields")
    args = parser.parse_args(list(argv))
    if args.config:
        data = yaml.safe_load(Path(args.config).read_text()) or {}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            parser.error(f"unknown keys in {args.config}: {unknown}; accepted: {sorted(names)}")
        parser.set_defaults(**data)
        args = parser.parse_args(list(argv))
    values = {f.name: getattr(args, f.name) for f in fields(cls)}
    return cls(**values)


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
        if self.target_length <= 0:
            raise ValueError(f"--target-length must be a positive number of tokens, got {self.target_length}")


def _rope_geometry(args: FactorsArguments) -> tuple[int, float, int]:
    if args.model is not None:
        from transformers import AutoConfig

        from .modeling_longrope2 import longrope2_parameters
        from .rope import rotary_dim_of

        config = AutoConfig.from_pretrained(args.model)
        params = longrope2_parameters(config)
        original = params.get("original_max_position_embeddings", config.max_position_embeddings)
        return rotary_dim_of(config, params), float(params["rope_theta"]), int(original)
    missing = [n for n in ("rotary_dim", "rope_theta", "original_length") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"pass --model, or all of --rotary-dim --rope-theta --original-length (missing: {missing})")
    return args.rotary_dim, args.rope_theta, args.original_length


def factors_main(argv: Sequence[str]) -> int:
    from . import factors

    args = parse_dataclass(FactorsArguments, argv, "hf-longrope2 factors", "Print a baseline factor vector as JSON.")
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
    print(json.dumps(out, indent=2))
    return 0


@dataclass
class ExtendArguments:
    model: str = field(default="", metadata={"help": "Model folder or Hub id of a supported causal LM (required)"})
    output_dir: str = field(
        default="", metadata={"help": "Folder to write the extended model to (required, must not exist or be empty)"}
    )
    target_length: int = field(
        default=0, metadata={"help": "Target context length (max_position_embeddings) in tokens (required)"}
    )
    method: str = field(
        default="yarn", metadata={"help": f"Factor vector: one of {METHODS}; ignored with --factors-file"}
    )
    factors_file: str | None = field(
        default=None, metadata={"help": "JSON file with 'long_factor' (and optional 'critical_dim', 'long_mscale')"}
    )
    original_length: int | None = field(
        default=None, metadata={"help": "Pre-training window; default: the model's current window"}
    )
    dtype: str = field(default="auto", metadata={"help": "Weights dtype: auto, float32, bfloat16 or float16"})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})

    def __post_init__(self) -> None:
        for name in ("model", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} is required")
        if self.target_length <= 0:
            raise ValueError(f"--target-length must be a positive number of tokens, got {self.target_length}")
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"--dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")


def extend_main(argv: Sequence[str]) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import factors
    from .extend import extend
    from .modeling_longrope2 import longrope2_parameters
    from .rope import rotary_dim_of

    args = parse_dataclass(
        ExtendArguments, argv, "hf-longrope2 extend", "Extend a model with a factor vector and save it."
    )
    out = check_output_dir(args.output_dir, args.overwrite)
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    extra: dict = {}
    if args.factors_file:
        spec = json.loads(Path(args.factors_file).read_text())
        if "long_factor" not in spec:
            raise ValueError(f"{args.factors_file} has no 'long_factor' key (found: {sorted(spec)})")
        extra = {k: spec[k] for k in ("long_factor", "critical_dim", "long_mscale") if k in spec}
    else:
        params = longrope2_parameters(model.config)
        original = (
            args.original_length
            or params.get("original_max_position_embeddings")
            or model.config.max_position_embeddings
        )
        # the method's own attention factor too: PI and NTK 1.0, YaRN 0.1 ln s + 1
        extra = factors.baseline(
            args.method, rotary_dim_of(model.config, params), float(params["rope_theta"]), int(original),
            args.target_length,
        )
    extend(
        model,
        original_max_position_embeddings=args.original_length,
        max_position_embeddings=args.target_length,
        **extra,
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError, TypeError) as exc:
        tokenizer = None
        print(f"note: no tokenizer saved ({type(exc).__name__}: {str(exc).splitlines()[0]})", file=sys.stderr)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)

    save_atomically(out, write, overwrite=args.overwrite)
    params = longrope2_parameters(model.config)
    print(
        f"extended {args.model} from {params['original_max_position_embeddings']} to {model.config.max_position_embeddings} "
        f"tokens (long_mscale {params['long_mscale']:.4f}) -> {out}"
    )
    return 0


@dataclass
class ExportArguments:
    model: str = field(default="", metadata={"help": "A saved longrope2 model folder (required)"})
    output_dir: str = field(
        default="", metadata={"help": "Destination folder in the built-in 'longrope' format (required)"}
    )

    def __post_init__(self) -> None:
        if not self.model or not self.output_dir:
            raise ValueError("--model and --output-dir are required")


def export_main(argv: Sequence[str]) -> int:
    from .serving import export_for_serving

    args = parse_dataclass(
        ExportArguments, argv, "hf-longrope2 export-serving", "Export a longrope2 folder for vLLM / plain transformers."
    )
    print(f"exported -> {export_for_serving(args.model, args.output_dir)}")
    return 0


def env_main(argv: Sequence[str]) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__
    from .modeling_longrope2 import SUPPORTED_MODEL_TYPES

    print(f"hf-longrope2 {__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "huggingface-hub", "flash-attn"):
        try:
            print(f"{name} {version(name)}")
        except PackageNotFoundError:
            print(f"{name} (not installed)")
    print("supported model_type:", ", ".join(SUPPORTED_MODEL_TYPES))
    return 0


def search_main(argv: Sequence[str]) -> int:
    from .search import main as search

    return search(argv)


def midtrain_main(argv: Sequence[str]) -> int:
    from .midtrain import main as midtrain

    return midtrain(argv)


def eval_main(argv: Sequence[str]) -> int:
    from .evaluate import main as evaluate

    return evaluate(argv)


def push_main(argv: Sequence[str]) -> int:
    from .hub import main as push

    return push(argv)


def convert_gguf_main(argv: Sequence[str]) -> int:
    from .gguf import main as convert

    return convert(argv)


def demo_main(argv: Sequence[str]) -> int:
    from .demo import main as demo

    return demo(argv)


def check_main(argv: Sequence[str]) -> int:
    from .selfcheck import main as selfcheck_main

    return selfcheck_main(argv)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "env": (env_main, "print versions and the supported architectures"),
    "factors": (factors_main, "print a PI / NTK / YaRN factor vector and the critical dimensions"),
    "extend": (extend_main, "extend a model with a factor vector and save a loadable folder"),
    "export-serving": (export_main, "export a longrope2 folder in the built-in 'longrope' format (vLLM)"),
    "search": (search_main, "needle-driven evolutionary search of LongRoPE2 factors -> an extended model folder"),
    "midtrain": (midtrain_main, "mixed-context-window midtraining (Trainer / TRL SFTTrainer) -> an extended model"),
    "eval": (eval_main, "needle-in-a-haystack grid, perplexity vs length, short-window retention -> report + PNGs"),
    "push": (push_main, "validate an extended model folder and upload it to the Hub (--dry-run lists the files)"),
    "convert-gguf": (convert_gguf_main, "turn a local GGUF file into a regular HF folder (safetensors, tokenizer)"),
    "demo": (demo_main, "the whole method on the embedded tiny base (search, midtrain, eval) on a CPU in minutes"),
    "check": (check_main, "end-to-end self-check of the rope type on tiny random models of every architecture"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: hf-longrope2 <command> [options]   (hf-longrope2 <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hf-longrope2: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[name][0](rest)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"hf-longrope2 {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
