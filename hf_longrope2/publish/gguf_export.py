"""``hf-longrope2 export-gguf``: a longrope2 Llama folder as a GGUF file that llama.cpp runs at the extended length.

```bash
hf-longrope2 export-gguf --model smollm2-32k --output-file smollm2-32k.gguf               # float32
hf-longrope2 export-gguf --model smollm2-32k --output-file smollm2-32k-f16.gguf --dtype float16
```

```python
>>> from hf_longrope2.publish.gguf_export import export_gguf
>>> export_gguf("smollm2-32k", "smollm2-32k.gguf", dtype="float16")
```

llama.cpp's Llama loader takes LongRoPE factors when ``llama.rope.scaling.type`` is ``longrope``: the per-pair
tensors ``rope_factors_long`` / ``rope_factors_short`` (float32, one factor per rotary pair, dividing the
pair's frequency as ``long_factor`` does here), ``llama.rope.scaling.original_context_length`` (the original
window) and ``llama.rope.scaling.attn_factor`` (``long_mscale``, multiplied into cos and sin as here). It uses
the long factors for every token whenever the context size (``n_ctx``) exceeds the original window, the short
ones otherwise; the attention factor applies to both. llama.cpp's own converter writes only the scaling type
for such a model (no factors), so its GGUF silently runs plain RoPE: this writer fills them in, with the
``gguf`` package's `GGUFWriter` and llama.cpp's tensor names, and permutes the query and key rows from
transformers' rotate-half layout to llama.cpp's adjacent-pair layout as llama.cpp's converter does.

Refused with a message (instead of a file that serves wrong): architectures whose llama.cpp loader takes no
LongRoPE factors (Qwen2's passes none to its rope), partial rotary dimensions, and tokenizers other than a
byte-level BPE ``tokenizer.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from ..modeling.rope import LongRoPE2Parameters, rope_parameters
from ..utils.arguments import check_choices
from ..utils.atomic import atomic_path
from ..utils.loading import check_model_folder_loadable
from .gguf_convert import require_gguf

SUPPORTED = ("longrope2_llama",)  # llama.cpp: LLM_ARCH_LLAMA creates rope_factors_long/short for longrope
MATRIX_DTYPES = ("float32", "float16")  # GGUF matrix types written
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.bias": "attn_output.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_TENSORS = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                  "lm_head.weight": "output.weight"}


def permute_rotary_rows(weight, n_head: int):
    """Rows of a q/k projection from transformers' rotate-half order to llama.cpp's adjacent pairs (per head)."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _load_state_dict(folder: Path) -> dict:
    index = folder / "model.safetensors.index.json"
    names = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [
        "model.safetensors"]
    state = {}
    for name in names:
        state.update(load_file(folder / name))
    return state


