"""Facts about the running environment: the package version, installed versions, dtypes, the cache folder.

```python
>>> from hf_longrope2.utils.environment import cache_dir, torch_dtype, versions
>>> versions()["transformers"]                   # recorded in every log and report
>>> torch_dtype("auto", torch.device("cpu"))     # torch.float32 (bfloat16 on a GPU)
>>> cache_dir()                                  # $HF_LONGROPE2_CACHE or $HF_HOME/hf_longrope2
>>> with transformers_bars_off():                # our own tqdm bar alone on the terminal
...     model = AutoModelForCausalLM.from_pretrained(path)
```
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

__version__ = "0.1.0"

#: Floating-point weight dtypes.
FLOAT_DTYPES = ("float32", "bfloat16", "float16")
#: Weight dtypes a verb accepts; ``auto`` is bfloat16 on a GPU and float32 on a CPU.
DTYPES = ("auto", *FLOAT_DTYPES)


def torch_dtype(name: str, device: torch.device | None = None) -> torch.dtype:
    """The torch dtype of `name` (one of [`DTYPES`]); ``auto``: bfloat16 on CUDA `device`, float32 otherwise."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {name!r}")
    if name == "auto":
        return torch.bfloat16 if device is not None and device.type == "cuda" else torch.float32
    return getattr(torch, name)


def versions() -> dict:
    """Python and the versions of the packages a result depends on (None when not installed)."""
    out = {"python": platform.python_version()}
    for name in ("hf-longrope2", "torch", "transformers", "accelerate", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cache_dir() -> Path:
    """Where tokenised samples are cached: ``$HF_LONGROPE2_CACHE`` or ``$HF_HOME/hf_longrope2`` (~/.cache/...)."""
    if os.environ.get("HF_LONGROPE2_CACHE"):
        return Path(os.environ["HF_LONGROPE2_CACHE"])
    hf_home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return Path(hf_home) / "hf_longrope2"

@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """Turn transformers' own progress bars ("Loading weights", "Writing model shards") off while ours run, so the
    two do not interleave on one terminal; they are turned back on after (unless they were off already)."""
    from transformers.utils import logging as transformers_logging  # local: `hf-longrope2 env` skips transformers

    was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            transformers_logging.enable_progress_bar()


PACKAGES = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "huggingface-hub", "flash-attn")


@dataclass
class EnvArguments:
    """``hf-longrope2 env`` takes no options."""


def print_environment(args: EnvArguments) -> None:
    """``hf-longrope2 env``: the versions that matter and the supported architectures, one per line."""
    from ..modeling import SUPPORTED_MODEL_TYPES  # the model classes: only when the env verb prints them

    print(f"hf-longrope2 {__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    for name in PACKAGES:
        try:
            print(f"{name} {version(name)}")
        except PackageNotFoundError:
            print(f"{name} (not installed)")
    print("supported model_type:", ", ".join(SUPPORTED_MODEL_TYPES))
