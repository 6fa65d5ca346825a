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
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..factors import METHODS
from ..utils.arguments import parse_dataclass
from ..utils.atomic import check_output_dir, save_atomically


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
        if self.rope_theta is not None and not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
            raise ValueError(f"--rope-theta must be a finite number > 1, got {self.rope_theta}")
        if self.rotary_dim is not None and (self.rotary_dim < 2 or self.rotary_dim % 2):
            raise ValueError(f"--rotary-dim must be an even number >= 2, got {self.rotary_dim}")
        if self.original_length is not None and self.original_length < 1:
            raise ValueError(f"--original-length must be a positive number of tokens, got {self.original_length}")


def _rope_geometry(args: FactorsArguments) -> tuple[int, float, int]:
    if args.model is not None:
        from transformers import AutoConfig

        from ..modeling.modeling_longrope2 import longrope2_parameters
        from ..modeling.rope import rotary_dim_of
        from ..utils.loading import model_source

        config = AutoConfig.from_pretrained(model_source(args.model, weights=False))
        params = longrope2_parameters(config)
        original = params.get("original_max_position_embeddings", config.max_position_embeddings)
        return rotary_dim_of(config, params), float(params["rope_theta"]), int(original)
    missing = [n for n in ("rotary_dim", "rope_theta", "original_length") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"pass --model, or all of --rotary-dim --rope-theta --original-length (missing: {missing})")
    return args.rotary_dim, args.rope_theta, args.original_length


def factors_main(argv: Sequence[str]) -> int:
    from .. import factors

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
    print(json.dumps(out, indent=2, allow_nan=False))
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

    from .. import factors
    from ..extension import extend
    from ..modeling.modeling_longrope2 import longrope2_parameters
    from ..modeling.rope import rotary_dim_of
    from ..utils.loading import check_factor_values, model_source, read_json

    args = parse_dataclass(
        ExtendArguments, argv, "hf-longrope2 extend", "Extend a model with a factor vector and save it."
    )
    out = check_output_dir(args.output_dir, args.overwrite)
    source = model_source(args.model)
    extra: dict = {}
    if args.factors_file:
        spec = read_json(args.factors_file, "--factors-file")
        if not isinstance(spec, dict) or "long_factor" not in spec:
            found = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
            raise ValueError(f"--factors-file {args.factors_file} has no 'long_factor' key (found: {found})")
        check_factor_values(spec, f"--factors-file {args.factors_file}")
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    if args.factors_file:
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
        tokenizer = AutoTokenizer.from_pretrained(source)
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
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})

    def __post_init__(self) -> None:
        if not self.model or not self.output_dir:
            raise ValueError("--model and --output-dir are required")


def export_main(argv: Sequence[str]) -> int:
    from ..extension import export_for_serving

    args = parse_dataclass(
        ExportArguments, argv, "hf-longrope2 export-serving", "Export a longrope2 folder for vLLM / plain transformers."
    )
    print(f"exported -> {export_for_serving(args.model, args.output_dir, overwrite=args.overwrite)}")
    return 0


@dataclass
class EnvArguments:
    """``hf-longrope2 env`` takes no options."""


def env_main(argv: Sequence[str]) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from ..modeling.modeling_longrope2 import SUPPORTED_MODEL_TYPES
    from ..utils.environment import __version__

    parse_dataclass(EnvArguments, argv, "hf-longrope2 env", "Print versions and the supported architectures.")
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
    from ..search.runner import main as search

    return search(argv)


def midtrain_main(argv: Sequence[str]) -> int:
    from ..midtrain.runner import main as midtrain

    return midtrain(argv)


def eval_main(argv: Sequence[str]) -> int:
    from ..evaluation.runner import main as evaluate

    return evaluate(argv)


def push_main(argv: Sequence[str]) -> int:
    from ..publish.hub import main as push

    return push(argv)


def convert_gguf_main(argv: Sequence[str]) -> int:
    from ..publish.gguf_convert import main as convert

    return convert(argv)


def export_gguf_main(argv: Sequence[str]) -> int:
    from ..publish.gguf_export import main as export_gguf

    return export_gguf(argv)


def demo_main(argv: Sequence[str]) -> int:
    from ..demo import main as demo

    return demo(argv)


def check_main(argv: Sequence[str]) -> int:
    from ..selfcheck import main as selfcheck_main

    return selfcheck_main(argv)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "env": (env_main, "print versions and the supported architectures"),
    "factors": (factors_main, "print a PI / NTK / YaRN factor vector and the critical dimensions"),
    "extend": (extend_main, "extend a model with a factor vector and save a loadable folder"),
    "export-serving": (export_main, "export a longrope2 folder in the built-in 'longrope' format (vLLM)"),
    "export-gguf": (export_gguf_main, "write a longrope2 Llama as a GGUF file llama.cpp runs at the extended length"),
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
        "usage: hf-longrope2 [--debug] <command> [options]   (hf-longrope2 <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


DEBUG_ENV = "HF_LONGROPE2_DEBUG"
# failures a user can fix from the message: bad values, files, folders, permissions, network, YAML, missing extras
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, yaml.YAMLError, ModuleNotFoundError)


def _flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name`` / ``--name-with-dashes`` in `argv` (last one wins), or of `name` in its --config."""
    from ..utils.arguments import read_yaml, split_config

    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    value = None
    items = list(argv)
    for i, item in enumerate(items):
        if item in flags and i + 1 < len(items):
            value = items[i + 1]
        elif "=" in item and item.split("=", 1)[0] in flags:
            value = item.split("=", 1)[1]
    if value is None:
        config, _ = split_config(argv)
        if config:
            try:
                value = read_yaml(config).get(name)
            except ValueError:
                return None
    return None if value is None else str(value)


def interrupted_hint(name: str, argv: Sequence[str]) -> str:
    """What an interrupted `name` run kept, and the command that continues it."""
    import shlex

    again = "hf-longrope2 " + " ".join(shlex.quote(a) for a in [name, *argv] if a != "--overwrite")
    out = _flag_value(argv, "output_dir")
    if name in ("search", "eval") and out:
        state = Path(f"{os.path.normpath(out)}.{'search' if name == 'search' else 'eval'}-state")
        if state.exists():
            resume = "" if "--resume" in argv else " --resume"
            return f"its state in {state} is kept; continue with: {again}{resume}"
    if name == "demo":
        resume = "" if "--resume" in argv else " --resume"
        return f"finished stages in {out or 'longrope2-demo'} are kept; continue with: {again}{resume}"
    if name == "midtrain" and out:
        from ..midtrain.runner import checkpoints_dir

        work = checkpoints_dir(out)
        if work.is_dir() and any(p.name.startswith("checkpoint-") for p in work.iterdir()):
            resume = "" if "--resume_from_checkpoint" in argv else " --resume_from_checkpoint true"
            return f"checkpoints in {work} are kept; continue with: {again}{resume}"
        return f"no checkpoint had been saved (see save_steps) and {out} was not written"
    return "nothing was written (outputs appear only once complete)"


def run_command(name: str, argv: Sequence[str], debug: bool = False) -> int:
    """Run verb `name`: expected failures exit 2 with one line, Ctrl-C 130 with what was kept (`debug`: raise)."""
    debug = debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")
    try:
        return COMMANDS[name][0](argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nhf-longrope2 {name}: interrupted; {interrupted_hint(name, argv)}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"hf-longrope2 {name}: error: {message} (traceback: hf-longrope2 --debug {name} ...)", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hf-longrope2: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run_command(name, rest, debug)


if __name__ == "__main__":
    sys.exit(main())
