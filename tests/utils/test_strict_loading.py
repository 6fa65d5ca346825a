"""load_causal_lm (utils.loading): weights that do not fit the config are refused naming the tensors; what it
cannot see (architectures with the same tensor names and shapes) is pinned here so the docs stay honest."""

from __future__ import annotations

import json
import shutil

import pytest

from hf_longrope2.utils.loading import load_causal_lm


def _with_config(tiny_llama, tmp_path, **changes):
    folder = tmp_path / "m"
    shutil.copytree(tiny_llama, folder)
    config = json.loads((folder / "config.json").read_text()) | changes
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_the_own_config_loads(tiny_llama):
    assert type(load_causal_lm(str(tiny_llama))).__name__ == "LlamaForCausalLM"


def test_fused_projections_of_phi3_are_refused_naming_both_sides(tiny_llama, tmp_path):
    folder = _with_config(tiny_llama, tmp_path, model_type="phi3", architectures=["Phi3ForCausalLM"])
    with pytest.raises(ValueError, match=r"its weights do not fit the phi3 model its config.json describes: \d+ "
                                         r"tensor\(s\) the model needs are not in the weights \(.*qkv_proj.*\); \d+ "
                                         r"tensor\(s\) in the weights have no place in the model"):
        load_causal_lm(str(folder))


def test_a_gemma_config_over_llama_weights_is_not_seen(tiny_llama, tmp_path):
    """Same tensor names and shapes: every tensor loads, so nothing here can tell (the docstring says so)."""
    folder = _with_config(tiny_llama, tmp_path, model_type="gemma", architectures=["GemmaForCausalLM"])
    assert type(load_causal_lm(str(folder))).__name__ == "GemmaForCausalLM"
