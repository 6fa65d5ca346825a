"""Tiny random models of every supported architecture, built from configs (no hub access)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

import hf_longrope2
from hf_longrope2.modeling_longrope2 import architecture_for

ORIGINAL = 32  # native window of the tiny models
TARGET = 128  # extended window (s = 4)
VOCAB = 97

_COMMON = dict(
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

TINY_CONFIGS = {
    "llama": lambda: LlamaConfig(**_COMMON),
    "mistral": lambda: MistralConfig(**_COMMON, sliding_window=None),
    "qwen2": lambda: Qwen2Config(**_COMMON, use_sliding_window=False),
    "qwen3": lambda: Qwen3Config(**_COMMON, head_dim=16),
    # partial rotary: 16 * 0.5 = 8 rotary dims -> 4 factors
    "phi3": lambda: Phi3Config(**_COMMON, partial_rotary_factor=0.5, original_max_position_embeddings=ORIGINAL),
    "gemma": lambda: GemmaConfig(**_COMMON, head_dim=16),
    "gemma2": lambda: Gemma2Config(**_COMMON, head_dim=16, sliding_window=4096, query_pre_attn_scalar=16),
    "gemma3_text": lambda: Gemma3TextConfig(
        **_COMMON,
        head_dim=16,
        sliding_window=4096,
        query_pre_attn_scalar=16,
        layer_types=["sliding_attention", "full_attention"],
    ),
}
MODEL_TYPES = list(TINY_CONFIGS)


def tiny_config(model_type: str):
    config = TINY_CONFIGS[model_type]()
    # gemma2 has no SDPA path (attention soft-capping); eager also honours packed documents
    config._attn_implementation = "eager" if model_type == "gemma2" else "sdpa"
    return config


def tiny_model(model_type: str, seed: int = 0):
    """A random causal LM of `model_type` with the original RoPE, eval mode, fp32."""
    torch.manual_seed(seed)
    config = tiny_config(model_type)
    model = architecture_for(model_type).base_model_class(config).eval()
    # Random init gives near-uniform predictions; larger weights make positions matter in the logits.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


def rotary_dim(model) -> int:
    params = hf_longrope2.modeling_longrope2.longrope2_parameters(model.config)
    head_dim = getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
    return int(head_dim * params.get("partial_rotary_factor", 1.0))


def long_factors_for(model) -> list[float]:
    """A monotone, non-trivial long factor vector (LongRoPE2 shape) for `model`."""
    dim = rotary_dim(model)
    half = dim // 2
    critical = max(1, half // 2)
    tail = [4.0 + 0.5 * i for i in range(half - critical)]
    return hf_longrope2.factors.longrope2(dim, critical, tail)


def extended_model(model_type: str, seed: int = 0):
    """(base model, extended copy) with identical weights."""
    base = tiny_model(model_type, seed)
    ext = tiny_model(model_type, seed)
    hf_longrope2.extend(
        ext, long_factors_for(ext), max_position_embeddings=TARGET, critical_dim=max(1, rotary_dim(ext) // 4)
    )
    return base, ext


@pytest.fixture(params=MODEL_TYPES)
def model_type(request) -> str:
    return request.param
