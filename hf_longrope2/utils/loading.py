"""Checks run before any verb loads a model or reads a file: clear one-line errors instead of deep tracebacks.

```python
>>> from hf_longrope2.utils.loading import model_source, read_json
>>> model_source("./smollm2-32k")          # a complete local folder, or a Hub id; ValueError naming the problem
>>> read_json("factors.json", "--factors-file")
```

[`model_source`] tells a local path from a Hub id: a path that does not exist is refused at once (never sent
to the Hub), and an existing folder is checked without loading it: ``config.json`` parses, its rope values
are finite in float32 and positive ([`check_rope_values`]), a longrope2 config is consistent (rope_type
present, original window below max_position_embeddings, one long factor per rotary pair:
[`check_longrope2_config`]), and every ``*.safetensors`` file (and every shard of an
index) is complete. Everything raises `ValueError` with the file (and key) named and what to do.
"""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path
from typing import Any

from ..modeling.rope import ROPE_TYPE, rope_parameter_dicts, rotary_dim_of, text_config

# rope keys that hold a factor, a scale or a length: finite and > 0 whatever the rope type
POSITIVE_ROPE_KEYS = (
    "factor", "long_factor", "short_factor", "long_mscale", "short_mscale", "attention_factor", "rope_theta",
    "original_max_position_embeddings", "beta_fast", "beta_slow", "low_freq_factor", "high_freq_factor",
    "mscale", "mscale_all_dim",
)
FLOAT32_MAX = 3.4028234663852886e38  # rope values are computed in float32: a larger value becomes inf there
LONGROPE2_MODEL_TYPE_PREFIX = "longrope2_"  # the model_type of every longrope2 config class (longrope2_llama, ...)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_LAYER = re.compile(r"\blayers\.(\d+)\.")


NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_regular_file(path: str | Path, label: str) -> None:
    """Refuse `path` (a ``--config`` / ``--factors-file``) unless it is a regular file (or missing: the reader says so).

    Reading a FIFO blocks until something writes to it, and a device may never end: neither is read.

    Raises:
        ValueError: ``"<label> <path> is a named pipe (FIFO), not a regular file; ..."``.
    """
    try:
        mode = Path(path).stat().st_mode  # stat does not open: a FIFO does not block here
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in NOT_REGULAR if test(mode)), "not a file")
        raise ValueError(f"{label} {path} is {kind}, not a regular file; pass the path of a file")


