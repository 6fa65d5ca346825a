"""[`extend`]: make a loaded causal LM a longrope2 model in place (config, class and rotary module)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from types import SimpleNamespace

from transformers import PreTrainedModel

from ..modeling.modeling_longrope2 import architecture_for
from ..modeling.rope import ROPE_TYPE, default_long_mscale, rope_parameters, validate_longrope2_rope_parameters
from ..modeling.rotary import use_longrope2_rotary

logger = logging.getLogger(__name__)


def extend(
    model: PreTrainedModel,
    long_factor: Sequence[float],
    *,
    original_max_position_embeddings: int | None = None,
    max_position_embeddings: int | None = None,
    long_mscale: float | None = None,
    short_mscale: float = 1.0,
    critical_dim: int | None = None,
    short_factor: Sequence[float] | None = None,
) -> PreTrainedModel:
    """Make `model` a longrope2 model in place (config, class and rotary module) and return it.

    Args:
        model (`PreTrainedModel`): A causal LM of a supported architecture (see
            `hf_longrope2.SUPPORTED_MODEL_TYPES`) with the default RoPE, or an already extended model (its
            factors are replaced, its original window kept).
        long_factor (`Sequence[float]`): One factor >= 1 per rotary pair, e.g. from [`hf_longrope2.factors`].
        original_max_position_embeddings (`int`, *optional*): Pre-training window. Defaults to the model's
            current window (``max_position_embeddings``, or the stored original window of an extended model).
        max_position_embeddings (`int`, *optional*): Target window. Defaults to
            ``round(original * max(long_factor))``, which is the target for PI, NTK and YaRN vectors; pass it
            explicitly for searched LongRoPE2 factors, whose tail may exceed the scale.
        long_mscale (`float`, *optional*): Long-window cos/sin scale; default ``sqrt(1 + ln(s) / ln(L_orig))``.
        short_mscale (`float`, defaults to 1.0): Short-window scale (1.0 keeps the original model exactly).
        critical_dim (`int`, *optional*): The (searched) critical dimension, stored for information.
        short_factor (`Sequence[float]`, *optional*): Short-window factors; default all 1.0.

    Returns:
        The same `model` object, now an instance of the matching ``LongRoPE2XxxForCausalLM``.

    Raises:
        ValueError: unsupported architecture, a model that is not a causal LM, a base rope type other than
            ``default``, or invalid parameters (checked before anything is modified).
    """
    config = model.config
    arch = architecture_for(config.model_type)
    if not isinstance(model, arch.base_model_class):
        raise ValueError(
            f"extend() expects a {arch.base_model_class.__name__} (a causal LM), got {type(model).__name__}"
        )
    current = dict(rope_parameters(config))
    current_type = current.get("rope_type", "default")
    if current_type not in ("default", ROPE_TYPE):
        raise ValueError(
            f"extend() needs a model with the original RoPE (rope_type 'default') or a longrope2 model; this "
            f"model uses rope_type {current_type!r}. Load it with rope_parameters={{'rope_type': 'default', ...}}."
        )
    if original_max_position_embeddings is None:
        original_max_position_embeddings = (
            current["original_max_position_embeddings"] if current_type == ROPE_TYPE else config.max_position_embeddings
        )
    long_factor = [float(x) for x in long_factor]
    if max_position_embeddings is None:
        if current_type == ROPE_TYPE and config.max_position_embeddings > original_max_position_embeddings:
            max_position_embeddings = config.max_position_embeddings
        else:
            largest = max(long_factor) if long_factor else 1.0
            max_position_embeddings = round(original_max_position_embeddings * largest) if math.isfinite(largest) else 0
            logger.info("extend(): max_position_embeddings defaults to %d", max_position_embeddings)
    scale = max_position_embeddings / original_max_position_embeddings
    params = {
        "rope_type": ROPE_TYPE,
        "rope_theta": current["rope_theta"],
        "original_max_position_embeddings": original_max_position_embeddings,
        "factor": scale,
        "long_factor": long_factor,
        "long_mscale": default_long_mscale(scale, original_max_position_embeddings)
        if long_mscale is None
        else long_mscale,
        "short_mscale": short_mscale,
    }
    if "partial_rotary_factor" in current:
        params["partial_rotary_factor"] = current["partial_rotary_factor"]
    if short_factor is not None:
        params["short_factor"] = [float(x) for x in short_factor]
    if critical_dim is not None:
        params["critical_dim"] = critical_dim
    # Validate against the would-be config before touching the model: nothing changes on error.
    probe = SimpleNamespace(
        max_position_embeddings=max_position_embeddings,
        head_dim=getattr(config, "head_dim", None),
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
    )
    if original_max_position_embeddings >= max_position_embeddings:
        raise ValueError(
            f"max_position_embeddings ({max_position_embeddings}) must be larger than the original window "
            f"({original_max_position_embeddings}); pass max_position_embeddings=<target length>"
        )
    validate_longrope2_rope_parameters(probe, params)

    config.max_position_embeddings = max_position_embeddings
    if hasattr(config, "original_max_position_embeddings"):  # phi3 keeps it at the top level too
        config.original_max_position_embeddings = original_max_position_embeddings
    if arch.nested_rope_key is None:
        config.rope_parameters = params
    else:
        config.rope_parameters = {**config.rope_parameters, arch.nested_rope_key: params}
    config.__class__ = arch.config_class
    model.__class__ = arch.model_class
    use_longrope2_rotary(model, arch.rotary_class)
    return model
