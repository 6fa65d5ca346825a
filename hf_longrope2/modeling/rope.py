"""The ``longrope2`` rope type: parameters, validation and registration into transformers.

This module is shipped next to saved models (``trust_remote_code``), so it imports only torch and
transformers, absolutely, and nothing from the rest of the package except by relative import.

Keys of ``config.rope_parameters`` for ``rope_type: "longrope2"``:

- ``rope_theta``: RoPE base.
- ``original_max_position_embeddings`` (required): the pre-training window ``L_orig``.
- ``long_factor`` (required): one factor >= 1 per rotary pair (``rotary_dim // 2``), used for tokens
  whose document is longer than ``L_orig``.
- ``short_factor``: same length, default all 1.0 (the original RoPE) for tokens in documents of at most
  ``L_orig`` tokens.
- ``long_mscale``: cos/sin scale for the long window, default ``sqrt(1 + ln(s) / ln(L_orig))`` with
  ``s = factor`` (or ``max_position_embeddings / L_orig`` when ``factor`` is absent).
- ``short_mscale``: default 1.0, so the short window is exactly the original model.
- ``factor``: the extension ratio ``s``; ``critical_dim``: informational (the searched ``d_rcd``).
- ``partial_rotary_factor``: honoured as everywhere in transformers.

Non-monotone long factors only warn: published LongRoPE (v1) factors are not monotone and still work;
the LongRoPE2 search itself only produces tails that are non-decreasing from the critical dimension.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from transformers import modeling_rope_utils

ROPE_TYPE = "longrope2"
_IMPL_MARK = "_hf_longrope2_impl"
_REQUIRED_KEYS = {"rope_type", "original_max_position_embeddings", "long_factor"}
_OPTIONAL_KEYS = {
    "rope_theta",
    "short_factor",
    "long_mscale",
    "short_mscale",
    "factor",
    "critical_dim",
    "partial_rotary_factor",
}


def _field(config: Any, key: str, default: Any = None) -> Any:
    """`key` of a config object or of a ``config.json`` dict, so one reader serves both."""
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def text_config(config: Any) -> Any:
    """The part of `config` that holds the rope (``text_config`` of a multimodal config, else `config` itself)."""
    if isinstance(config, dict):
        nested = config.get("text_config")
        has_rope = any(isinstance(config.get(k), dict) for k in ("rope_parameters", "rope_scaling"))
        return nested if isinstance(nested, dict) and not has_rope else config
    get_text_config = getattr(config, "get_text_config", None)
    return get_text_config() if callable(get_text_config) else config


def rope_parameter_dicts(config: Any) -> dict[str, dict]:
    """Every rope dict of `config` by where it sits (``rope_parameters``, ``rope_parameters.full_attention``, ...).

    A config object holds them in ``rope_parameters``; a ``config.json`` dict may use the older ``rope_scaling``.
    """
    config = text_config(config)
    found: dict[str, dict] = {}
    for key in ("rope_parameters", "rope_scaling") if isinstance(config, dict) else ("rope_parameters",):
        value = _field(config, key)
        if not isinstance(value, dict):
            continue
        if any(isinstance(v, dict) for v in value.values()):
            found.update({f"{key}.{name}": v for name, v in value.items() if isinstance(v, dict)})
        else:
            found[key] = value
    return found


def rope_parameters(config: Any, layer_type: str | None = None) -> dict:
    """The rope dict of `config` (object or ``config.json`` dict), or of one layer type when nested per layer type.

    Without `layer_type`, a config nested per layer type (gemma3) gives its ``full_attention`` dict, else the first
    ``longrope2`` / ``longrope`` one: the layers that a context extension changes.
    """
    dicts = rope_parameter_dicts(config)
    for key in ("rope_parameters", "rope_scaling"):
        if key in dicts and dicts[key]:
            return dicts[key]
    if layer_type is not None:
        return next((v for where, v in dicts.items() if where.endswith(f".{layer_type}")), {})
    full = next((v for where, v in dicts.items() if where.endswith(".full_attention")), None)
    if full is not None:
        return full
    return next((v for v in dicts.values() if v.get("rope_type") in (ROPE_TYPE, "longrope")), {})


def rotary_dim_of(config: Any, rope_parameters: dict) -> int:
    """Rotary dimension: ``head_dim * partial_rotary_factor`` (head_dim derived when the config lacks it)."""
    head_dim = _field(config, "head_dim") or _field(config, "hidden_size") // _field(config, "num_attention_heads")
    return int(head_dim * rope_parameters.get("partial_rotary_factor", 1.0))


def default_long_mscale(scale: float, original_max_position_embeddings: int) -> float:
    """LongRoPE ("su") attention scale ``sqrt(1 + ln(s) / ln(L_orig))`` (1.0 for ``s <= 1``): 1.1435 for 8k -> 128k.

    The default ``long_mscale`` of the ``longrope2`` rope type (the one definition of the formula).
    """
    if scale <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(scale) / math.log(original_max_position_embeddings))


@dataclass(frozen=True)
class RopeGeometry:
    """What factor math needs of any RoPE model (default, longrope2, longrope), read one way from its config."""

    rope_type: str
    rotary_dim: int
    rope_theta: float
    original_window: int
    max_position_embeddings: int

    @classmethod
    def from_config(cls, config: Any, layer_type: str | None = None) -> RopeGeometry:
        """Read a config object or ``config.json`` dict; ``original_window`` is the pre-training window.

        That is ``original_max_position_embeddings`` of an extended model, ``max_position_embeddings`` otherwise.
        """
        params = rope_parameters(config, layer_type)
        text = text_config(config)
        max_positions = int(_field(text, "max_position_embeddings"))
        theta = params.get("rope_theta", _field(text, "rope_theta"))
        if theta is None:
            raise ValueError(f"model_type {_field(text, 'model_type')!r} has no rope_theta: not a RoPE model")
        return cls(
            rope_type=str(params.get("rope_type", "default")),
            rotary_dim=rotary_dim_of(text, params),
            rope_theta=float(theta),
            original_window=int(params.get("original_max_position_embeddings") or max_positions),
            max_position_embeddings=max_positions,
        )


@dataclass(frozen=True)
class LongRoPE2Parameters:
    """Resolved ``longrope2`` parameters of one config (or one layer type of it), defaults filled in."""

    rope_theta: float
    rotary_dim: int
    original_max_position_embeddings: int
    max_position_embeddings: int
    factor: float
    long_factor: tuple[float, ...]
    short_factor: tuple[float, ...]
    long_mscale: float
    short_mscale: float
    critical_dim: int | None

    @classmethod
    def from_config(cls, config: Any, layer_type: str | None = None) -> LongRoPE2Parameters:
        """Read and default the ``longrope2`` parameters of a config object or ``config.json`` dict.

        Assumes they passed validation; a dict that is not ``longrope2`` raises ``KeyError`` on a missing key.
        """
        params = rope_parameters(config, layer_type)
        geometry = RopeGeometry.from_config(config, layer_type)
        dim, original = geometry.rotary_dim, int(params["original_max_position_embeddings"])
        factor = float(params.get("factor") or geometry.max_position_embeddings / original)
        long_mscale, short_mscale = params.get("long_mscale"), params.get("short_mscale")
        return cls(
            rope_theta=geometry.rope_theta,
            rotary_dim=dim,
            original_max_position_embeddings=original,
            max_position_embeddings=geometry.max_position_embeddings,
            factor=factor,
            long_factor=tuple(float(x) for x in params["long_factor"]),
            short_factor=tuple(float(x) for x in (params.get("short_factor") or [1.0] * (dim // 2))),
            long_mscale=default_long_mscale(factor, original) if long_mscale is None else float(long_mscale),
            short_mscale=1.0 if short_mscale is None else float(short_mscale),
            critical_dim=params.get("critical_dim"),
        )


def scaled_inv_freq(
    rope_theta: float, rotary_dim: int, factors: tuple[float, ...] | list[float], device: Any = None
) -> torch.Tensor:
    """``1 / (lambda_i * theta ** (2i / d))`` computed exactly as transformers' ``longrope`` does it.

    With all factors 1.0 this is bit-identical to every supported model's default inverse frequencies.
    """
    ext = torch.tensor(list(factors), dtype=torch.float32, device=device)
    shape = torch.arange(0, rotary_dim, 2, dtype=torch.int64, device=device).float() / rotary_dim
    return 1.0 / (ext * rope_theta**shape)


def compute_longrope2_parameters(
    config: Any, device: Any = None, seq_len: int | None = None, layer_type: str | None = None
) -> tuple[torch.Tensor, float]:
    """``ROPE_INIT_FUNCTIONS["longrope2"]``: the *short-window* inverse frequencies and ``short_mscale``.

    The rotary buffer of a ``longrope2`` model therefore always holds the original RoPE (or the given
    short factors); the long-window table is derived from the config inside the rotary forward (see
    ``rotary.py``), so no extra buffer can be left uninitialised by ``from_pretrained``'s meta-device
    loading. `seq_len` is accepted for signature compatibility and ignored: the window is chosen per
    document, never per batch.
    """
    p = LongRoPE2Parameters.from_config(config, layer_type)
    return scaled_inv_freq(p.rope_theta, p.rotary_dim, p.short_factor, device), p.short_mscale


def _finite_at_least_one(values: list, name: str, expected: int, where: str) -> None:
    if not isinstance(values, (list, tuple)) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in values
    ):
        raise ValueError(f"rope_parameters['{name}'] must be a list of numbers, got {values!r}")
    if len(values) != expected:
        raise ValueError(
            f"rope_parameters['{name}'] must have one factor per rotary pair: {expected} values ({where}), "
            f"got {len(values)}"
        )
    bad = [(i, x) for i, x in enumerate(values) if not (math.isfinite(x) and x >= 1.0)]
    if bad:
        shown = ", ".join(f"[{i}]={x!r}" for i, x in bad[:5])
        raise ValueError(
            f"rope_parameters['{name}'] factors must be finite and >= 1 (1.0 keeps a pair's original "
            f"frequency), got {shown}{' ...' if len(bad) > 5 else ''}"
        )


def _positive_finite(value: Any, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"rope_parameters['{name}'] must be a finite number > 0, got {value!r}")


def validate_longrope2_rope_parameters(self: Any, rope_parameters: dict, ignore_keys: set | None = None) -> None:
    """Validator transformers calls as ``config._validate_longrope2_rope_parameters`` (at creation and save).

    Raises:
        ValueError: missing or invalid original window, original window >= ``max_position_embeddings``,
            wrong factor count, factors below 1 or not finite, non-positive scales, bad ``critical_dim``.

    Warns:
        UserWarning: long factors that decrease somewhere (allowed, see the module docstring), unknown keys.
    """
    original = rope_parameters.get("original_max_position_embeddings")
    if original is None:
        raise ValueError(
            "rope_parameters['original_max_position_embeddings'] is required for rope_type 'longrope2': "
            "set it to the model's pre-training window (e.g. 8192 for Llama-3-8B)"
        )
    if isinstance(original, bool) or not isinstance(original, int) or original < 1:
        raise ValueError(
            f"rope_parameters['original_max_position_embeddings'] must be a positive integer, got {original!r}"
        )
    max_positions = getattr(self, "max_position_embeddings", None)
    if max_positions is not None and original >= max_positions:
        raise ValueError(
            f"rope_parameters['original_max_position_embeddings'] ({original}) must be smaller than "
            f"max_position_embeddings ({max_positions}): longrope2 extends a window, set max_position_embeddings "
            "to the target length"
        )
    if "long_factor" not in rope_parameters:
        raise ValueError("rope_parameters['long_factor'] is required for rope_type 'longrope2'")
    dim = rotary_dim_of(self, rope_parameters)
    where = f"rotary_dim / 2 = {dim} / 2 with partial_rotary_factor={rope_parameters.get('partial_rotary_factor', 1.0)}"
    _finite_at_least_one(rope_parameters["long_factor"], "long_factor", dim // 2, where)
    if rope_parameters.get("short_factor") is not None:
        _finite_at_least_one(rope_parameters["short_factor"], "short_factor", dim // 2, where)
    _positive_finite(rope_parameters.get("long_mscale"), "long_mscale")
    _positive_finite(rope_parameters.get("short_mscale"), "short_mscale")
    factor = rope_parameters.get("factor")
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1):
        raise ValueError(f"rope_parameters['factor'] must be a number >= 1 (target / original window), got {factor!r}")
    critical = rope_parameters.get("critical_dim")
    if critical is not None and (
        isinstance(critical, bool) or not isinstance(critical, int) or not 0 <= critical <= dim // 2
    ):
        raise ValueError(
            f"rope_parameters['critical_dim'] must be an integer in [0, {dim // 2}] or null, got {critical!r}"
        )
    long_factor = rope_parameters["long_factor"]
    drops = [i for i in range(len(long_factor) - 1) if long_factor[i + 1] < long_factor[i]]
    if drops:
        i = drops[0]
        warnings.warn(
            f"rope_parameters['long_factor'] is not monotone non-decreasing: [{i}]={long_factor[i]} > "
            f"[{i + 1}]={long_factor[i + 1]} ({len(drops)} decrease(s)). Allowed (LongRoPE v1 factors look like "
            "this), but a LongRoPE2 search only produces non-decreasing tails.",
            UserWarning,
            stacklevel=2,
        )
    unknown = set(rope_parameters) - _REQUIRED_KEYS - _OPTIONAL_KEYS - set(ignore_keys or ())
    if unknown:
        warnings.warn(
            f"Unrecognized keys in rope_parameters for rope_type 'longrope2': {sorted(unknown)}",
            UserWarning,
            stacklevel=2,
        )


def _install(owner_name: str, current: Any, fn: Any) -> bool:
    """True when `fn` should be installed; raise on a foreign function under the same name."""
    if current is None:
        return True
    if getattr(current, _IMPL_MARK, False):
        return False  # this library's implementation (possibly another copy, e.g. shipped remote code)
    raise RuntimeError(
        f"{owner_name} already holds a different implementation for rope type '{ROPE_TYPE}' "
        f"({getattr(current, '__module__', '?')}.{getattr(current, '__qualname__', current)!s}); "
        "hf_longrope2 refuses to replace it. Remove the other registration before importing hf_longrope2."
    )


setattr(compute_longrope2_parameters, _IMPL_MARK, True)
setattr(validate_longrope2_rope_parameters, _IMPL_MARK, True)


def register_rope_type() -> None:
    """Register ``longrope2`` in ``ROPE_INIT_FUNCTIONS`` and its validator on every transformers config.

    Idempotent; fails loudly (``RuntimeError``) when another function already uses the name.
    """
    table = modeling_rope_utils.ROPE_INIT_FUNCTIONS
    if _install(
        "transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS", table.get(ROPE_TYPE), compute_longrope2_parameters
    ):
        table[ROPE_TYPE] = compute_longrope2_parameters
    mixin = modeling_rope_utils.RotaryEmbeddingConfigMixin
    name = f"_validate_{ROPE_TYPE}_rope_parameters"
    if _install(f"RotaryEmbeddingConfigMixin.{name}", mixin.__dict__.get(name), validate_longrope2_rope_parameters):
        setattr(mixin, name, validate_longrope2_rope_parameters)


register_rope_type()
