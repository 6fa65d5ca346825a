"""[`save_extended`]: save an extended model as a complete folder, reusing the unchanged weights files (copied, never
shared unless asked)."""

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


def save_extended(model: PreTrainedModel, output_dir: str | Path, *, source: str | None = None, tokenizer=None,
                  link: bool = False) -> str:
    """Save an extended `model` as a complete folder; the weights files of `source` are reused when possible.

    The extension changes only the config, so when the unmodified weights exist on this machine as safetensors
    (a local folder or the Hub cache) their files are copied (a copy-on-write clone where the file system has
    them: no extra disk, nothing shared) instead of being serialised again. With `link` they are hard-linked
    instead: no extra disk anywhere, but the output then shares the files with `source`, so a source
    overwritten in place changes the output too. Config, the shipped code files, the generation config and
    the tokenizer are written as ``save_pretrained`` would.

    Returns:
        `str`: how the weights got there: ``"linked"``, ``"cloned"``, ``"copied"`` or ``"saved"`` (no
        safetensors source).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ready_to_save(model, tokenizer)
    files = _local_weight_files(source) if source is not None else None
    how = "saved"
    if files is None:
        model.save_pretrained(out)
    else:
        hows = {copy_or_link(Path(os.path.realpath(f)), out / f.name, link=link) for f in files}
        how = "copied" if "copied" in hows else hows.pop()
        config = copy.deepcopy(model.config)
        config.dtype = AutoConfig.from_pretrained(source).dtype  # the dtype of the reused weights
        config.architectures = [type(model).__name__]
        custom_object_save(model, out, config=config)
        config.save_pretrained(out)
        if model.can_generate():
            model.generation_config.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return how


def ready_to_save(model: PreTrainedModel, tokenizer=None) -> None:
    """What a saved extended model should say about itself, whatever training or search did to it: ``use_cache``
    on (training turns it off; generation without a cache is slow) and the tokenizer's ``model_max_length`` set to
    the extended window (a tokenizer saved with the huge default lets ``truncation=True`` pass any length)."""
    config = getattr(model, "config", None)
    if config is not None:
        config.use_cache = True
    if tokenizer is not None and config is not None:
        tokenizer.model_max_length = int(config.max_position_embeddings)


_FICLONE = 0x40049409  # linux/fs.h: share the blocks copy-on-write (btrfs, xfs, ...)


def copy_or_link(src: Path, dst: Path, *, link: bool = False) -> str:
    """Put the file `src` at `dst` without sharing anything writable with it, unless `link`.

    Returns how: ``"linked"`` (a hard link, only with `link`), ``"cloned"`` (a copy-on-write clone: a real copy
    that costs no disk until one side changes) or ``"copied"``.
    """
    if link:
        try:
            os.link(src, dst)
            return "linked"
        except OSError:
            pass  # another file system: copy
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            import fcntl  # POSIX only: a clone where it exists, a plain copy elsewhere

            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            shutil.copystat(src, dst)
            return "cloned"
        except (ImportError, OSError):
            pass
    shutil.copy2(src, dst)
    return "copied"
