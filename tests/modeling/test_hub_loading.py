"""What a Hub user runs on an extended folder, without hf_longrope2: the model and then its tokenizer load with
no prompt and no warning, and the ``longrope2`` validator sits where transformers looks for it."""

from __future__ import annotations

import pytest
from snippets import run_user_code
from transformers import AutoConfig
from transformers.modeling_rope_utils import RotaryEmbeddingConfigMixin

from hf_longrope2.extension import extend_pretrained
from hf_longrope2.modeling import ARCHITECTURES


@pytest.fixture(scope="module")
def extended(tmp_path_factory, tiny_llama):
    out = tmp_path_factory.mktemp("hub") / "tiny-yarn-128"
    extend_pretrained(str(tiny_llama), out, 128, method="yarn")
    return out


def test_model_then_tokenizer_load_without_prompt_or_warning(extended):
    run_user_code(
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(extended)!r}, trust_remote_code=True)\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(extended)!r})\n"
        "assert type(model).__name__ == 'LongRoPE2LlamaForCausalLM'\n"
        "print(tokenizer('hello').input_ids)\n",
        extended.parent,
    )


def test_validator_is_an_attribute_of_every_config_class(extended):
    for arch in ARCHITECTURES.values():
        assert callable(getattr(arch.config_class, "_validate_longrope2_rope_parameters", None))
    config = AutoConfig.from_pretrained(extended)
    assert isinstance(config, RotaryEmbeddingConfigMixin)
    with pytest.raises(ValueError, match="long_factor"):
        config._validate_longrope2_rope_parameters({**config.rope_parameters, "long_factor": [0.5]})


def test_saved_outputs_cache_and_truncate_at_their_window(extended, tiny_search):
    """use_cache on and the tokenizer's model_max_length = the extended window, for extend and search outputs."""
    import json

    from transformers import AutoTokenizer

    for folder in (extended, tiny_search):
        config = json.loads((folder / "config.json").read_text())
        assert config["use_cache"] is True
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert tokenizer.model_max_length == config["max_position_embeddings"]
        assert len(tokenizer("x" * 5000, truncation=True).input_ids) == config["max_position_embeddings"]


def test_export_gguf_names_what_it_does_without_gguf(tmp_path, monkeypatch):
    import builtins

    from hf_longrope2.publish.gguf_export import export_gguf

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "gguf" else real(name, *a, **k))
    with pytest.raises(ValueError, match="^writing GGUF files needs the `gguf` package"):
        export_gguf(tmp_path, tmp_path / "x.gguf")
