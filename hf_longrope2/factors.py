"""Rescale-factor math for RoPE context extension: critical dimensions and factor vectors.

Every vector here has one entry per rotary pair (``rotary_dim // 2``); entry ``i`` is the factor
``lambda_i`` that divides the pair's frequency ``theta_i = rope_theta ** (-2 i / rotary_dim)``.
These are the baselines every later comparison uses (PI, NTK, YaRN) plus the LongRoPE2 shape.

Example:

```python
>>> from hf_longrope2 import factors
>>> factors.critical_dimension(128, 500_000.0, 8192)   # LLaMA3-8B
35
>>> f = factors.yarn(64, 100_000.0, scale=4.0, original_max_position_embeddings=8192)
>>> len(f), f[0], f[-1]
(32, 1.0, 4.0)
```

Sources: LongRoPE2 (arXiv 2502.20082) sections 1-2 for the critical dimension and factor shape;
PI (arXiv 2306.15595), NTK-aware scaling (bloc97, 2023) and YaRN (arXiv 2309.00071) as implemented
in ``transformers.modeling_rope_utils`` (linear / dynamic / yarn), which the tests compare against.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .modeling.rope import RopeGeometry
from .modeling.rope import default_long_mscale as longrope_mscale
from .utils.arguments import check_choices, check_token_count
from .utils.loading import check_factor_values, model_source, read_json

__all__ = [
    "critical_dimension",
    "period_dimension",
    "ten_period_dimension",
    "pi",
    "ntk",
    "yarn",
    "yarn_attention_factor",
    "longrope2",
    "longrope_mscale",
    "METHODS",
    "attention_factor",
    "baseline_factors",
    "baseline",
    "is_monotone",
    "read_factors_file",
]

#: The classic baselines, each with its own factor vector and attention factor ([`baseline`]).
METHODS = ("pi", "ntk", "yarn")


def _check_dims(rotary_dim: int) -> int:
    if not isinstance(rotary_dim, int) or rotary_dim < 2 or rotary_dim % 2:
        raise ValueError(f"rotary_dim must be an even integer >= 2, got {rotary_dim!r}")
    return rotary_dim // 2


def _check_scale(scale: float) -> float:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 1.0):
        raise ValueError(f"scale must be a finite number >= 1 (target length / original window), got {scale!r}")
    return float(scale)


def period_dimension(rotary_dim: int, rope_theta: float, original_max_position_embeddings: int, periods: float) -> int:
    """First rotary pair whose period does not fit `periods` times inside the original window.

    Pair ``i`` has period ``T_i = 2 pi rope_theta ** (2 i / d)``; it completes ``periods`` full turns inside
    ``L`` when ``periods * T_i <= L``. The returned index is ``ceil((d / 2) * log_base(L / (2 pi periods)))``,
    clamped to ``[0, d / 2]``.
    """
    half = _check_dims(rotary_dim)
    if rope_theta <= 1:
        raise ValueError(f"rope_theta must be > 1, got {rope_theta!r}")
    if original_max_position_embeddings < 1:
        raise ValueError(f"original_max_position_embeddings must be >= 1, got {original_max_position_embeddings!r}")
    ratio = original_max_position_embeddings / (2 * math.pi * periods)
    if ratio <= 1:
        return 0
    value = half * math.log(ratio) / math.log(rope_theta)
    return min(half, max(0, math.ceil(value)))


def critical_dimension(head_dim: int, rope_theta: float, original_max_position_embeddings: int) -> int:
    """Theoretical critical dimension ``d_tcd`` (pair index, the LongRoPE2 paper's convention).

    ``d_tcd = ceil((d / 2) * log_base(L_train / (2 pi)))``: pairs ``i >= d_tcd`` never see a full period
    during pre-training and go out of distribution beyond it. The official LongRoPE2 search code uses
    ``ceil(x) - 1``; this library uses the paper's ``ceil``.

    Args:
        head_dim (`int`): The rotary dimension ``d`` (``head_dim * partial_rotary_factor``).
        rope_theta (`float`): RoPE base.
        original_max_position_embeddings (`int`): Pre-training window ``L_train``.

    Returns:
        `int`: LLaMA3-8B (128, 5e5, 8192) -> 35; Phi3-mini as in the paper (96, 1e4, 2048) -> 31.
    """
    return period_dimension(head_dim, rope_theta, original_max_position_embeddings, periods=1.0)


def ten_period_dimension(head_dim: int, rope_theta: float, original_max_position_embeddings: int) -> int:
    """Lower bound ``d10_tcd`` of the real-critical-dimension search: the pair completing 10 periods in ``L_train``.

    LLaMA3-8B -> 24, Phi3-mini (96, 1e4, 2048) -> 19 (LongRoPE2 paper, section 3).
    """
    return period_dimension(head_dim, rope_theta, original_max_position_embeddings, periods=10.0)


def pi(rotary_dim: int, scale: float) -> list[float]:
    """Position interpolation: every pair divided by ``scale``."""
    half = _check_dims(rotary_dim)
    return [_check_scale(scale)] * half


def ntk(rotary_dim: int, scale: float) -> list[float]:
    """NTK-aware scaling: base ``b' = b * s ** (d / (d - 2))``, i.e. ``lambda_i = s ** (2 i / (d - 2))``.

    Equals transformers' ``dynamic`` rope at ``seq_len = max_position_embeddings = original window`` with
    ``factor = scale``. Pair 0 keeps its frequency; the last pair gets exactly ``scale``.
    """
    half = _check_dims(rotary_dim)
    scale = _check_scale(scale)
    if half == 1:
        return [scale]
    return [scale ** (2 * i / (rotary_dim - 2)) for i in range(half)]


def yarn(
    rotary_dim: int,
    rope_theta: float,
    scale: float,
    original_max_position_embeddings: int,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    truncate: bool = True,
) -> list[float]:
    """YaRN "NTK-by-parts" factors: extrapolate fast pairs, interpolate slow pairs, ramp between.

    Pairs that rotate more than ``beta_fast`` times inside the original window keep their frequency,
    pairs that rotate fewer than ``beta_slow`` times are divided by ``scale``, and the pairs between
    blend the two *inverse frequencies* linearly, exactly as transformers' ``yarn`` rope type does.
    Use [`yarn_attention_factor`] for the matching attention scale.
    """
    half = _check_dims(rotary_dim)
    scale = _check_scale(scale)

    def correction_dim(rotations: float) -> float:
        return (rotary_dim * math.log(original_max_position_embeddings / (rotations * 2 * math.pi))) / (
            2 * math.log(rope_theta)
        )

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rotary_dim - 1)
    if low == high:
        high += 0.001  # same guard as transformers against a zero-width ramp
    out = []
    for i in range(half):
        ramp = min(1.0, max(0.0, (i - low) / (high - low)))  # 0: extrapolate, 1: interpolate
        extrapolation = 1.0 - ramp
        out.append(1.0 / ((1.0 - extrapolation) / scale + extrapolation))
    return out


def yarn_attention_factor(scale: float) -> float:
    """YaRN's attention temperature ``0.1 ln(s) + 1`` (1.0 for ``s <= 1``)."""
    return 1.0 if scale <= 1 else 0.1 * math.log(scale) + 1.0


def attention_factor(method: str, scale: float, original_max_position_embeddings: int) -> float:
    """The cos/sin scale that belongs to `method` in the long window (``long_mscale`` of the extended model).

    - ``pi`` and ``ntk``: 1.0 (neither rescales attention; transformers' ``linear`` and ``dynamic`` use 1.0);
    - ``yarn``: ``0.1 ln(s) + 1`` (transformers' ``yarn`` default ``attention_factor``), 1.2079 at s = 8;
    - ``longrope2`` (and LongRoPE): ``sqrt(1 + ln(s) / ln(L_orig))``, 1.1726 at s = 8, L_orig = 256.
    """
    if method in ("pi", "ntk"):
        return 1.0
    if method == "yarn":
        return yarn_attention_factor(scale)
    if method == "longrope2":
        return longrope_mscale(scale, original_max_position_embeddings)
    raise ValueError(f"method must be one of {(*METHODS, 'longrope2')}, got {method!r}")


def baseline_factors(method: str, rotary_dim: int, rope_theta: float, original: int, target: int) -> list[float]:
    """The PI / NTK / YaRN factor vector for extending `original` to `target` tokens."""
    scale = target / original
    if method == "pi":
        return pi(rotary_dim, scale)
    if method == "ntk":
        return ntk(rotary_dim, scale)
    if method == "yarn":
        return yarn(rotary_dim, rope_theta, scale, original)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def baseline(method: str, rotary_dim: int, rope_theta: float, original: int, target: int) -> dict[str, list[float] | float]:
    """A baseline as the method defines it: ``{"long_factor": [...], "long_mscale": attention factor}``.

    The keys are [`~hf_longrope2.extend`]'s arguments::

        extend(model, **factors.baseline("yarn", 64, 1e5, 8192, 32768), max_position_embeddings=32768)
    """
    return {
        "long_factor": baseline_factors(method, rotary_dim, rope_theta, original, target),
        "long_mscale": attention_factor(method, target / original, original),
    }


def longrope2(rotary_dim: int, critical_dim: int, tail: Sequence[float]) -> list[float]:
    """LongRoPE2 factor vector: NTK-style left part below ``critical_dim`` plus the given tail.

    Pairs ``i >= critical_dim`` take ``tail[i - critical_dim]``; pairs below are
    ``lambda_i = tail[0] ** (i / critical_dim)``, continuous at ``critical_dim`` with ``lambda_0 = 1``.

    Args:
        rotary_dim (`int`): Rotary dimension ``d``.
        critical_dim (`int`): Real critical dimension ``d_rcd`` in ``[0, d / 2)``.
        tail (`Sequence[float]`): ``d / 2 - critical_dim`` factors, each >= 1 (monotone non-decreasing in the
            search; not enforced here so ablations can build other shapes).
    """
    half = _check_dims(rotary_dim)
    if not isinstance(critical_dim, int) or not 0 <= critical_dim < half:
        raise ValueError(f"critical_dim must be an integer in [0, {half}), got {critical_dim!r}")
    tail = [float(x) for x in tail]
    if len(tail) != half - critical_dim:
        raise ValueError(
            f"tail must have rotary_dim/2 - critical_dim = {half} - {critical_dim} = {half - critical_dim} "
            f"values, got {len(tail)}"
        )
    bad = [x for x in tail if not (math.isfinite(x) and x >= 1.0)]
    if bad:
        raise ValueError(f"tail factors must be finite and >= 1, got {bad[:5]}")
    left = [tail[0] ** (i / critical_dim) for i in range(critical_dim)]
    return left + tail


def is_monotone(values: Sequence[float], start: int = 0) -> bool:
    """True when ``values[start:]`` is non-decreasing."""
    return all(a <= b for a, b in zip(values[start:], values[start + 1 :], strict=False))


#: The keys of a factors file that [`~hf_longrope2.extend`] takes.
FACTORS_FILE_KEYS = ("long_factor", "critical_dim", "long_mscale")


def read_factors_file(path: str | Path, what: str = "--factors-file") -> dict:
    """The factors in a JSON file: a factors file (``hf-longrope2 factors``) or a ``search_log.json`` (its ``best``).

    Returns:
        `dict`: ``long_factor`` and, when the file has them, ``critical_dim`` and ``long_mscale``: keyword
        arguments of [`~hf_longrope2.extend`].

    Raises:
        ValueError: naming `what` and `path`: not JSON, no ``long_factor``, or a non-finite or non-positive value.
    """
    data = read_json(path, what)
    if isinstance(data, dict) and isinstance(data.get("best"), dict):  # a search_log.json
        data = data["best"]
    if not isinstance(data, dict) or "long_factor" not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{what} {path} has no 'long_factor' key (nor best.long_factor; found: {found})")
    check_factor_values(data, f"{what} {path}")
    return {k: data[k] for k in FACTORS_FILE_KEYS if data.get(k) is not None}


@dataclass
class FactorsArguments:
    method: str = field(default="yarn", metadata={"help": "Baseline factor vector", "choices": METHODS})
    target_length: int = field(default=0, metadata={"help": "Target context length in tokens (required)"})
    model: str | None = field(
        default=None, metadata={"help": "Model folder or Hub id to read head_dim, rope_theta and window from"}
    )
    rotary_dim: int | None = field(default=None, metadata={"help": "Rotary dimension (instead of --model)"})
    rope_theta: float | None = field(default=None, metadata={"help": "RoPE base (instead of --model)"})
    original_length: int | None = field(default=None, metadata={"help": "Pre-training window (instead of --model)"})

    def __post_init__(self) -> None:
        check_choices(self)
        check_token_count("--target-length", self.target_length)
        if self.rope_theta is not None and not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
            raise ValueError(f"--rope-theta must be a finite number > 1, got {self.rope_theta}")
        if self.rotary_dim is not None and (self.rotary_dim < 2 or self.rotary_dim % 2):
            raise ValueError(f"--rotary-dim must be an even number >= 2, got {self.rotary_dim}")
        check_token_count("--original-length", self.original_length)


def _rope_geometry(args: FactorsArguments) -> tuple[int, float, int]:
    if args.model is not None:
        from transformers import AutoConfig  # only when a model is named: the factor math needs no transformers

        config = AutoConfig.from_pretrained(model_source(args.model, weights=False))
        geometry = RopeGeometry.from_config(config)
        return geometry.rotary_dim, geometry.rope_theta, geometry.original_window
    missing = [n for n in ("rotary_dim", "rope_theta", "original_length") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"pass --model, or all of --rotary-dim --rope-theta --original-length (missing: {missing})")
    return args.rotary_dim, args.rope_theta, args.original_length


def print_factors(args: FactorsArguments) -> None:
    """``hf-longrope2 factors``: the baseline factor vector and the critical dimensions as JSON."""
    dim, theta, original = _rope_geometry(args)
    if args.target_length <= original:
        raise ValueError(f"--target-length ({args.target_length}) must exceed the original window ({original})")
    out = {
        "method": args.method,
        "rotary_dim": dim,
        "rope_theta": theta,
        "original_max_position_embeddings": original,
        "max_position_embeddings": args.target_length,
        "critical_dim": critical_dimension(dim, theta, original),
        "ten_period_dim": ten_period_dimension(dim, theta, original),
        **baseline(args.method, dim, theta, original, args.target_length),
    }
    print(json.dumps(out, indent=2, allow_nan=False))
