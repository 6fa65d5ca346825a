"""``hf-longrope2 export-gguf``: the LongRoPE keys and factor tensors llama.cpp reads, weights that transformers'
own GGUF reader (which undoes llama.cpp's query/key permutation) gives back exactly, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_longrope2 import cli
from hf_longrope2.publish.gguf_export import export_gguf, permute_rotary_rows
from hf_longrope2.tiny.base import tiny_base_path
from hf_longrope2.tiny.models import char_tokenizer, extended_pair

gguf = pytest.importorskip("gguf")  # a declared dependency ([gguf] extra, installed by .ci/run)


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    """The embedded base (Llama, byte-level BPE) extended 8x with YaRN's factors by the CLI."""
    out = tmp_path_factory.mktemp("gguf") / "yarn"
    assert cli.main(["extend", "--model", str(tiny_base_path()), "--method", "yarn", "--target-length", "2048",
                     "--output-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exported(extended) -> Path:
    path = extended.parent / "yarn.gguf"
    assert cli.main(["export-gguf", "--model", str(extended), "--output-file", str(path)]) == 0
    return path


def _field(reader, key):
    field = reader.fields[key]
    value = field.parts[field.data[0]]
    return value.tobytes().decode() if value.dtype == np.uint8 else value.tolist()[0]


def test_longrope_keys_and_factor_tensors(extended, exported):
    config = json.loads((extended / "config.json").read_text())
    params = config["rope_parameters"]
    reader = gguf.GGUFReader(exported)
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.rope.scaling.type") == "longrope"
    assert _field(reader, "llama.rope.scaling.original_context_length") == 256
    assert _field(reader, "llama.context_length") == 2048
    assert _field(reader, "llama.rope.freq_base") == params["rope_theta"]
    assert _field(reader, "llama.rope.scaling.attn_factor") == pytest.approx(params["long_mscale"], rel=1e-7)
    assert "llama.rope.scaling.factor" not in reader.fields  # llama.cpp would scale every frequency by 1/factor
    tensors = {t.name: t for t in reader.tensors}
    assert np.array_equal(tensors["rope_factors_long.weight"].data, np.float32(params["long_factor"]))
    assert np.array_equal(tensors["rope_factors_short.weight"].data, np.ones(32, np.float32))
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    tokenizer = json.loads((extended / "tokenizer.json").read_text())
    tokens = reader.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == 4096 and _field(reader, "tokenizer.ggml.pre") == "smollm"
    assert bytes(tokens.parts[tokens.data[tokenizer["model"]["vocab"]["Ġthe"]]]).decode() == "Ġthe"


def test_transformers_reads_back_the_same_weights(extended, exported):
    """transformers' GGUF loader reverses llama.cpp's q/k permutation: every weight must come back bit for bit."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    back = AutoModelForCausalLM.from_pretrained(exported.parent, gguf_file=exported.name, dtype=torch.float32)
    original = load_file(extended / "model.safetensors")
    restored = back.state_dict()
    assert set(original) <= set(restored)
    for name, value in original.items():
        assert torch.equal(restored[name], value), name


def test_permutation_moves_each_head_to_adjacent_pairs():
    rows = np.arange(2 * 8)[:, None].astype(np.float32)  # 2 heads of head_dim 8: rotate-half pairs (i, i + 4)
    permuted = permute_rotary_rows(rows, 2)[:, 0].astype(int).tolist()
    assert permuted == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]


def test_float16_halves_the_matrices(extended, tmp_path):
    path = export_gguf(extended, tmp_path / "f16.gguf", dtype="float16")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_q.weight"] == "F16" and types["rope_factors_long.weight"] == "F32"
    assert types["blk.0.attn_norm.weight"] == "F32"


def test_refuses_what_llama_cpp_cannot_represent(extended, exported, tmp_path, capsys):
    _, qwen = extended_pair("qwen2")
    qwen.save_pretrained(tmp_path / "qwen2")
    with pytest.raises(ValueError, match="Qwen2 graph passes no frequency factors"):
        export_gguf(tmp_path / "qwen2", tmp_path / "q.gguf")
    _, llama = extended_pair("llama")
    llama.save_pretrained(tmp_path / "char")
    char_tokenizer().save_pretrained(tmp_path / "char")
    with pytest.raises(ValueError, match="byte-level BPE"):
        export_gguf(tmp_path / "char", tmp_path / "c.gguf")
    assert cli.main(["export-gguf", "--model", str(tiny_base_path()), "--output-file", str(tmp_path / "b.gguf")]) == 2
    assert "model_type 'llama': export-gguf writes LongRoPE factors only for" in capsys.readouterr().err
    before = exported.stat().st_mtime_ns
    assert cli.main(["export-gguf", "--model", str(extended), "--output-file", str(exported)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and exported.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["char", "qwen2"]  # no file, no temporary left


def test_convert_gguf_brings_the_extension_back(extended, exported, tmp_path):
    """export-gguf then convert-gguf: the longrope2 model again (factors, windows, same logits past the window)."""
    from transformers import AutoModelForCausalLM

    from hf_longrope2.publish.gguf_convert import convert_gguf

    back = convert_gguf(exported, tmp_path / "back")
    config, source = (json.loads((f / "config.json").read_text()) for f in (back, extended))
    assert config["model_type"] == "longrope2_llama" and config["max_position_embeddings"] == 2048
    for key in ("rope_type", "original_max_position_embeddings", "long_factor", "rope_theta"):
        assert config["rope_parameters"][key] == pytest.approx(source["rope_parameters"][key], rel=1e-6), key
    ids = torch.randint(5, 4000, (1, 600), generator=torch.Generator().manual_seed(0))  # past the 256 window
    with torch.no_grad():
        logits = [AutoModelForCausalLM.from_pretrained(f, dtype=torch.float32)(ids).logits for f in (extended, back)]
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-4)


def test_convert_gguf_refuses_a_scaling_it_cannot_carry(exported, tmp_path):
    from hf_longrope2.publish.gguf_convert import gguf_rope_extension

    reader = gguf.GGUFReader(exported)
    writer = gguf.GGUFWriter(str(tmp_path / "yarn-scaled.gguf"), "llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = field.contents()
        if field.name == "llama.rope.scaling.type":
            value = "yarn"
        writer.add_key_value(field.name, value, field.types[0], sub_type=field.types[-1] if len(field.types) > 1 else None)
    for t in reader.tensors[:1]:
        writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="uses rope scaling 'yarn'"):
        gguf_rope_extension(tmp_path / "yarn-scaled.gguf")
