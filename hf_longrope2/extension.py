"""Extension: turn a loaded causal LM into a longrope2 model, save it, and export it for serving.

```python
>>> import hf_longrope2
>>> from hf_longrope2 import factors
>>> model = transformers.AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M")
>>> hf_longrope2.extend(model, factors.yarn(64, 1e5, scale=4.0, original_max_position_embeddings=8192))
>>> model.save_pretrained("smollm2-32k")  # loads anywhere with trust_remote_code=True
>>> hf_longrope2.export_for_serving("smollm2-32k", "smollm2-32k-serving")
# vllm serve smollm2-32k-serving --max-model-len 32768
```

[`extend`] changes the config and the rotary modules only; [`save_extended`] writes a complete folder whose
weights are copied from the source files (cloned where the file system can) instead of being serialised.

[`export_for_serving`] writes a longrope2 model folder in transformers' built-in ``longrope`` vocabulary
(the format vLLM reads).

The exported config has ``rope_type: "longrope"``, ``short_factor`` all 1.0 (or the model's short
factors), the searched ``long_factor``, ``original_max_position_embeddings``, ``factor``,
``short_mscale`` / ``long_mscale`` and ``attention_factor = long_mscale``. Every file is copied (weights as
copy-on-write clones where the file system can; hard links only with ``link=True``). No custom code is written.

How it behaves differently from ``longrope2`` (which picks the window per document):

- transformers (``longrope``): the window is picked once per forward pass from ``max(position_ids) + 1``;
  a packed row with one long document puts every document on the long factors. ``attention_factor``
  (= ``long_mscale``) multiplies cos/sin for *both* windows, so short inputs are not bit-identical to the
  original model unless ``long_mscale`` is 1.0. Long inputs are identical to longrope2 (tested).
  ``short_mscale`` / ``long_mscale`` are there for vLLM (``ignore_keys_at_rope_validation`` keeps transformers 5
  from warning about them; transformers 4.x warns).
- transformers 4.x: the config also carries the v4 spelling (top-level ``rope_theta``, ``rope_scaling`` and
  ``original_max_position_embeddings``, see [`v4_rope_fields`]), so it loads the same model there.
- vLLM (its Phi-3 ``longrope`` implementation): reads ``short_factor``, ``long_factor``,
  ``original_max_position_embeddings`` and ``short_mscale`` / ``long_mscale``, and uses the long factors
  whenever ``max_model_len`` exceeds the original window. Serve with ``--max-model-len`` equal to the original
  window to get the original model, larger to get the extended one.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

from huggingface_hub import try_to_load_from_cache
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save

from . import factors
from .modeling.modeling_longrope2 import architecture_for, longrope2_parameters
from .modeling.rope import (
    ROPE_TYPE,
    default_long_mscale,
    rope_parameters_of,
    rotary_dim_of,
    validate_longrope2_rope_parameters,
)
from .modeling.rotary import use_longrope2_rotary
from .utils.atomic import check_output_dir, save_atomically
from .utils.environment import torch_dtype
from .utils.loading import check_factor_values, check_model_folder_loadable, model_source, read_json

logger = logging.getLogger(__name__)


def extend(
    model: PreTrainedModel,
    long_factor: Sequence[float],
    *,
    original_max_position_embeddings: int | None = None,
    max_position_embeddings: int | None = None,
    long_mscale: float | None = None,
    short_mscale: float = 1.0,
    critical_dim: int | None = None,
    short_factor: Sequence[float] | None = None,
) -> PreTrainedModel:
    """Make `model` a longrope2 model in place (config, class and rotary module) and return it.

    Args:
        model (`PreTrainedModel`): A causal LM of a supported architecture (see
            `hf_longrope2.SUPPORTED_MODEL_TYPES`) with the default RoPE, or an already extended model (its
            factors are replaced, its original window kept).
        long_factor (`Sequence[float]`): One factor >= 1 per rotary pair, e.g. from [`hf_longrope2.factors`].
        original_max_position_embeddings (`int`, *optional*): Pre-training window. Defaults to the model's
            current window (``max_position_embeddings``, or the stored original window of an extended model).
        max_position_embeddings (`int`, *optional*): Target window. Defaults to
            ``round(original * max(long_factor))``, which is the target for PI, NTK and YaRN vectors; pass it
            explicitly for searched LongRoPE2 factors, whose tail may exceed the scale.
        long_mscale (`float`, *optional*): Long-window cos/sin scale; default ``sqrt(1 + ln(s) / ln(L_orig))``.
        short_mscale (`float`, defaults to 1.0): Short-window scale (1.0 keeps the original model exactly).
        critical_dim (`int`, *optional*): The (searched) critical dimension, stored for information.
        short_factor (`Sequence[float]`, *optional*): Short-window factors; default all 1.0.

    Returns:
        The same `model` object, now an instance of the matching ``LongRoPE2XxxForCausalLM``.

    Raises:
        ValueError: unsupported architecture, a model that is not a causal LM, a base rope type other than
            ``default``, or invalid parameters (checked before anything is modified).
    """
    config = model.config
    arch = architecture_for(config.model_type)
    if not isinstance(model, arch.base_model_class):
        raise ValueError(
            f"extend() expects a {arch.base_model_class.__name__} (a causal LM), got {type(model).__name__}"
        )
    current = dict(rope_parameters_of(config, arch.nested_rope_key))
    current_type = current.get("rope_type", "default")
    if current_type not in ("default", ROPE_TYPE):
        raise ValueError(
            f"extend() needs a model with the original RoPE (rope_type 'default') or a longrope2 model; this "
            f"model uses rope_type {current_type!r}. Load it with rope_parameters={{'rope_type': 'default', ...}}."
        )
    if original_max_position_embeddings is None:
        original_max_position_embeddings = (
            current["original_max_position_embeddings"] if current_type == ROPE_TYPE else config.max_position_embeddings
        )
    long_factor = [float(x) for x in long_factor]
    if max_position_embeddings is None:
        if current_type == ROPE_TYPE and config.max_position_embeddings > original_max_position_embeddings:
            max_position_embeddings = config.max_position_embeddings
        else:
            largest = max(long_factor) if long_factor else 1.0
            max_position_embeddings = round(original_max_position_embeddings * largest) if math.isfinite(largest) else 0
            logger.info("extend(): max_position_embeddings defaults to %d", max_position_embeddings)
    scale = max_position_embeddings / original_max_position_embeddings
    params = {
        "rope_type": ROPE_TYPE,
        "rope_theta": current["rope_theta"],
        "original_max_position_embeddings": original_max_position_embeddings,
        "factor": scale,
        "long_factor": long_factor,
        "long_mscale": default_long_mscale(scale, original_max_position_embeddings)
        if long_mscale is None
        else long_mscale,
        "short_mscale": short_mscale,
    }
    if "partial_rotary_factor" in current:
        params["partial_rotary_factor"] = current["partial_rotary_factor"]
    if short_factor is not None:
        params["short_factor"] = [float(x) for x in short_factor]
    if critical_dim is not None:
        params["critical_dim"] = critical_dim
    # Validate against the would-be config before touching the model: nothing changes on error.
    probe = SimpleNamespace(
        max_position_embeddings=max_position_embeddings,
        head_dim=getattr(config, "head_dim", None),
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
    )
    if original_max_position_embeddings >= max_position_embeddings:
        raise ValueError(
            f"max_position_embeddings ({max_position_embeddings}) must be larger than the original window "
            f"({original_max_position_embeddings}); pass max_position_embeddings=<target length>"
        )
    validate_longrope2_rope_parameters(probe, params)

    config.max_position_embeddings = max_position_embeddings
    if hasattr(config, "original_max_position_embeddings"):  # phi3 keeps it at the top level too
        config.original_max_position_embeddings = original_max_position_embeddings
    if arch.nested_rope_key is None:
        config.rope_parameters = params
    else:
        config.rope_parameters = {**config.rope_parameters, arch.nested_rope_key: params}
    config.__class__ = arch.config_class
    model.__class__ = arch.model_class
    use_longrope2_rotary(model, arch.rotary_class)
    return model


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
        config.dtype = AutoConfig.from_pretrained(source).dtype  # the dtype of the linked weights
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


def original_window(config) -> int:
    """The pre-training window of a (possibly extended) model config: the longrope2 parameters'
    ``original_max_position_embeddings``, else ``max_position_embeddings``."""
    params = longrope2_parameters(config)
    return int(params.get("original_max_position_embeddings") or config.max_position_embeddings)


def extend_pretrained(model: str, output_dir: str | Path, target_length: int, *, method: str = "yarn",
                      factors_file: str | None = None, original_length: int | None = None, dtype: str = "auto",
                      overwrite: bool = False) -> PreTrainedModel:
    """Load `model`, extend it to `target_length` tokens and save it with its tokenizer to `output_dir`, atomically.

    What ``hf-longrope2 extend`` does. The factors are `method`'s (``pi``, ``ntk`` or ``yarn``, each with its own
    attention factor) unless `factors_file` names a JSON file with ``long_factor`` (and optional
    ``critical_dim``, ``long_mscale``).

    Args:
        model (`str`): A model folder or Hub id of a supported causal LM.
        output_dir (`str` or `Path`): Where the extended model goes (new or empty unless `overwrite`).
        target_length (`int`): The extended window (``max_position_embeddings``).
        method (`str`): The baseline factor vector when there is no `factors_file`.
        factors_file (`str`, *optional*): JSON file of factors to use instead.
        original_length (`int`, *optional*): The pre-training window; default the model's current window.
        dtype (`str`): Weights dtype, one of `hf_longrope2.utils.environment.DTYPES`.
        overwrite (`bool`): Replace a non-empty `output_dir`.

    Returns:
        `PreTrainedModel`: the extended model (already saved).
    """
    out = check_output_dir(output_dir, overwrite)
    source = model_source(model)
    extra: dict = {}
    if factors_file:
        spec = read_json(factors_file, "--factors-file")
        if not isinstance(spec, dict) or "long_factor" not in spec:
            found = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
            raise ValueError(f"--factors-file {factors_file} has no 'long_factor' key (found: {found})")
        check_factor_values(spec, f"--factors-file {factors_file}")
    loaded = AutoModelForCausalLM.from_pretrained(source, dtype="auto" if dtype == "auto" else torch_dtype(dtype))
    if factors_file:
        extra = {k: spec[k] for k in ("long_factor", "critical_dim", "long_mscale") if k in spec}
    else:
        params = longrope2_parameters(loaded.config)
        original = (
            original_length
            or params.get("original_max_position_embeddings")
            or loaded.config.max_position_embeddings
        )
        # the method's own attention factor too: PI and NTK 1.0, YaRN 0.1 ln s + 1
        extra = factors.baseline(
            method, rotary_dim_of(loaded.config, params), float(params["rope_theta"]), int(original), target_length
        )
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

    save_atomically(out, write, overwrite=overwrite)
    return loaded


_SKIP = {"config.json", "README.md"}  # a config and a card of its own (the source's would be wrong)


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
    rope = out["rope_parameters"]
    params = rope[arch.nested_rope_key] if arch.nested_rope_key else rope
    if params.get("rope_type") != ROPE_TYPE:
        raise ValueError(f"rope_parameters has rope_type {params.get('rope_type')!r}, expected {ROPE_TYPE!r}")
    original = params["original_max_position_embeddings"]
    factor = params.get("factor") or config["max_position_embeddings"] / original
    long_mscale = params.get("long_mscale")
    long_mscale = default_long_mscale(factor, original) if long_mscale is None else long_mscale
    n = len(params["long_factor"])
    exported = {
        "rope_type": "longrope",
        "rope_theta": params["rope_theta"],
        "short_factor": list(params.get("short_factor") or [1.0] * n),
        "long_factor": list(params["long_factor"]),
        "original_max_position_embeddings": original,
        "factor": factor,
        "attention_factor": long_mscale,
        "short_mscale": params.get("short_mscale", 1.0),
        "long_mscale": long_mscale,
    }
    if "partial_rotary_factor" in params:
        exported["partial_rotary_factor"] = params["partial_rotary_factor"]
    if arch.nested_rope_key:
        out["rope_parameters"] = {**rope, arch.nested_rope_key: exported}
    else:
        out["rope_parameters"] = exported
    if "original_max_position_embeddings" in out:  # phi3 reads the top-level field first
        out["original_max_position_embeddings"] = original
    # short_mscale / long_mscale are for vLLM (its short window is the base model only with short_mscale 1.0);
    # transformers 5 would warn that its own longrope does not use them.
    out["ignore_keys_at_rope_validation"] = ["long_mscale", "short_mscale"]
    if not arch.nested_rope_key:
        out.update(v4_rope_fields(exported))
    return out


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
