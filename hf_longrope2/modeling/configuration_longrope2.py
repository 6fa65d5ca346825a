"""Config classes of longrope2 models: one per supported architecture, each with a unique ``model_type``.

``LongRoPE2LlamaConfig`` is a ``LlamaConfig`` whose ``model_type`` is ``longrope2_llama``; nothing else
changes, so checkpoints keep the base model's keys. A unique ``model_type`` is what makes a saved folder
load through ``trust_remote_code`` (with ``model_type="llama"`` transformers would pick its native class,
which does not know the ``longrope2`` rope type). Shipped with saved models.

Importing this module (as ``trust_remote_code`` does when a model is loaded) registers every class with
``AutoConfig``: ``AutoTokenizer.from_pretrained(folder)`` reads ``config.json`` first and, for a ``model_type``
it does not know, asks "Do you wish to run the custom code? [y/N]" (transformers 5.24,
``models/auto/tokenization_auto.py``); once the type is registered it loads without asking. Each class carries
the ``longrope2`` validator itself, where ``RotaryEmbeddingConfigMixin.validate_rope`` looks it up
(``getattr(self, "_validate_longrope2_rope_parameters")``).
"""

from __future__ import annotations

import transformers

if int(transformers.__version__.split(".")[0]) < 5:  # the rope_parameters format and RotaryEmbeddingConfigMixin
    raise ImportError(
        f"this longrope2 model needs transformers >= 5.23 (installed: {transformers.__version__}): "
        "pip install -U 'transformers>=5.23', or use its serving export (hf-longrope2 export-serving), which loads on 4.x"
    )

from huggingface_hub.dataclasses import strict  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)
from transformers.modeling_rope_utils import RotaryEmbeddingConfigMixin  # noqa: E402

from .rope import validate_longrope2_rope_parameters  # noqa: E402  importing rope also registers the rope type


class LongRoPE2ConfigMixin:
    """The ``longrope2`` validator, where transformers looks for it (an attribute of the config)."""

    _validate_longrope2_rope_parameters = validate_longrope2_rope_parameters


class LongRoPE2LlamaConfig(LongRoPE2ConfigMixin, LlamaConfig):
    model_type = "longrope2_llama"


class LongRoPE2MistralConfig(LongRoPE2ConfigMixin, MistralConfig):
    model_type = "longrope2_mistral"


class LongRoPE2Qwen2Config(LongRoPE2ConfigMixin, Qwen2Config):
    model_type = "longrope2_qwen2"


class LongRoPE2Qwen3Config(LongRoPE2ConfigMixin, Qwen3Config):
    model_type = "longrope2_qwen3"


@strict
class LongRoPE2Phi3Config(LongRoPE2ConfigMixin, Phi3Config):
    """Phi-3 config that accepts ``longrope2``: Phi3Config's own validator only allows default/longrope."""

    model_type = "longrope2_phi3"

    def validate_rope(self) -> None:
        RotaryEmbeddingConfigMixin.validate_rope(self)


class LongRoPE2GemmaConfig(LongRoPE2ConfigMixin, GemmaConfig):
    model_type = "longrope2_gemma"


class LongRoPE2Gemma2Config(LongRoPE2ConfigMixin, Gemma2Config):
    model_type = "longrope2_gemma2"


class LongRoPE2Gemma3TextConfig(LongRoPE2ConfigMixin, Gemma3TextConfig):
    model_type = "longrope2_gemma3_text"


CONFIG_CLASSES = (
    LongRoPE2LlamaConfig,
    LongRoPE2MistralConfig,
    LongRoPE2Qwen2Config,
    LongRoPE2Qwen3Config,
    LongRoPE2Phi3Config,
    LongRoPE2GemmaConfig,
    LongRoPE2Gemma2Config,
    LongRoPE2Gemma3TextConfig,
)
for _config_class in CONFIG_CLASSES:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
