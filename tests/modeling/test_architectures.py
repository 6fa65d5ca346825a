"""The architecture table: one entry per architecture, loud on a clash, and the tiny test configs follow it."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import LlamaConfig

from hf_longrope2.modeling.configuration_longrope2 import LongRoPE2LlamaConfig
from hf_longrope2.modeling.modeling_longrope2 import (
    ARCHITECTURES,
    SUPPORTED_MODEL_TYPES,
    Architecture,
    architecture_for,
    register_architecture,
)
from hf_longrope2.tiny.models import MODEL_TYPES, ORIGINAL, TINY_OVERRIDES, tiny_config, tiny_model


def test_table_is_keyed_by_base_and_longrope2_types():
    assert set(ARCHITECTURES) == {t for a in ARCHITECTURES.values() for t in (a.model_type, a.config_class.model_type)}
    assert len(SUPPORTED_MODEL_TYPES) == len(set(SUPPORTED_MODEL_TYPES)) == len(ARCHITECTURES) // 2
    for model_type in SUPPORTED_MODEL_TYPES:
        arch = ARCHITECTURES[model_type]
        assert ARCHITECTURES[arch.config_class.model_type] is arch
        assert arch.config_class.model_type == f"longrope2_{model_type}"
        assert issubclass(arch.config_class, arch.base_config_class)
        assert issubclass(arch.model_class, arch.base_model_class)
        assert arch.model_class.config_class is arch.config_class


@pytest.mark.parametrize("clash", ["base", "longrope2", "same-type"])
def test_registration_refuses_a_clash_and_changes_nothing(clash):
    llama = ARCHITECTURES["llama"]

    class Other(LlamaConfig):
        model_type = "longrope2_other"

    class Same(LlamaConfig):
        model_type = "other"

    entry = {
        "base": dataclasses.replace(llama, config_class=Other),  # model_type "llama" is taken
        "longrope2": dataclasses.replace(llama, model_type="other"),  # longrope2_llama is taken
        "same-type": dataclasses.replace(llama, model_type="other", config_class=Same),
    }[clash]
    before = dict(ARCHITECTURES)
    with pytest.raises(ValueError, match="registered already|model_type of its own"):
        register_architecture(entry)
    assert ARCHITECTURES == before and architecture_for("llama") is llama


def test_tiny_configs_cover_exactly_the_supported_types():
    assert MODEL_TYPES == list(SUPPORTED_MODEL_TYPES)
    for model_type in SUPPORTED_MODEL_TYPES:
        config = tiny_config(model_type)
        arch = architecture_for(model_type)
        assert type(config) is arch.base_config_class and config.model_type == model_type
        assert config.max_position_embeddings == ORIGINAL and config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="does not support model_type 'gpt2'"):
        tiny_config("gpt2")


def test_a_tiny_model_is_the_stock_class(model_type):
    model = tiny_model(model_type)
    assert type(model) is architecture_for(model_type).base_model_class


def test_architecture_entries_are_plain_data():
    llama = ARCHITECTURES["llama"]
    assert isinstance(llama, Architecture) and TINY_OVERRIDES["llama"] == {}
    assert LongRoPE2LlamaConfig is llama.config_class
    assert TINY_OVERRIDES["gemma2"]["attn_implementation"] == "eager"
    assert set(TINY_OVERRIDES) == set(SUPPORTED_MODEL_TYPES)
