"""Causal-LM classes of longrope2 models and the architecture table keyed by ``model_type``.

Each ``LongRoPE2XxxForCausalLM`` subclasses the stock ``XxxForCausalLM`` (same modules, same checkpoint
keys) and changes two things: its rotary module chooses the window per document
(`rotary.LongRoPE2RotaryMixin`), and cached generation recomputes the cache once when a sequence crosses
the original window (see [`LongRoPE2GenerationMixin`]). Shipped with saved models.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)
from transformers.models.gemma.modeling_gemma import GemmaRotaryEmbedding
from transformers.models.gemma2.modeling_gemma2 import Gemma2RotaryEmbedding
from transformers.models.gemma3.modeling_gemma3 import Gemma3RotaryEmbedding
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.mistral.modeling_mistral import MistralRotaryEmbedding
from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding
from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding

from .configuration_longrope2 import (
    LongRoPE2Gemma2Config,
    LongRoPE2Gemma3TextConfig,
    LongRoPE2GemmaConfig,
    LongRoPE2LlamaConfig,
    LongRoPE2MistralConfig,
    LongRoPE2Phi3Config,
    LongRoPE2Qwen2Config,
    LongRoPE2Qwen3Config,
)
from .rope import ROPE_TYPE, rope_parameter_dicts
from .rotary import use_longrope2_rotary
from .windows import document_lengths


def cache_needs_recompute(
    original_max_position_embeddings: int, past_length: int, sequence_length: int, position_ids: torch.Tensor | None
) -> bool:
    """True when a cached generation step moves some row's document past the original window.

    Keys cached while a document was at most ``L_orig`` long were rotated with the original RoPE; once
    the document grows past ``L_orig`` every token of it must use the long factors, so the cache is
    recomputed once, at that step (the approach of Phi-3 in transformers). Rows of a left-padded batch
    cross at different steps; each crossing triggers one recompute, so cached generation always equals
    a no-cache recompute.
    """
    if past_length <= 0 or past_length >= sequence_length:
        return False
    if position_ids is None or position_ids.shape[-1] != sequence_length:
        return past_length <= original_max_position_embeddings < sequence_length
    position_ids = position_ids.reshape(-1, sequence_length)
    length_when_cached = position_ids[:, past_length - 1] + 1
    length_now = document_lengths(position_ids)[:, past_length - 1]
    crossed = (length_when_cached <= original_max_position_embeddings) & (length_now > original_max_position_embeddings)
    return bool(crossed.any())


def positions_from_attention_mask(attention_mask: torch.Tensor, sequence_length: int) -> torch.Tensor:
    """Position ids of the last `sequence_length` tokens, counted over the tokens `attention_mask` keeps.

    The rule of ``generate()``: real tokens are numbered 0, 1, 2, ... within their row, padding tokens get 0.
    So a right-padded row holds one document as long as its real tokens (the pads form runs of one), and a
    left-padded row starts at 0 like the row alone: each row's window is chosen as if it were alone.
    """
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 0)
    return positions[:, -sequence_length:]


def _forward_with_mask_positions(cls: type):
    """`cls`'s stock ``forward`` (same signature: the Trainer reads label names and columns from it), where a 2-D
    `attention_mask` without `position_ids` numbers each row's kept tokens from 0 ([`positions_from_attention_mask`]),
    so padding never counts towards a document's length."""
    stock = next(base.__dict__["forward"] for base in cls.__mro__[1:]
                 if "forward" in base.__dict__ and not getattr(base.__dict__["forward"], "_longrope2", False))

    @functools.wraps(stock)
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, *args, **kwargs):
        if position_ids is None and isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            reference = input_ids if input_ids is not None else kwargs.get("inputs_embeds")
            if reference is not None:
                position_ids = positions_from_attention_mask(attention_mask, reference.shape[1])
        return stock(self, input_ids, attention_mask, position_ids, *args, **kwargs)

    forward._longrope2 = True
    return forward


# generate() hands the KV cache to `prepare_inputs_for_generation` as `past_key_values=` up to transformers 5.23
# and as `cache=` from 5.24 on (5.24 still accepts `past_key_values`, deprecated until 5.40). Both names are read,
# and the cache goes on under the name it came in.
CACHE_ARGUMENTS = ("cache", "past_key_values")


class LongRoPE2GenerationMixin:
    """Per-row windows for padded batches, and one KV-cache recompute at the step a document crosses the window."""

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        use_longrope2_rotary(self, ARCHITECTURES[config.model_type].rotary_class)

    def _longrope2_original_windows(self) -> list[int]:
        dicts = rope_parameter_dicts(self.config).values()
        return [p["original_max_position_embeddings"] for p in dicts if p.get("rope_type") == ROPE_TYPE]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.forward = _forward_with_mask_positions(cls)

    def _reset_cache_at_crossing(self, input_ids: torch.Tensor, kwargs: dict) -> None:
        """Empty the cache (in place) when this step moves some row's document past the original window."""
        cache = next((kwargs[name] for name in CACHE_ARGUMENTS if kwargs.get(name) is not None), None)
        if cache is None or isinstance(cache, (tuple, list)):
            return
        past_length = cache.get_seq_length()
        position_ids = kwargs.get("position_ids")
        if any(
            cache_needs_recompute(window, past_length, input_ids.shape[1], position_ids)
            for window in self._longrope2_original_windows()
        ):
            cache.reset()
            kwargs["next_sequence_length"] = None  # feed the whole sequence again

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        self._reset_cache_at_crossing(input_ids, kwargs)
        return super().prepare_inputs_for_generation(input_ids, **kwargs)


