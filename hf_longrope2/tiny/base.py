"""The embedded default: a tiny pretrained base model shipped inside the package (no hub, no GPU).

```python
>>> from hf_longrope2.tiny.base import tiny_base_path
>>> model = AutoModelForCausalLM.from_pretrained(tiny_base_path())   # Llama, 256-token window, original RoPE
```

It is made by ``recipes/pretrain_tiny.py`` (its ``README.md`` has the settings and the measured quality gate)
and used by ``hf-longrope2 demo`` and ``benchmarks/micro_reproduction.py``.
"""

from __future__ import annotations

from pathlib import Path

TINY_BASE = Path(__file__).with_name("tiny_base")
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def tiny_base_path() -> Path:
    """The folder of the shipped tiny base model.

    Raises:
        FileNotFoundError: if the package was installed without it (the message says what is missing).
    """
    missing = [name for name in REQUIRED if not (TINY_BASE / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the embedded tiny base model is incomplete: {missing} missing in {TINY_BASE}; reinstall hf-longrope2 "
            "or rebuild it with `python recipes/pretrain_tiny.py --output-dir hf_longrope2/tiny/tiny_base`"
        )
    return TINY_BASE
