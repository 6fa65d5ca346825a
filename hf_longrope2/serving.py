"""Export a longrope2 model folder in transformers' built-in ``longrope`` vocabulary (the format vLLM reads).

```python
>>> hf_longrope2.export_for_serving("smollm2-longrope2-32k", "smollm2-longrope2-32k-serving")
# vllm serve smollm2-longrope2-32k-serving --max-model-len 32768
```

The exported config has ``rope_type: "longrope"``, ``short_factor`` all 1.0 (or the model's short
factors), the searched ``long_factor``, ``original_max_position_embeddings``, ``factor``,
``short_mscale`` / ``long_mscale`` and ``attention_factor = long_mscale``. Weights and tokenizer files
are hard-linked when the file system allows it, copied otherwise. No custom code is written.

How it behaves differently from ``longrope2`` (which picks the window per document):

- transformers (``longrope``): the window is picked once per forward pass from ``max(position_ids) + 1``;
  a packed row with one long document puts every document on the long factors. ``attention_factor``
  (= ``long_mscale``) multiplies cos/sin for *both* windows, so short inputs are not bit-identical to the
  original model unless ``long_mscale`` is 1.0. Long inputs are identical to longrope2 (tested).
  transformers warns that ``short_mscale`` / ``long_mscale`` are unrecognised keys; they are there for vLLM.
- vLLM (its Phi-3 ``longrope`` implementation): reads ``short_factor``, ``long_factor``,
  ``original_max_position_embeddings`` and ``short_mscale`` / ``long_mscale``, and uses the long factors
  whenever ``max_model_len`` exceeds the original window. Serve with ``--max-model-len`` equal to the original
  window to get the original model, larger to get the extended one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .modeling_longrope2 import architecture_for
from .rope import ROPE_TYPE, default_long_mscale

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
    return out


def export_for_serving(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a copy of the longrope2 model folder `src_dir` that plain transformers and vLLM load natively.

    The source is checked first (config values finite and positive, weights complete); the destination is
    assembled in a temporary sibling folder and renamed into place, so a failure never leaves a half-written
    `dst_dir`. An existing non-empty `dst_dir` is refused unless `overwrite`.

    Returns:
        `Path`: the destination folder.
    """
    from .atomic import check_output_dir, save_atomically
    from .loading import check_model_folder_loadable

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
