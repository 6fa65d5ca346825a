"""[`extend_pretrained`]: load a model, extend it to a target length and save it atomically (``hf-longrope2 extend``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel

from .. import factors
from ..factors import METHODS
from ..modeling.modeling_longrope2 import architecture_for
from ..modeling.rope import LongRoPE2Parameters, RopeGeometry
from ..utils.arguments import ModelArguments, OutputArguments, check_choices, check_token_count, require_fields
from ..utils.atomic import check_output_dir, save_atomically
from ..utils.environment import DTYPES, torch_dtype
from ..utils.loading import load_causal_lm, model_source
from .in_place import extend
from .saving import ready_to_save

DEFAULT_METHOD = "yarn"  # what `extend` uses without --method (said on stderr)


def extend_pretrained(model: str, output_dir: str | Path, target_length: int, *, method: str = "yarn",
                      factors_file: str | None = None, original_length: int | None = None, dtype: str = "auto",
                      overwrite: bool = False, write_card: Callable[[Path], object] | None = None) -> PreTrainedModel:
    """Load `model`, extend it to `target_length` tokens and save it with its tokenizer to `output_dir`, atomically.

    What ``hf-longrope2 extend`` does. The factors are `method`'s (``pi``, ``ntk`` or ``yarn``, each with its own
    attention factor) unless `factors_file` names a factors JSON or a ``search_log.json``
    ([`~hf_longrope2.factors.read_factors_file`]).

    Args:
        model (`str`): A model folder or Hub id of a supported causal LM.
        output_dir (`str` or `Path`): Where the extended model goes (new or empty unless `overwrite`).
        target_length (`int`): The extended window (``max_position_embeddings``).
        method (`str`): The baseline factor vector when there is no `factors_file`.
        factors_file (`str`, *optional*): JSON file of factors to use instead.
        original_length (`int`, *optional*): The pre-training window; default the model's current window.
        dtype (`str`): Weights dtype, one of `hf_longrope2.utils.environment.DTYPES`.
        overwrite (`bool`): Replace a non-empty `output_dir`.
        write_card (`Callable`, *optional*): Called with the finished temporary folder before it is renamed into
            place, to write its ``README.md`` (``hf-longrope2 extend`` passes
            [`hf_longrope2.publish.cards.write_model_card`]: this package does not import the publishing layer).

    Returns:
        `PreTrainedModel`: the extended model (already saved).
    """
    out = check_output_dir(output_dir, overwrite)
    source = model_source(model)
    extra = factors.read_factors_file(factors_file) if factors_file else {}
    loaded = load_causal_lm(source, dtype="auto" if dtype == "auto" else torch_dtype(dtype))
    architecture_for(loaded.config.model_type)  # ValueError listing the supported types (e.g. for GPT-2)
    if not factors_file:
        geometry = RopeGeometry.from_config(loaded.config)
        original = original_length or geometry.original_window
        # the method's own attention factor too: PI and NTK 1.0, YaRN 0.1 ln s + 1
        extra = factors.baseline(method, geometry.rotary_dim, geometry.rope_theta, int(original), target_length)
    extend(loaded, original_max_position_embeddings=original_length, max_position_embeddings=target_length, **extra)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        tokenizer = None
        print(f"note: no tokenizer saved ({type(exc).__name__}: {str(exc).splitlines()[0]})", file=sys.stderr)

    ready_to_save(loaded, tokenizer)

    def write(tmp: Path) -> None:
        loaded.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if write_card is not None:
            write_card(tmp)

    save_atomically(out, write, overwrite=overwrite)
    return loaded


@dataclass
class ExtendArguments(OutputArguments, ModelArguments):
    target_length: int = field(
        default=0, metadata={"help": "Target context length (max_position_embeddings) in tokens (required)"}
    )
    method: str | None = field(
        default=None,
        metadata={
            "help": "Factor vector; ignored with --factors-file. Not given: yarn, and a line on stderr says so",
            "choices": METHODS,
        },
    )
    factors_file: str | None = field(
        default=None, metadata={"help": "JSON file with 'long_factor' (and optional 'critical_dim', 'long_mscale')"}
    )
    original_length: int | None = field(
        default=None, metadata={"help": "Pre-training window; default: the model's current window"}
    )
    dtype: str = field(default="auto", metadata={"help": "Weights dtype", "choices": DTYPES})

    def __post_init__(self) -> None:
        require_fields(self, "model", "output_dir")
        check_token_count("--target-length", self.target_length)
        check_choices(self)


def run_extend(args: ExtendArguments, write_card: Callable[[Path], object] | None = None) -> PreTrainedModel:
    """``hf-longrope2 extend``: [`extend_pretrained`] and one line saying what it did (`write_card`: see there)."""
    method = args.method
    if method is None:
        method = DEFAULT_METHOD
        if args.factors_file is None:
            print(f"no --method given: using {DEFAULT_METHOD} (choose with --method {'/'.join(METHODS)})",
                  file=sys.stderr)
    model = extend_pretrained(args.model, args.output_dir, args.target_length, method=method,
                              factors_file=args.factors_file, original_length=args.original_length, dtype=args.dtype,
                              overwrite=args.overwrite, write_card=write_card)
    p = LongRoPE2Parameters.from_config(model.config)
    print(
        f"extended {args.model} from {p.original_max_position_embeddings} to {p.max_position_embeddings} "
        f"tokens (long_mscale {p.long_mscale:.4f}) -> {Path(args.output_dir)}"
    )
    return model