def _tokenizer(folder: Path) -> dict:
    """tokens, token types, merges, pre-tokenizer name and special ids of a byte-level BPE ``tokenizer.json``."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{folder} has no tokenizer.json; export-gguf needs a byte-level BPE tokenizer (fast)")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if model.get("type") != "BPE" or "ByteLevel" not in kinds:
        raise ValueError(f"{path}: export-gguf supports byte-level BPE tokenizers (GPT-2 / SmolLM / Llama 3 style); "
                         f"this one is {model.get('type')} with pre-tokenizers {kinds}")
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        pre_name = "smollm"  # digits one by one, then GPT-2's regex: llama.cpp's SmolLM pre-tokenizer
    elif kinds == ["ByteLevel"]:
        pre_name = "gpt-2"
    else:
        raise ValueError(f"{path}: pre-tokenizers {kinds} have no llama.cpp equivalent known to export-gguf "
                         "(supported: ByteLevel, or Digits(individual) + ByteLevel)")
    vocab = dict(model["vocab"])
    added = {t["content"]: t for t in data.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = token["id"]
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # UNUSED until filled
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = 3 if added.get(text, {}).get("special") else 4 if text in added else 1  # CONTROL, USER, NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {"tokens": tokens, "types": types, "merges": merges, "pre": pre_name}


def export_gguf(model_dir: str | os.PathLike, output_file: str | os.PathLike, *, dtype: str = "float32",
                overwrite: bool = False) -> Path:
    """Write the longrope2 Llama in `model_dir` as a GGUF file llama.cpp runs with the LongRoPE2 long factors.

    Args:
        model_dir (`str` or `os.PathLike`): A saved longrope2 model folder (``hf-longrope2 search / extend /
            midtrain`` output) of a Llama-architecture model.
        output_file (`str` or `os.PathLike`): The ``.gguf`` file to write (atomically: a temporary sibling renamed).
        dtype (`str`, defaults to ``"float32"``): ``float32`` or ``float16`` for the matrices (norms and rope
            factors stay float32, as llama.cpp requires).
        overwrite (`bool`, defaults to `False`): Replace an existing `output_file`.

    Returns:
        `Path`: the written file.

    Raises:
        ValueError: an architecture, rotary layout or tokenizer llama.cpp cannot represent; a bad folder.
        FileExistsError: `output_file` exists and not `overwrite`.
    """
    try:
        require_gguf("writing GGUF files")
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    import gguf  # the optional extra [gguf], checked just above

    folder, out = Path(model_dir), Path(output_file)
    if dtype not in MATRIX_DTYPES:
        raise ValueError(f"--dtype must be one of {MATRIX_DTYPES}, got {dtype!r}")
    if out.is_dir() or (out.exists() and not overwrite):
        raise FileExistsError(f"{out} exists; pass --overwrite or choose another --output-file")
    if not folder.is_dir():
        raise ValueError(f"--model {folder}: no such folder; export-gguf needs a saved longrope2 model folder")
    config = check_model_folder_loadable(folder)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED:
        hint = (" (llama.cpp's Qwen2 graph passes no frequency factors to its rope, so a GGUF would run plain RoPE)"
                if model_type == "longrope2_qwen2" else "")
        raise ValueError(f"{folder}: model_type {model_type!r}: export-gguf writes LongRoPE factors only for "
                         f"{SUPPORTED} (llama.cpp's Llama loader reads them){hint}")
    params = rope_parameters(config)
    if params.get("rope_type") != "longrope2":
        raise ValueError(f"{folder}: rope_type {params.get('rope_type')!r}, expected 'longrope2'")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"{folder}: partial_rotary_factor {params['partial_rotary_factor']}: llama.cpp's Llama "
                         "rotates the whole head")
    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    p = LongRoPE2Parameters.from_config(config)
    head_dim, original, target = p.rotary_dim, p.original_max_position_embeddings, p.max_position_embeddings
    long_factor, short_factor, long_mscale = list(p.long_factor), list(p.short_factor), p.long_mscale
    if len(long_factor) != head_dim // 2:
        raise ValueError(f"{folder}: {len(long_factor)} long factors for head_dim {head_dim} (expected {head_dim // 2})")
    vocab = _tokenizer(folder)
    state = _load_state_dict(folder)
    tied = "lm_head.weight" not in state or bool(config.get("tie_word_embeddings"))

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:  # a temporary sibling, renamed to `out` only once the file is complete
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(folder.resolve().name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "float32" else gguf.LlamaFileType.MOSTLY_F16)
        writer.add_vocab_size(len(vocab["tokens"]))
        writer.add_context_length(target)
        writer.add_embedding_length(config["hidden_size"])
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(p.rope_theta)
        writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        writer.add_rope_scaling_orig_ctx_len(original)
        writer.add_rope_scaling_attn_factors(long_mscale)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(vocab["pre"])
        writer.add_token_list(vocab["tokens"])
        writer.add_token_types(vocab["types"])
        writer.add_token_merges(vocab["merges"])
        for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                         ("pad_token_id", writer.add_pad_token_id)):
            if isinstance(config.get(key), int):
                add(config[key])
        writer.add_add_bos_token(False)
        matrix = np.float32 if dtype == "float32" else np.float16
        writer.add_tensor("rope_factors_long.weight", np.asarray(long_factor, dtype=np.float32))
        writer.add_tensor("rope_factors_short.weight", np.asarray(short_factor, dtype=np.float32))
        for name, value in state.items():
            if name == "lm_head.weight" and tied:
                continue
            if name in GLOBAL_TENSORS:
                target_name = GLOBAL_TENSORS[name]
            else:
                parts = name.split(".")
                if parts[:2] != ["model", "layers"] or ".".join(parts[3:]) not in LAYER_TENSORS:
                    raise ValueError(f"{folder}: tensor {name!r} has no llama.cpp Llama equivalent")
                suffix = ".".join(parts[3:])
                target_name = f"blk.{parts[2]}.{LAYER_TENSORS[suffix]}"
                if suffix.startswith("self_attn.q_proj"):
                    value = permute_rotary_rows(value, n_head)
                elif suffix.startswith("self_attn.k_proj"):
                    value = permute_rotary_rows(value, n_kv)
            value = np.ascontiguousarray(value.astype(np.float32 if value.ndim == 1 else matrix))
            writer.add_tensor(target_name, value)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


@dataclass
class ExportGGUFArguments:
    model: str = field(default="", metadata={"help": "A saved longrope2 Llama folder (required)"})
    output_file: str = field(default="", metadata={"help": "The .gguf file to write (required)"})
    dtype: str = field(default="float32", metadata={"help": "The matrices' dtype", "choices": MATRIX_DTYPES})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output-file"})

    def __post_init__(self) -> None:
        if not self.model or not self.output_file:
            raise ValueError("--model and --output-file are required")
        check_choices(self)


def run_export_gguf(args: ExportGGUFArguments) -> Path:
    """``hf-longrope2 export-gguf``: [`export_gguf`] and how to run the file."""
    out = export_gguf(args.model, args.output_file, dtype=args.dtype, overwrite=args.overwrite)
    print(f"exported {args.model} -> {out} ({args.dtype}, {out.stat().st_size:,} bytes); run it in llama.cpp with a "
          "context size above the original window to use the long factors")
    return out
