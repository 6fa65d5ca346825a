"""[`export_for_serving`]: a longrope2 folder in transformers' built-in ``longrope`` format, which vLLM reads.

How the export behaves differently from ``longrope2`` (one window per forward pass, ``attention_factor`` on both
windows) is in docs/serving.md.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..modeling.modeling_longrope2 import architecture_for
from ..modeling.rope import ROPE_TYPE, LongRoPE2Parameters, rope_parameters
from ..utils.atomic import check_output_dir, save_atomically
from ..utils.loading import check_model_folder_loadable

_SKIP = {"config.json"}


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def serving_config(config: dict) -> dict:
    """The ``longrope`` config dict for a longrope2 ``config.json`` dict (pure function, no I/O)."""
    model_type = config.get("model_type")
    arch = architecture_for(model_type or "")
    if model_type == arch.model_type:
        raise ValueError(
            f"config has model_type {model_type!r}, not a longrope2 model (expected {arch.config_class.model_type!r})"
        )
    out = {k: v for k, v in config.items() if k not in ("auto_map", "architectures", "model_type")}
    out["model_type"] = arch.model_type
    out["architectures"] = [arch.base_model_class.__name__]
    rope, params = out["rope_parameters"], rope_parameters(config)
    if params.get("rope_type") != ROPE_TYPE:
        raise ValueError(f"rope_parameters has rope_type {params.get('rope_type')!r}, expected {ROPE_TYPE!r}")
    p = LongRoPE2Parameters.from_config(config)
    exported = {
        "rope_type": "longrope",
        "rope_theta": p.rope_theta,
        "short_factor": list(p.short_factor),
        "long_factor": list(p.long_factor),
        "original_max_position_embeddings": p.original_max_position_embeddings,
        "factor": p.factor,
        "attention_factor": p.long_mscale,
        "short_mscale": p.short_mscale,
        "long_mscale": p.long_mscale,
    }
    if "partial_rotary_factor" in params:
        exported["partial_rotary_factor"] = params["partial_rotary_factor"]
    if arch.nested_rope_key:
        out["rope_parameters"] = {**rope, arch.nested_rope_key: exported}
    else:
        out["rope_parameters"] = exported
    if "original_max_position_embeddings" in out:  # phi3 reads the top-level field first
        out["original_max_position_embeddings"] = p.original_max_position_embeddings
    return out


def export_for_serving(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a copy of the longrope2 model folder `src_dir` that plain transformers and vLLM load natively.

    The source is checked first (config values finite and positive, weights complete); the destination is
    assembled in a temporary sibling folder and renamed into place, so a failure never leaves a half-written
    `dst_dir`. An existing non-empty `dst_dir` is refused unless `overwrite`.

    Returns:
        `Path`: the destination folder.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise ValueError(f"--model {src}: no such folder; export-serving needs a saved longrope2 model folder")
    dst = check_output_dir(dst_dir, overwrite)
    exported = serving_config(check_model_folder_loadable(src))

    def write(tmp: Path) -> None:
        for path in sorted(src.iterdir()):
            if path.is_file() and path.name not in _SKIP and path.suffix != ".py":
                _link_or_copy(path, tmp / path.name)
        (tmp / "config.json").write_text(json.dumps(exported, indent=2, sort_keys=True) + "\n")

    return save_atomically(dst, write, overwrite=overwrite)


@dataclass
class ExportServingArguments:
    model: str = field(default="", metadata={"help": "A saved longrope2 model folder (required)"})
    output_dir: str = field(
        default="", metadata={"help": "Destination folder in the built-in 'longrope' format (required)"}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})

    def __post_init__(self) -> None:
        if not self.model or not self.output_dir:
            raise ValueError("--model and --output-dir are required")


def run_export_serving(args: ExportServingArguments) -> Path:
    """``hf-longrope2 export-serving``: [`export_for_serving`] and where it went."""
    out = export_for_serving(args.model, args.output_dir, overwrite=args.overwrite)
    print(f"exported -> {out}")
    return out
