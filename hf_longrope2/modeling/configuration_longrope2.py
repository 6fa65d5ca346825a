"""Config classes of longrope2 models: one per supported architecture, each with a unique ``model_type``.

``LongRoPE2LlamaConfig`` is a ``LlamaConfig`` whose ``model_type`` is ``longrope2_llama``; nothing else
changes, so checkpoints keep the base model's keys. A unique ``model_type`` is what makes a saved folder
load through ``trust_remote_code`` (with ``model_type="llama"`` transformers would pick its native class,
which does not know the ``longrope2`` rope type). Shipped with saved models.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
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
from transformers.modeling_rope_utils import RotaryEmbeddingConfigMixin

from .rope import ROPE_TYPE  # noqa: F401  (importing rope registers the rope type and its validator)


class LongRoPE2LlamaConfig(LlamaConfig):
    model_type = "longrope2_llama"


class LongRoPE2MistralConfig(MistralConfig):
    model_type = "longrope2_mistral"


class LongRoPE2Qwen2Config(Qwen2Config):
    model_type = "longrope2_qwen2"


class LongRoPE2Qwen3Config(Qwen3Config):
    model_type = "longrope2_qwen3"


@strict
class LongRoPE2Phi3Config(Phi3Config):
    """Phi-3 config that accepts ``longrope2``: Phi3Config's own validator only allows default/longrope."""

    model_type = "longrope2_phi3"

    def validate_rope(self) -> None:
        RotaryEmbeddingConfigMixin.validate_rope(self)


class LongRoPE2GemmaConfig(GemmaConfig):
    model_type = "longrope2_gemma"


class LongRoPE2Gemma2Config(Gemma2Config):
    model_type = "longrope2_gemma2"


class LongRoPE2Gemma3TextConfig(Gemma3TextConfig):
    model_type = "longrope2_gemma3_text"
