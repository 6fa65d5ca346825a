"""[`save_extended`]: save an extended model as a complete folder, hard-linking the unchanged weights."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from transformers import AutoConfig, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save


def _local_weight_files(source: str) -> list[Path] | None:
    """The safetensors files (and index) behind `source` on this machine, or None when there are none."""
    folder = Path(source)
    if folder.is_dir():
        files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.safetensors.index.json"))
        return files or None
    index = try_to_load_from_cache(source, "model.safetensors.index.json")
    if isinstance(index, str):
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        found = [try_to_load_from_cache(source, name) for name in shards]
        return None if not all(isinstance(f, str) for f in found) else [Path(index)] + [Path(f) for f in found]
    single = try_to_load_from_cache(source, "model.safetensors")
    return [Path(single)] if isinstance(single, str) else None


def save_extended(model: PreTrainedModel, output_dir: str | Path, *, source: str | None = None, tokenizer=None) -> str:
    """Save an extended `model` as a complete folder; weights are hard-linked from `source` when possible.

    The extension changes only the config, so when the unmodified weights exist on this machine as safetensors
    (a local folder or the Hub cache) they are hard-linked (copied across file systems) instead of being
    serialised again: a multi-GB model costs no extra disk. Config, the shipped code files, the generation
    config and the tokenizer are written as ``save_pretrained`` would.

    Returns:
        `str`: how the weights got there: ``"linked"``, ``"copied"`` or ``"saved"`` (no safetensors source).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _local_weight_files(source) if source is not None else None
    how = "saved"
    if files is None:
        model.save_pretrained(out)
    else:
        how = "linked"
        for f in files:
            target = out / f.name
            try:
                os.link(os.path.realpath(f), target)
            except OSError:
                shutil.copyfile(os.path.realpath(f), target)
                how = "copied"
        config = copy.deepcopy(model.config)
        config.dtype = AutoConfig.from_pretrained(source).dtype  # the dtype of the linked weights
        config.architectures = [type(model).__name__]
        custom_object_save(model, out, config=config)
        config.save_pretrained(out)
        if model.can_generate():
            model.generation_config.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return how
