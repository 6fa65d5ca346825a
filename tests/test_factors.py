"""Factor math against the paper's numbers and transformers' own linear / dynamic / yarn frequencies."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from hf_longrope2 import factors


@pytest.mark.parametrize(
    "head_dim,theta,window,tcd,d10",
    [(128, 5e5, 8192, 35, 24), (96, 1e4, 2048, 31, 19), (64, 1e5, 8192, 20, None)],
)
def test_critical_dimensions_match_paper(head_dim, theta, window, tcd, d10):
    assert factors.critical_dimension(head_dim, theta, window) == tcd
    if d10 is not None:
        assert factors.ten_period_dimension(head_dim, theta, window) == d10


def _inv_freq(rope_type: str, head_dim: int, theta: float, original: int, scale: float, **extra) -> torch.Tensor:
    seq_len = None
    if rope_type == "dynamic":
        # dynamic NTK uses base * (factor * seq_len / max_pos - (factor - 1)) ** (d / (d - 2)): with factor 1 at
        # seq_len = s * L it is the static NTK-aware scaling by s.
        max_positions, seq_len, scale = original, int(original * scale), 1.0
    else:
        max_positions = int(original * scale)
    params = {"rope_type": rope_type, "rope_theta": theta, "factor": scale, **extra}
    config = LlamaConfig(
        hidden_size=head_dim * 4,
        num_attention_heads=4,
        head_dim=head_dim,
        max_position_embeddings=max_positions,
        rope_parameters=params,
    )
    return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len)[0]


def _base(head_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


@pytest.mark.parametrize(
    "head_dim,theta,original,scale", [(64, 1e5, 8192, 4.0), (128, 5e5, 8192, 16.0), (16, 1e4, 32, 4.0)]
)
def test_pi_equals_transformers_linear(head_dim, theta, original, scale):
    ours = _base(head_dim, theta) / torch.tensor(factors.pi(head_dim, scale), dtype=torch.float64)
    torch.testing.assert_close(ours.float(), _inv_freq("linear", head_dim, theta, original, scale), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "head_dim,theta,original,scale", [(64, 1e5, 8192, 4.0), (128, 5e5, 8192, 16.0), (16, 1e4, 32, 4.0)]
)
def test_ntk_equals_transformers_dynamic_ntk(head_dim, theta, original, scale):
    ours = _base(head_dim, theta) / torch.tensor(factors.ntk(head_dim, scale), dtype=torch.float64)
    torch.testing.assert_close(ours.float(), _inv_freq("dynamic", head_dim, theta, original, scale), rtol=1e-5, atol=0)
    assert factors.ntk(head_dim, scale)[0] == 1.0 and factors.ntk(head_dim, scale)[-1] == pytest.approx(scale)


@pytest.mark.parametrize(
    "head_dim,theta,original,scale", [(64, 1e5, 8192, 4.0), (128, 5e5, 8192, 16.0), (16, 1e4, 32, 4.0)]
)
def test_yarn_equals_transformers_yarn(head_dim, theta, original, scale):
    ours = _base(head_dim, theta) / torch.tensor(factors.yarn(head_dim, theta, scale, original), dtype=torch.float64)
    want = _inv_freq("yarn", head_dim, theta, original, scale, original_max_position_embeddings=original)
    torch.testing.assert_close(ours.float(), want, rtol=1e-5, atol=0)


def test_longrope2_shape():
    vec = factors.longrope2(64, 20, [4.0 + 0.1 * i for i in range(12)])
    assert len(vec) == 32 and vec[0] == 1.0 and vec[20] == 4.0
    assert vec[19] == pytest.approx(4.0 ** (19 / 20))  # NTK-left, continuous at d_rcd
    assert factors.is_monotone(vec)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: factors.pi(63, 2.0), "rotary_dim must be an even integer"),
        (lambda: factors.ntk(64, 0.5), "scale must be a finite number >= 1"),
        (lambda: factors.ntk(64, math.inf), "scale must be a finite number >= 1"),
        (lambda: factors.longrope2(64, 32, []), r"critical_dim must be an integer in \[0, 32\)"),
        (lambda: factors.longrope2(64, 20, [4.0] * 11), "tail must have .* = 12 values, got 11"),
        (lambda: factors.longrope2(64, 20, [0.5] * 12), "tail factors must be finite and >= 1"),
    ],
)
def test_factor_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_longrope_mscale_paper_value():
    assert factors.longrope_mscale(16, 8192) == pytest.approx(1.1435, abs=1e-4)  # 8k -> 128k
    assert factors.longrope_mscale(1, 8192) == 1.0