def read_json(path: str | Path, what: str = "") -> Any:
    """The JSON in `path`, or ValueError naming the file (and `what` it is for) with the position of the error."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    check_regular_file(path, what or "file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{label}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ValueError(f"{label}: not a readable JSON file ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{label} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def _bad_number(value: Any) -> bool:
    return (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
            or value > FLOAT32_MAX)


def check_rope_values(config: dict, source: str) -> None:
    """Refuse non-finite or non-positive rope factors, scales and lengths in the config dict read from `source`.

    Raises:
        ValueError: naming `source`, the key (and index) and the value.
    """
    for where, rope in rope_parameter_dicts(config).items():
        check_factor_values(rope, source, f"{where}.")
    for key in ("max_position_embeddings", "rope_theta"):
        if key in config and config[key] is not None and _bad_number(config[key]):
            raise ValueError(f"{source}: {key} is {config[key]!r}; it must be a finite number > 0 (float32)")
    check_longrope2_config(config, source)


def check_longrope2_config(config: dict, source: str) -> None:
    """The one check of a saved ``longrope2`` ``config.json`` dict, run by every verb that loads a model folder
    (through [`check_model_folder_loadable`] and the push checks): a ``longrope2_*`` model_type has a rope dict
    with ``rope_type: "longrope2"``; a rope dict with long factors names its rope type; and in every
    ``longrope2`` dict ``original_max_position_embeddings`` is an integer below ``max_position_embeddings``
    and ``long_factor`` (and ``short_factor``) holds one finite factor >= 1 per rotary pair. (Finiteness in
    float32 and positivity of every value: [`check_factor_values`].)

    Raises:
        ValueError: one line naming `source`, the key, its value and what is accepted.
    """
    text = text_config(config)
    if not isinstance(text, dict):
        return
    dicts = rope_parameter_dicts(config)
    for where, rope in dicts.items():
        if "long_factor" in rope and not (rope.get("rope_type") or rope.get("type")):
            raise ValueError(f"{source}: {where}.rope_type is missing but {where}.long_factor is set; set "
                             f"{where}.rope_type to \"{ROPE_TYPE}\" (or \"longrope\" for Phi-3 style factors)")
    longrope2 = {w: r for w, r in dicts.items() if (r.get("rope_type") or r.get("type")) == ROPE_TYPE}
    model_type = str(config.get("model_type") or "")
    if model_type.startswith(LONGROPE2_MODEL_TYPE_PREFIX) and not longrope2:
        found = {w: r.get("rope_type") for w, r in dicts.items()} or "no rope_parameters"
        raise ValueError(f"{source}: model_type is {model_type!r} but no rope dict has rope_type \"{ROPE_TYPE}\" "
                         f"(found {found}); set rope_parameters.rope_type to \"{ROPE_TYPE}\"")
    max_positions = text.get("max_position_embeddings")
    for where, rope in longrope2.items():
        original = rope.get("original_max_position_embeddings")
        if isinstance(original, bool) or not isinstance(original, int) or original < 1:
            raise ValueError(f"{source}: {where}.original_max_position_embeddings is {original!r}; it must be the "
                             "pre-training window, a positive integer")
        if isinstance(max_positions, int) and original >= max_positions:
            raise ValueError(f"{source}: {where}.original_max_position_embeddings is {original}, not below "
                             f"max_position_embeddings {max_positions}; it must be smaller (longrope2 extends "
                             "the original window to max_position_embeddings)")
        try:
            pairs = rotary_dim_of(text, rope) // 2
        except (TypeError, ZeroDivisionError):  # head size missing: transformers' own loader names it
            continue
        for key in ("long_factor", "short_factor"):
            factors = rope.get(key)
            if factors is None and key == "short_factor":
                continue
            if not isinstance(factors, list) or len(factors) != pairs:
                shown = f"{len(factors)} values" if isinstance(factors, list) else repr(factors)
                raise ValueError(f"{source}: {where}.{key} has {shown}; it must be a list of {pairs} factors, "
                                 f"one per rotary pair (head_dim {2 * pairs} / 2)")
            below = next((i for i, x in enumerate(factors) if not _bad_number(x) and x < 1), None)
            if below is not None:
                raise ValueError(f"{source}: {where}.{key}[{below}] is {factors[below]!r}; factors must be >= 1 "
                                 "(1.0 keeps a pair's original frequency)")


def check_factor_values(values: dict, source: str, prefix: str = "") -> None:
    """Refuse non-finite or non-positive factors and scales among the keys of `values` (a rope dict, a factors file).

    Raises:
        ValueError: naming `source`, the key (and index) and the value.
    """
    for key in POSITIVE_ROPE_KEYS:
        value = values.get(key)
        if value is None:
            continue
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if _bad_number(item):
                at = f"{prefix}{key}" + (f"[{index}]" if index is not None else "")
                raise ValueError(f"{source}: {at} is {item!r}; rope factors, scales and lengths must be finite "
                                 "numbers > 0 and <= 3.4e38, the float32 maximum (re-run the search or extend that wrote it)")


def check_safetensors(path: Path) -> str | None:
    """Why `path` is not a complete safetensors file (header and size), or None."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            if not 0 < header_size <= size - 8:
                return f"{path.name} is not a safetensors file ({size} bytes)"
            header = json.loads(f.read(header_size))
    except (OSError, ValueError) as exc:
        return f"{path.name} has an unreadable safetensors header ({exc})"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + header_size + end != size:
        return f"{path.name} is truncated or padded: {size} bytes, its header describes {8 + header_size + end}"
    return None