class LongRoPE2LlamaForCausalLM(LongRoPE2GenerationMixin, LlamaForCausalLM):
    config_class = LongRoPE2LlamaConfig


class LongRoPE2MistralForCausalLM(LongRoPE2GenerationMixin, MistralForCausalLM):
    config_class = LongRoPE2MistralConfig


class LongRoPE2Qwen2ForCausalLM(LongRoPE2GenerationMixin, Qwen2ForCausalLM):
    config_class = LongRoPE2Qwen2Config


class LongRoPE2Qwen3ForCausalLM(LongRoPE2GenerationMixin, Qwen3ForCausalLM):
    config_class = LongRoPE2Qwen3Config


class LongRoPE2Phi3ForCausalLM(LongRoPE2GenerationMixin, Phi3ForCausalLM):
    config_class = LongRoPE2Phi3Config

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # Phi3ForCausalLM's own override drops the cache once, when the padded batch's total length passes the
        # window (the longrope rule): wrong for a left-padded row that crosses later. Skip it; use the per-row rule.
        self._reset_cache_at_crossing(input_ids, kwargs)
        return super(Phi3ForCausalLM, self).prepare_inputs_for_generation(input_ids, **kwargs)


class LongRoPE2GemmaForCausalLM(LongRoPE2GenerationMixin, GemmaForCausalLM):
    config_class = LongRoPE2GemmaConfig


class LongRoPE2Gemma2ForCausalLM(LongRoPE2GenerationMixin, Gemma2ForCausalLM):
    config_class = LongRoPE2Gemma2Config


class LongRoPE2Gemma3ForCausalLM(LongRoPE2GenerationMixin, Gemma3ForCausalLM):
    config_class = LongRoPE2Gemma3TextConfig


@dataclass(frozen=True)
class Architecture:
    """One supported architecture: the stock classes and their longrope2 counterparts."""

    model_type: str
    base_config_class: type
    base_model_class: type
    rotary_class: type
    config_class: type
    model_class: type
    nested_rope_key: str | None = None  # gemma3 keeps one rope dict per layer type; longrope2 goes here


#: Supported architectures, keyed by both the base and the longrope2 ``model_type``.
ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    """Add `arch` to [`ARCHITECTURES`] and register its classes for ``trust_remote_code`` saving.

    Raises:
        ValueError: its base or longrope2 ``model_type`` is registered already (nothing is overwritten).
    """
    keys = (arch.model_type, arch.config_class.model_type)
    if keys[0] == keys[1]:
        raise ValueError(f"{arch.config_class.__name__} needs a model_type of its own, not {keys[0]!r}")
    taken = [key for key in keys if key in ARCHITECTURES]
    if taken:
        raise ValueError(f"cannot register architecture {arch.model_type!r}: model_type {taken} is registered already")
    for key in keys:
        ARCHITECTURES[key] = arch
    arch.config_class.register_for_auto_class()
    arch.model_class.register_for_auto_class("AutoModelForCausalLM")
    return arch


# One entry per architecture: adding one is a config class, a model class and an entry here.
register_architecture(Architecture(
    "llama", LlamaConfig, LlamaForCausalLM, LlamaRotaryEmbedding, LongRoPE2LlamaConfig, LongRoPE2LlamaForCausalLM,
))
register_architecture(Architecture(
    "mistral", MistralConfig, MistralForCausalLM, MistralRotaryEmbedding, LongRoPE2MistralConfig,
    LongRoPE2MistralForCausalLM,
))
register_architecture(Architecture(
    "qwen2", Qwen2Config, Qwen2ForCausalLM, Qwen2RotaryEmbedding, LongRoPE2Qwen2Config, LongRoPE2Qwen2ForCausalLM,
))
register_architecture(Architecture(
    "qwen3", Qwen3Config, Qwen3ForCausalLM, Qwen3RotaryEmbedding, LongRoPE2Qwen3Config, LongRoPE2Qwen3ForCausalLM,
))
register_architecture(Architecture(
    "phi3", Phi3Config, Phi3ForCausalLM, Phi3RotaryEmbedding, LongRoPE2Phi3Config, LongRoPE2Phi3ForCausalLM,
))
register_architecture(Architecture(
    "gemma", GemmaConfig, GemmaForCausalLM, GemmaRotaryEmbedding, LongRoPE2GemmaConfig, LongRoPE2GemmaForCausalLM,
))
register_architecture(Architecture(
    "gemma2", Gemma2Config, Gemma2ForCausalLM, Gemma2RotaryEmbedding, LongRoPE2Gemma2Config,
    LongRoPE2Gemma2ForCausalLM,
))
register_architecture(Architecture(
    "gemma3_text", Gemma3TextConfig, Gemma3ForCausalLM, Gemma3RotaryEmbedding, LongRoPE2Gemma3TextConfig,
    LongRoPE2Gemma3ForCausalLM, nested_rope_key="full_attention",
))

#: The base ``model_type`` of every supported architecture, in registration order.
SUPPORTED_MODEL_TYPES = tuple(dict.fromkeys(arch.model_type for arch in ARCHITECTURES.values()))


def architecture_for(model_type: str) -> Architecture:
    """The table entry for `model_type` (base or longrope2); ValueError listing the supported ones otherwise."""
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"hf_longrope2 does not support model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return ARCHITECTURES[model_type]

