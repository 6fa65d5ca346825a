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


@pytest.mark.parametrize(
    "method,scale,expected", [("pi", 8, 1.0), ("ntk", 8, 1.0), ("yarn", 8, 1.2079), ("longrope2", 8, 1.1726)]
)
def test_each_method_has_its_own_attention_factor(method, scale, expected):
    assert factors.attention_factor(method, scale, 256) == pytest.approx(expected, abs=1e-4)
    if method != "longrope2":
        assert factors.baseline(method, 32, 1e4, 256, 256 * scale)["long_mscale"] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="method must be one of"):
        factors.attention_factor("su", scale, 256)


# transformers' own rope type for each baseline, configured so that it covers the long input exactly:
# `dynamic` with factor 1 at seq_len = s * L is the static NTK scaling by s (see _inv_freq above).
_REFERENCE_ROPE = {
    "pi": lambda s, original: ({"rope_type": "linear", "factor": s}, original * s),
    "ntk": lambda s, original: ({"rope_type": "dynamic", "factor": 1.0}, original),
    "yarn": lambda s, original: (
        {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": original}, original * s),
}


@pytest.mark.parametrize("method", list(_REFERENCE_ROPE))
@pytest.mark.parametrize("model_type", ["llama", "qwen3"])
def test_baseline_logits_equal_transformers_own_rope_type(method, model_type):
    """`extend(**factors.baseline(m, ...))` on a long input gives the logits of transformers' linear / dynamic / yarn
    model with the same weights: factors *and* attention factor (a wrong attention factor moves them by > 1e-2)."""
    import hf_longrope2
    from hf_longrope2.modeling.modeling_longrope2 import architecture_for
    from hf_longrope2.tiny.models import ORIGINAL, TARGET, VOCAB, rotary_dim, tiny_config, tiny_model

    scale = TARGET / ORIGINAL
    ext = tiny_model(model_type)
    theta = ext.config.rope_parameters["rope_theta"]
    spec = factors.baseline(method, rotary_dim(ext), theta, ORIGINAL, TARGET)
    hf_longrope2.extend(ext, **spec, max_position_embeddings=TARGET)
    params, max_positions = _REFERENCE_ROPE[method](scale, ORIGINAL)
    config = tiny_config(model_type)
    config.rope_parameters = {**params, "rope_theta": theta}
    config.max_position_embeddings = int(max_positions)
    ref = architecture_for(model_type).base_model_class(config).eval()
    ref.load_state_dict(tiny_model(model_type).state_dict())
    ids = torch.randint(3, VOCAB, (2, TARGET), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, want = ext(ids).logits, ref(ids).logits
    torch.testing.assert_close(ours, want, rtol=0, atol=1e-4)
    # negative control: with LongRoPE's attention factor (what extend defaults to) it is a different model
    wrong = tiny_model(model_type)
    hf_longrope2.extend(wrong, spec["long_factor"], max_position_embeddings=TARGET)
    with torch.no_grad():
        assert (wrong(ids).logits - want).abs().max() > 1e-2
