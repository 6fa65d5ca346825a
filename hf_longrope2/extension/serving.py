"""[`export_for_serving`]: a longrope2 folder in transformers' built-in ``longrope`` format, which vLLM reads.

How the export behaves differently from ``longrope2`` (one window per forward pass, ``attention_factor`` on both
windows) is in docs/serving.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..modeling.modeling_longrope2 import architecture_for
from ..modeling.rope import ROPE_TYPE, LongRoPE2Parameters, rope_parameters
from ..utils.arguments import OutputArguments
from ..utils.atomic import check_output_dir, save_atomically
from ..utils.loading import check_model_folder_loadable
from .saving import copy_or_link

_SKIP = {"config.json", "README.md"}  # a config and a card of its own (the source's would be wrong)


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
    exported = longrope_spelling(LongRoPE2Parameters.from_config(config), params)
    if arch.nested_rope_key:
        out["rope_parameters"] = {**rope, arch.nested_rope_key: exported}
    else:
        out["rope_parameters"] = exported
    if "original_max_position_embeddings" in out:  # phi3 reads the top-level field first
        out["original_max_position_embeddings"] = exported["original_max_position_embeddings"]
    # short_mscale / long_mscale are for vLLM (its short window is the base model only with short_mscale 1.0);
    # transformers 5 would warn that its own longrope does not use them.
    out["ignore_keys_at_rope_validation"] = ["long_mscale", "short_mscale"]
    if not arch.nested_rope_key:
        out.update(v4_rope_fields(exported))
    return out


def longrope_spelling(p: LongRoPE2Parameters, params: dict) -> dict:
    """Resolved longrope2 parameters `p` (of the rope dict `params`) in the built-in ``longrope`` vocabulary: what
    the export writes and what the vLLM plugin builds vLLM's own layers with."""
    spelled = {
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
        spelled["partial_rotary_factor"] = params["partial_rotary_factor"]
    return spelled


def v4_rope_fields(exported: dict) -> dict:
    """The transformers 4.x spelling of the ``longrope`` parameters `exported` (top-level config keys).

    transformers 4.x reads ``rope_theta`` and ``rope_scaling`` at the top level and the original window as a
    top-level attribute (4.57's ``_compute_longrope_parameters``: without it the window is
    ``max_position_embeddings`` and the long factors are never used); a v5-only config loads there silently with
    theta 10,000 and no scaling. transformers 5 takes a ``rope_scaling`` it finds over ``rope_parameters``
    (``rope_parameters = rope_scaling or rope_parameters``), so both carry the same dict.
    """
    scaling = {k: v for k, v in exported.items() if k != "rope_theta"}  # 4.x reads theta at the top level only
    fields = {"rope_theta": exported["rope_theta"], "rope_scaling": scaling,
              "original_max_position_embeddings": exported["original_max_position_embeddings"]}
    if "partial_rotary_factor" in exported:
        fields["partial_rotary_factor"] = exported["partial_rotary_factor"]
    return fields


def portable_tokenizer_config(folder: Path) -> None:
    """Name the tokenizer class so transformers 4.x finds it too: v5's generic ``TokenizersBackend`` does not exist
    there, ``PreTrainedTokenizerFast`` (the same tokenizer.json) exists in both."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.unlink()  # a new file, never written through a link to the source's
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def export_for_serving(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, overwrite: bool = False,
                       link: bool = False, write_card: Callable[[Path], object] | None = None) -> Path:
    """Write a copy of the longrope2 model folder `src_dir` that plain transformers and vLLM load natively.

    The source is checked first (config values finite and positive, weights complete); the destination is
    assembled in a temporary sibling folder and renamed into place, so a failure never leaves a half-written
    `dst_dir`. An existing non-empty `dst_dir` is refused unless `overwrite`. Every file is copied (weights as
    copy-on-write clones where the file system can), so editing the export never edits the source; `link`
    hard-links the weights instead (no extra disk on any file system, but shared with the source). The source's
    ``README.md`` is not copied (it describes the longrope2 folder); `write_card` is called with the finished
    temporary folder to write the export's own (``hf_longrope2.publish.cards.export_with_card`` passes one).

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
                copy_or_link(path, tmp / path.name, link=link and path.suffix == ".safetensors")
        (tmp / "config.json").write_text(json.dumps(exported, indent=2, sort_keys=True) + "\n")
        portable_tokenizer_config(tmp)
        if write_card is not None:
            write_card(tmp)

    return save_atomically(dst, write, overwrite=overwrite)


@dataclass
class ExportServingArguments(OutputArguments):
    model: str = field(default="", metadata={"help": "A saved longrope2 model folder (required)"})
    # OutputArguments' field, redeclared for a help that says what the folder holds
    output_dir: str = field(
        default="", metadata={"help": "Destination folder in the built-in 'longrope' format (required)"}
    )
    link: bool = field(default=False, metadata={"help": "Hard-link the weights instead of copying them (shared with "
                                                        "--model: editing one edits the other)"})

    def __post_init__(self) -> None:
        if not self.model or not self.output_dir:
            raise ValueError("--model and --output-dir are required")
