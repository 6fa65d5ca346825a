"""Per-document window selection inside a model's own rotary module.

[`LongRoPE2RotaryMixin`] overrides only ``forward`` of the stock ``XxxRotaryEmbedding`` class: the
short-window cos/sin come from the stock forward (bit-identical to the original model, since the
``longrope2`` init function fills ``inv_freq`` with the original frequencies), the long-window cos/sin
from the long factors and ``long_mscale``, and each token takes one or the other by
[`~hf_longrope2.modeling.windows.long_window_mask`]. The long table is derived from the config on first use per
device, never stored as a buffer (checkpoint keys stay those of the base model).

This module is shipped with saved models; it imports torch and transformers only.
"""

from __future__ import annotations

import torch
from torch import nn

from .rope import ROPE_TYPE, LongRoPE2Parameters, rope_parameters, scaled_inv_freq
from .windows import SequenceShard, long_window_mask

_ROTARY_CLASSES: dict[type, type] = {}


class LongRoPE2RotaryMixin:
    """Mixed into a stock rotary class; see the module docstring."""

    longrope2_shard: SequenceShard | None = None

    def _longrope2_table(self, device: torch.device, layer_type: str | None) -> tuple[torch.Tensor, float, int]:
        cache = self.__dict__.setdefault("_longrope2_cache", {})
        key = (str(device), layer_type)
        if key not in cache:
            p = LongRoPE2Parameters.from_config(self.config, layer_type)
            inv_freq = scaled_inv_freq(p.rope_theta, p.rotary_dim, p.long_factor, device=device)
            cache[key] = (inv_freq, p.long_mscale, p.original_max_position_embeddings)
        return cache[key]

    def reset_longrope2(self) -> None:
        """Recompute every frequency table from the config (after the rope parameters changed)."""
        self.__dict__.pop("_longrope2_cache", None)
        layer_types = [None] if not isinstance(self.rope_type, dict) else list(self.rope_type)
        for layer_type in layer_types:
            prefix = "" if layer_type is None else f"{layer_type}_"
            params = rope_parameters(self.config, layer_type)
            if params.get("rope_type") != ROPE_TYPE:
                continue
            if layer_type is None:
                self.rope_type = ROPE_TYPE
            else:
                self.rope_type[layer_type] = ROPE_TYPE
            p = LongRoPE2Parameters.from_config(self.config, layer_type)
            buffer = getattr(self, f"{prefix}inv_freq")
            inv_freq = scaled_inv_freq(p.rope_theta, p.rotary_dim, p.short_factor, device=buffer.device)
            with torch.no_grad():
                buffer.copy_(inv_freq)
                getattr(self, f"{prefix}original_inv_freq").copy_(inv_freq)
            setattr(self, f"{prefix}attention_scaling", p.short_mscale)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, layer_type: str | None = None):
        args = (x, position_ids) if layer_type is None else (x, position_ids, layer_type)
        cos, sin = super().forward(*args)
        if rope_parameters(self.config, layer_type).get("rope_type") != ROPE_TYPE:
            return cos, sin  # e.g. gemma3 sliding-window layers keep their own rope
        if position_ids.dim() == 1:
            position_ids = position_ids[None]
        inv_freq, mscale, original = self._longrope2_table(x.device, layer_type)
        is_long = long_window_mask(position_ids, original, self.longrope2_shard)[..., None]
        freqs = position_ids[..., None].float() * inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos_long = (emb.cos() * mscale).to(dtype=x.dtype)
        sin_long = (emb.sin() * mscale).to(dtype=x.dtype)
        return torch.where(is_long, cos_long, cos), torch.where(is_long, sin_long, sin)


def longrope2_rotary_class(base: type) -> type:
    """The ``LongRoPE2<Base>`` subclass of a stock rotary class (created once, cached).

    The name keeps ``RotaryEmbedding`` so transformers' weight initialisation still recognises it.
    """
    if issubclass(base, LongRoPE2RotaryMixin):
        return base
    if base not in _ROTARY_CLASSES:
        _ROTARY_CLASSES[base] = type(
            f"LongRoPE2{base.__name__}", (LongRoPE2RotaryMixin, base), {"__module__": __name__}
        )
    return _ROTARY_CLASSES[base]


def use_longrope2_rotary(model: nn.Module, rotary_class: type) -> int:
    """Switch every `rotary_class` module of `model` to its longrope2 subclass in place; returns the count."""
    count = 0
    for module in model.modules():
        if isinstance(module, rotary_class):
            module.__class__ = longrope2_rotary_class(type(module))
            module.reset_longrope2()
            count += 1
    return count


def set_sequence_shard(model: nn.Module, shard: SequenceShard | None) -> None:
    """Make every longrope2 rotary module of `model` decide windows globally over a sequence-parallel group.

    Call it with the rank's [`~hf_longrope2.modeling.windows.SequenceShard`] before forward passes on sharded rows
    (context parallelism), and with None to go back to local decisions.
    """
    found = False
    for module in model.modules():
        if isinstance(module, LongRoPE2RotaryMixin):
            module.longrope2_shard = shard
            found = True
    if not found:
        raise ValueError(
            "set_sequence_shard: the model has no longrope2 rotary module (call hf_longrope2.extend first)"
        )
