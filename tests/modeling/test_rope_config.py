"""The longrope2 rope type: registration, validation messages, defaults, unsupported architectures."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, RotaryEmbeddingConfigMixin

import hf_longrope2
from hf_longrope2.modeling import rope
from hf_longrope2.modeling.modeling_longrope2 import SUPPORTED_MODEL_TYPES
from hf_longrope2.tiny.models import ORIGINAL, TARGET, VOCAB, extended_pair, tiny_model

# Strict (dataclass) configs re-raise validator errors as their own type, message included.
CONFIG_ERRORS = (ValueError, StrictDataclassClassValidationError)


def _config(**params):
    base = {
        "rope_type": "longrope2",
        "rope_theta": 1e4,
        "original_max_position_embeddings": ORIGINAL,
        "long_factor": [4.0] * 8,
    }
    base.update(params)
    base = {k: v for k, v in base.items() if v is not None}
    return LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=1,
        intermediate_size=32,
        vocab_size=VOCAB,
        max_position_embeddings=TARGET,
        rope_parameters=base,
    )


def test_registration_is_idempotent():
    fn = ROPE_INIT_FUNCTIONS["longrope2"]
    hf_longrope2.register_rope_type()
    hf_longrope2.register_rope_type()
    assert ROPE_INIT_FUNCTIONS["longrope2"] is fn
    assert RotaryEmbeddingConfigMixin._validate_longrope2_rope_parameters is rope.validate_longrope2_rope_parameters


def test_registration_clash_fails_loudly(monkeypatch):
    def other(config, device=None, seq_len=None, layer_type=None):
        return torch.ones(4), 1.0

    monkeypatch.setitem(ROPE_INIT_FUNCTIONS, "longrope2", other)
    with pytest.raises(RuntimeError, match="already holds a different implementation for rope type 'longrope2'"):
        hf_longrope2.register_rope_type()


def test_plain_llama_config_with_longrope2_builds_and_matches_extend():
    config = _config()
    model = LlamaForCausalLM(config)
    assert model.model.rotary_emb.rope_type == "longrope2"
    params = rope.LongRoPE2Parameters.from_config(config)
    assert params.short_factor == (1.0,) * 8 and params.short_mscale == 1.0
    assert params.long_mscale == pytest.approx(
        (1 + torch.log(torch.tensor(4.0)).item() / torch.log(torch.tensor(32.0)).item()) ** 0.5
    )


@pytest.mark.parametrize(
    "params,match",
    [
        ({"original_max_position_embeddings": None}, r"'original_max_position_embeddings'\] is required"),
        ({"original_max_position_embeddings": TARGET}, r"\(128\) must be smaller than max_position_embeddings \(128\)"),
        ({"original_max_position_embeddings": 32.5}, "must be a positive integer, got 32.5"),
        ({"long_factor": [4.0] * 7}, r"one factor per rotary pair: 8 values \(rotary_dim / 2 = 16 / 2"),
        ({"long_factor": [4.0] * 7 + [0.5]}, r"finite and >= 1 .*\[7\]=0.5"),
        ({"long_factor": [4.0] * 7 + [float("nan")]}, r"finite and >= 1 .*\[7\]=nan"),
        ({"short_factor": [1.0] * 4}, r"'short_factor'\] must have one factor per rotary pair: 8 values"),
        ({"long_mscale": -1.0}, r"'long_mscale'\] must be a finite number > 0, got -1.0"),
        ({"factor": 0.5}, r"'factor'\] must be a number >= 1"),
        ({"critical_dim": 9}, r"'critical_dim'\] must be an integer in \[0, 8\]"),
        ({"long_factor": None}, r"'long_factor'\] is required"),
    ],
)
def test_bad_configs_name_the_value(params, match):
    with pytest.raises(CONFIG_ERRORS, match=match):
        _config(**params)


def test_partial_rotary_factor_changes_expected_count():
    with pytest.raises(CONFIG_ERRORS, match=r"4 values .*partial_rotary_factor=0.5"):
        _config(partial_rotary_factor=0.5)
    assert _config(partial_rotary_factor=0.5, long_factor=[4.0] * 4)


def test_non_monotone_long_factor_warns_not_fails():
    with pytest.warns(UserWarning, match=r"not monotone non-decreasing: \[3\]=5.0 > \[4\]=4.0"):
        _config(long_factor=[1.0, 2.0, 3.0, 5.0, 4.0, 6.0, 7.0, 8.0])


def test_unsupported_architecture_lists_supported():
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB))
    with pytest.raises(
        ValueError, match="does not support model_type 'gpt2'; supported: " + ", ".join(SUPPORTED_MODEL_TYPES)
    ):
        hf_longrope2.extend(model, [4.0] * 8)


def test_extend_rejects_non_default_rope_and_leaves_model_untouched():
    model = tiny_model("llama")
    model.config.rope_parameters = {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}
    with pytest.raises(ValueError, match="uses rope_type 'linear'"):
        hf_longrope2.extend(model, [4.0] * 8)
    model = tiny_model("llama")
    before = (type(model), dict(model.config.rope_parameters), model.config.max_position_embeddings)
    for kwargs, match in [
        ({"long_factor": [4.0] * 3}, "8 values"),
        (
            {"long_factor": [4.0] * 8, "max_position_embeddings": ORIGINAL},
            r"must be larger than the original window \(32\)",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            hf_longrope2.extend(model, **kwargs)
        assert (type(model), dict(model.config.rope_parameters), model.config.max_position_embeddings) == before


def test_extend_again_replaces_factors_keeps_window():
    _, ext = extended_pair("llama")
    hf_longrope2.extend(ext, hf_longrope2.factors.pi(16, 4.0))
    params = ext.config.rope_parameters
    assert params["long_factor"] == [4.0] * 8 and params["original_max_position_embeddings"] == ORIGINAL
    assert ext.config.max_position_embeddings == TARGET
    assert ext.model.rotary_emb._longrope2_table(torch.device("cpu"), None)[0][0].item() == pytest.approx(0.25)


def test_extend_default_target_from_yarn_factors():
    model = tiny_model("llama")
    hf_longrope2.extend(model, hf_longrope2.factors.yarn(16, 1e4, 8.0, ORIGINAL))
    assert model.config.max_position_embeddings == 8 * ORIGINAL
