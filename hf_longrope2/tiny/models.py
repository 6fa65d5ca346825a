"""Tiny random models of every supported architecture, for ``hf-longrope2 check``, midtraining's
``builtin:tiny-llama`` and the tests (no hub access).

```python
>>> from hf_longrope2.tiny.models import tiny_model, extended_pair
>>> base, ext = extended_pair("qwen3")   # same weights; ext has a 32 -> 128 token longrope2 window
```
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging as transformers_logging

from .. import factors
from ..extension import extend
from ..modeling.modeling_longrope2 import SUPPORTED_MODEL_TYPES, architecture_for
from ..modeling.rope import RopeGeometry, rope_parameters

ORIGINAL = 32  # native window of the tiny models
TARGET = 128  # extended window (s = 4)
VOCAB = 100  # = len(char_tokenizer())
ISOLATED_LOADER = Path(__file__).with_name("_isolated_load.py")

#: What every tiny model shares; each architecture adds its own [`TINY_OVERRIDES`] entry.
TINY_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=ORIGINAL,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
)
#: Keyword arguments of each architecture's stock config class beyond [`TINY_COMMON`], for the random models the
#: tests and ``hf-longrope2 check`` build; ``attn_implementation`` is the one it runs with. Kept here, not in the
#: architecture table, because the table's file is copied next to every saved model.
TINY_OVERRIDES: dict[str, dict] = {
    "llama": {},
    "mistral": {"sliding_window": None},
    "qwen2": {"use_sliding_window": False},
    "qwen3": {"head_dim": 16},
    # partial rotary: 16 * 0.5 = 8 rotary dims -> 4 factors
    "phi3": {"partial_rotary_factor": 0.5, "original_max_position_embeddings": 32},
    "gemma": {"head_dim": 16},
    # no SDPA path (attention soft-capping); eager also honours packed documents
    "gemma2": {"head_dim": 16, "sliding_window": 4096, "query_pre_attn_scalar": 16, "attn_implementation": "eager"},
    "gemma3_text": {"head_dim": 16, "sliding_window": 4096, "query_pre_attn_scalar": 16,
                    "layer_types": ["sliding_attention", "full_attention"]},
}
#: Every supported architecture (the product's table, not a list of its own).
MODEL_TYPES = list(SUPPORTED_MODEL_TYPES)


def char_tokenizer():
    """A character-level fast tokenizer over printable ASCII and newline (100 ids; <pad>=0, <s>=1, </s>=2, <unk>=3).

    Real text round-trips through it, so needle samples and perplexities on tiny models use real data paths.
    """
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {token: i for i, token in enumerate(specials + chars)}
    backend = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def save_tiny_model(path: str | Path, model_type: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random `model_type` model with [`char_tokenizer`] to `path` (a Hub-like local folder)."""
    path = Path(path)
    tiny_model(model_type, seed).save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return path


def tiny_config(model_type: str):
    """A 2-layer config of `model_type` with a 32-token window: [`TINY_COMMON`] plus the architecture's own
    [`TINY_OVERRIDES`] entry."""
    arch = architecture_for(model_type)
    overrides = dict(TINY_OVERRIDES[arch.model_type])
    attn_implementation = overrides.pop("attn_implementation", "sdpa")
    config = arch.base_config_class(**TINY_COMMON, **overrides)
    config._attn_implementation = attn_implementation
    return config


def tiny_model(model_type: str, seed: int = 0):
    """A random causal LM of `model_type` with the original RoPE, eval mode, fp32."""
    torch.manual_seed(seed)
    model = architecture_for(model_type).base_model_class(tiny_config(model_type)).eval()
    # Random init gives near-uniform predictions; larger weights make positions matter in the logits.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


def rotary_dim(model) -> int:
    return RopeGeometry.from_config(model.config).rotary_dim


def long_factors_for(model) -> list[float]:
    """A monotone, non-trivial long factor vector of LongRoPE2 shape for `model`."""
    dim = rotary_dim(model)
    half = dim // 2
    critical = max(1, half // 2)
    tail = [4.0 + 0.5 * i for i in range(half - critical)]
    return factors.longrope2(dim, critical, tail)


def extended_pair(model_type: str, seed: int = 0):
    """(base model, extended copy) with identical weights; the copy has a 32 -> 128 longrope2 window."""
    base = tiny_model(model_type, seed)
    ext = tiny_model(model_type, seed)
    extend(ext, long_factors_for(ext), max_position_embeddings=TARGET, critical_dim=max(1, rotary_dim(ext) // 4))
    return base, ext


def load_in_isolation(jobs: list[dict], workdir: Path) -> None:
    """Run [`_isolated_load`] in a fresh interpreter where ``hf_longrope2`` cannot be imported."""
    jobs_file = Path(workdir) / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(Path(workdir) / "modules"), "PYTHONPATH": ""}
    if not transformers_logging.is_progress_bar_enabled():  # the caller turned transformers' bars off: there too
        env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    subprocess.run(
        [sys.executable, str(ISOLATED_LOADER), str(jobs_file)], check=True, cwd=workdir, env=env, timeout=600
    )


def longrope_reference(model_type: str, ext):
    """transformers' own ``longrope`` model with the long factors and attention factor of `ext`, same weights."""
    arch = architecture_for(model_type)
    params = rope_parameters(ext.config)
    longrope = {
        "rope_type": "longrope",
        "rope_theta": params["rope_theta"],
        "short_factor": [1.0] * len(params["long_factor"]),
        "long_factor": params["long_factor"],
        "original_max_position_embeddings": params["original_max_position_embeddings"],
        "factor": ext.config.max_position_embeddings / params["original_max_position_embeddings"],
        "attention_factor": params["long_mscale"],
    }
    if "partial_rotary_factor" in params:
        longrope["partial_rotary_factor"] = params["partial_rotary_factor"]
    config = tiny_config(model_type)
    config.max_position_embeddings = ext.config.max_position_embeddings
    if arch.nested_rope_key:
        config.rope_parameters = {**config.rope_parameters, arch.nested_rope_key: longrope}
    else:
        config.rope_parameters = longrope
    ref = arch.base_model_class(config).eval()
    ref.load_state_dict(ext.state_dict())
    return ref


def greedy_generate(
    model, ids: torch.Tensor, use_cache: bool, attention_mask: torch.Tensor | None = None, new_tokens: int = 10
):
    """Greedy ``generate()`` returning (sequences, logits of every step stacked on dim 1)."""
    out = model.generate(
        ids,
        attention_mask=attention_mask if attention_mask is not None else torch.ones_like(ids),
        max_new_tokens=new_tokens,
        do_sample=False,
        use_cache=use_cache,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
    )
    return out.sequences, torch.stack(out.logits, 1)