def weight_problems(folder: Path, files: list[str]) -> list[str]:
    """Problems of the ``*.safetensors`` weights among `files` (relative to `folder`): missing shards, bad files."""
    problems = []
    weights = [f for f in files if f.endswith(".safetensors")]
    for index_name in [f for f in files if f.endswith(".safetensors.index.json")]:
        try:
            shards = set(json.loads((folder / index_name).read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            problems.append(f"{index_name} is not a valid index (no weight_map: {exc})")
            continue
        missing = sorted(s for s in shards if s not in files)
        if missing:
            problems.append(f"{index_name} names shards that are missing: {missing}")
    for name in weights:
        problem = check_safetensors(folder / name)
        if problem:
            problems.append(problem)
    return problems


def _header(path: Path) -> dict:
    with path.open("rb") as f:
        return json.loads(f.read(int.from_bytes(f.read(8), "little")))


def config_weight_mismatch(folder: Path, config: dict, files: list[str]) -> str | None:
    """Why the weights in `folder` cannot be the model `config` describes (embedding shape, layer count), or None.

    Reads only the safetensors headers: cheap, and enough to catch weights replaced by another model's (a
    different size) under a config that still describes the old one.
    """
    hidden, vocab, layers = (config.get(k) for k in ("hidden_size", "vocab_size", "num_hidden_layers"))
    if not all(isinstance(x, int) for x in (hidden, vocab, layers)):
        return None  # a multimodal or unusual config: leave it to from_pretrained
    shapes, found_layers = {}, set()
    for name in (f for f in files if f.endswith(".safetensors")):
        for key, entry in _header(folder / name).items():
            if key.endswith("embed_tokens.weight"):
                shapes[key] = entry["shape"]
            match = _LAYER.search(key)
            if match:
                found_layers.add(int(match.group(1)))
    embedding = next(iter(shapes.values()), None)
    if embedding is not None and embedding != [vocab, hidden]:
        return f"the weights' embedding is {embedding[0]} x {embedding[1]}, config.json says {vocab} x {hidden}"
    if found_layers and len(found_layers) != layers:
        return f"the weights have {len(found_layers)} layers, config.json says {layers}"
    return None


def check_model_folder_loadable(folder: Path, flag: str = "--model", weights: bool = True) -> dict:
    """The ``config.json`` dict of local model folder `folder`, after the checks of the module docstring."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{flag} {folder}: no config.json there, so it is not a saved model folder "
                         "(save_pretrained, hf-longrope2 extend / search / midtrain, or convert-gguf write one)")
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} must hold a JSON object, got a {type(config).__name__}")
    check_rope_values(config, str(config_path))
    if weights:
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
        problems = weight_problems(folder, files)
        mismatch = None if problems else config_weight_mismatch(folder, config, files)
        if mismatch:
            problems.append(f"{mismatch}: the weights are not this config's model (overwritten?)")
        if problems:
            raise ValueError(f"{flag} {folder}: {'; '.join(problems)}; re-save or re-download the model")
    return config


def model_source(name: str, flag: str = "--model", weights: bool = True) -> str:
    """`name` checked as a model source: an existing local folder (checked), or a Hub id (left to the Hub).

    A name that is not a Hub id (``./x``, ``/abs/x``, ``a/b/c``, ``~/x``) and does not exist is refused here,
    so it is never sent to the Hub.

    Raises:
        ValueError: a missing local path, a file instead of a folder, or a folder failing the checks.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{flag} {name} is a file; pass a model folder (config.json, *.safetensors, tokenizer)")
        check_model_folder_loadable(path, flag, weights)
        return str(path)
    if not HUB_ID.match(name) or name.startswith((".", "~")) or name.endswith(("/", ".json", ".gguf")):
        raise ValueError(f"{flag} {name}: no such folder (and not a Hub id of the form namespace/name)")
    return name


def _shown(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def loading_problems(info: dict) -> list[str]:
    """The tensors transformers' ``output_loading_info`` reports as missing, unexpected or of another shape."""
    problems = []
    missing, unexpected = sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(info.get("mismatched_keys") or [], key=str)
    if missing:
        problems.append(f"{len(missing)} tensor(s) the model needs are not in the weights ({_shown(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) in the weights have no place in the model ({_shown(unexpected)})")
    if mismatched:
        shown = [" ".join(str(x) for x in m) if isinstance(m, tuple | list) else str(m) for m in mismatched]
        problems.append(f"{len(mismatched)} tensor(s) have another shape in the weights than in the model "
                        f"({_shown(shown)})")
    return problems


def load_causal_lm(name: str, flag: str = "--model", **kwargs: Any):
    """``AutoModelForCausalLM.from_pretrained(name, **kwargs)``, refusing weights that do not fit the config.

    transformers loads a model whose weights lack some of its tensors (they are left randomly initialised), hold
    tensors it has no place for (they are dropped) or, with ``ignore_mismatched_sizes``, hold tensors of another
    shape, with a log line at most. Here any of the three is one `ValueError` naming the tensors, so a config
    from another architecture over these weights (a Qwen2 config over Llama weights: q/k/v biases missing; a
    Phi-3 config: fused projections) is refused before anything is extended, trained or reported.

    What this cannot see, honestly: two architectures whose tensors have the same names and shapes. A Gemma (v1)
    or Mistral config over Llama weights loads every tensor exactly, and the model computes something else (Gemma
    scales the embeddings and adds 1 to its norm weights); nothing in a safetensors file records which
    architecture wrote it, so that mix-up goes unnoticed here.

    Raises:
        ValueError: ``"--model DIR: its weights do not fit the <model_type> model its config.json describes: ..."``.
    """
    from transformers import AutoModelForCausalLM  # seconds to import: only the verbs that load a model pay

    kwargs.setdefault("ignore_mismatched_sizes", True)  # reported below as one line, not a RuntimeError
    model, info = AutoModelForCausalLM.from_pretrained(name, output_loading_info=True, **kwargs)
    problems = loading_problems(info)
    if problems:
        raise ValueError(f"{flag} {name}: its weights do not fit the {model.config.model_type} model its "
                         f"config.json describes: {'; '.join(problems)}; the config is not this model's (edited, or "
                         "from another architecture?): restore the model's own config.json")
    return model
