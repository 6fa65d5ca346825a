"""Turn a local GGUF file (llama.cpp's format, often quantised) into a regular Hugging Face model folder.

```bash
pip install "hf-longrope2[gguf]"            # or: pip install gguf
hf-longrope2 convert-gguf SmolLM2-135M-Instruct.Q4_1.gguf smollm2-135m
hf-longrope2 convert-gguf model.gguf out --dtype bfloat16 --overwrite
hf-longrope2 extend --model smollm2-135m --method yarn --target-length 32768 --output-dir smollm2-32k
```

```python
>>> from hf_longrope2.publish.gguf_convert import convert_gguf
>>> convert_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m")   # -> Path("smollm2-135m")
>>> model = AutoModelForCausalLM.from_pretrained("smollm2-135m")        # plain transformers, no gguf needed
```

The output folder holds ``model.safetensors`` (dense float weights), ``config.json``, ``generation_config.json``
and the tokenizer files (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja`` when the file has
one). transformers reads the GGUF (``from_pretrained(folder, gguf_file=name)``, which needs the ``gguf`` package)
and dequantises every tensor; the config is then written without ``quantization_config`` or other GGUF leftovers,
so the folder loads with a plain ``AutoModelForCausalLM.from_pretrained(folder)`` and works with
``hf-longrope2 extend`` / ``search`` like any Hub checkpoint.

``--dtype float32`` (the default) keeps the dequantised values exactly: ggml's dequantisation computes them in
float32. ``bfloat16`` / ``float16`` halve the folder but round those values once more. The dense model is held in
memory while it is written (4 bytes per parameter in float32: ~0.5 GB for a 135M model, ~28 GB for 7B).

A GGUF with LongRoPE factors (``rope.scaling.type`` ``longrope`` and ``rope_factors_long`` / ``_short``
tensors, as ``hf-longrope2 export-gguf`` writes them) comes back as the longrope2 model it was exported from:
transformers' GGUF loader drops those (a plain Llama at the original window), so the factors, original window,
context length and ``attn_factor`` are read from the file and applied with `hf_longrope2.extend`. Any other rope
scaling type is refused rather than silently dropped.

A quantised GGUF is a *different model* from the Hub checkpoint it was made from (e.g. 4-bit weights), so
measure perplexities on the converted folder itself, not on the original.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from packaging.version import Version
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig
from transformers.utils.import_utils import GGUF_MIN_VERSION

from ..extension import extend
from ..modeling.modeling_longrope2 import SUPPORTED_MODEL_TYPES
from ..utils.arguments import check_choices
from ..utils.atomic import check_output_dir, save_atomically
from ..utils.environment import FLOAT_DTYPES

GGUF_MAGIC = b"GGUF"
INSTALL_HINT = "pip install gguf  (or, in the hf-longrope2 clone: pip install -e '.[gguf]')"
# GGUF architecture names whose transformers model_type differs (see transformers' load_gguf_checkpoint).
_MODEL_TYPE_OF_GGUF_ARCH = {"gemma3": "gemma3_text"}
# Config attributes that only describe the GGUF source, never a dense checkpoint.
_GGUF_CONFIG_LEFTOVERS = ("quantization_config", "_model_name_or_path")


def supported_gguf_architectures() -> list[str]:
    """GGUF ``general.architecture`` values that both transformers' GGUF loader and hf-longrope2 support."""
    # start-up: transformers' GGUF module takes ~1.5 s to import; only GGUF verbs need it
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(
        a for a in GGUF_SUPPORTED_ARCHITECTURES if _MODEL_TYPE_OF_GGUF_ARCH.get(a, a) in SUPPORTED_MODEL_TYPES
    )


def require_gguf(purpose: str = "reading GGUF files") -> str:
    """The installed ``gguf`` package version; raises `ImportError` with the install command when missing or old."""
    try:
        import gguf  # noqa: F401  (the optional extra [gguf]; transformers reads GGUF files through it)

        installed = version("gguf")
    except (ImportError, PackageNotFoundError) as exc:
        raise ImportError(f"{purpose} needs the `gguf` package: {INSTALL_HINT}") from exc
    if Version(installed) < Version(GGUF_MIN_VERSION):
        raise ImportError(f"gguf {installed} is too old; transformers needs gguf>={GGUF_MIN_VERSION}: {INSTALL_HINT}")
    return installed


def check_gguf_file(gguf_file: str | Path) -> Path:
    """Resolve `gguf_file` and check that it exists and starts with the GGUF magic bytes."""
    path = Path(gguf_file).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"GGUF file {str(gguf_file)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{str(gguf_file)!r} is not a file; expected a single .gguf file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(f"{str(gguf_file)!r} is not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    return path.resolve()


def gguf_config(gguf_file: str | Path):
    """The transformers config described by a GGUF file's metadata; raises for an unsupported architecture."""
    path = check_gguf_file(gguf_file)
    require_gguf()
    accepted = supported_gguf_architectures()
    try:
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    except ImportError:
        raise
    except Exception as exc:  # the file is user input: any parse failure is a bad file, reported as such
        if isinstance(exc, ValueError) and "not supported" in str(exc):  # transformers' unknown architecture
            raise ValueError(f"{str(gguf_file)!r}: {exc} Accepted GGUF architectures: {accepted}") from exc
        raise ValueError(
            f"cannot read GGUF file {str(gguf_file)!r} (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from exc
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{str(gguf_file)!r} holds a {config.model_type!r} model, which hf-longrope2 does not support; "
            f"accepted GGUF architectures: {accepted}"
        )
    return config


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    return value.tobytes().decode() if value.dtype.kind == "u" and value.dtype.itemsize == 1 else value.tolist()[0]


def gguf_rope_extension(gguf_file: str | Path) -> dict | None:
    """The LongRoPE factors of a GGUF file as [`hf_longrope2.extend`] keyword arguments, or None for plain RoPE.

    Raises:
        ValueError: a rope scaling type transformers' loader would drop and this function cannot restore.
    """
    import gguf  # the optional extra [gguf], checked by require_gguf before this runs

    reader = gguf.GGUFReader(str(gguf_file))
    arch = _field(reader, "general.architecture")
    kind = _field(reader, f"{arch}.rope.scaling.type")
    if kind in (None, "none"):
        return None
    tensors = {t.name: t for t in reader.tensors}
    if kind != "longrope" or "rope_factors_long.weight" not in tensors:
        raise ValueError(f"{str(gguf_file)!r} uses rope scaling {kind!r}"
                         f"{'' if kind != 'longrope' else ' without rope_factors_long tensors'}, which convert-gguf "
                         "cannot carry over (transformers would load it as plain RoPE); only LongRoPE factors as "
                         "hf-longrope2 export-gguf writes them are supported")
    extra = {
        "long_factor": [float(x) for x in tensors["rope_factors_long.weight"].data],
        "original_max_position_embeddings": int(_field(reader, f"{arch}.rope.scaling.original_context_length")),
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length")),
    }
    if "rope_factors_short.weight" in tensors:
        extra["short_factor"] = [float(x) for x in tensors["rope_factors_short.weight"].data]
    attn = _field(reader, f"{arch}.rope.scaling.attn_factor")
    if attn is not None:
        extra["long_mscale"] = float(attn)
    return extra


def convert_gguf(
    gguf_file: str | Path, output_dir: str | Path, *, dtype: str = "float32", overwrite: bool = False
) -> Path:
    """Write the model in `gguf_file` to `output_dir` as dense safetensors, config and tokenizer files.

    Args:
        gguf_file (`str` or `Path`): A local ``.gguf`` file of a supported architecture
            ([`supported_gguf_architectures`]), quantised or not.
        output_dir (`str` or `Path`): Destination folder; it must not exist or be empty unless `overwrite`.
            It is written to a temporary sibling first and renamed, so a failure leaves nothing behind.
        dtype (`str`, defaults to ``"float32"``): Weights dtype, one of ``float32`` (exact dequantised values),
            ``bfloat16`` or ``float16``.
        overwrite (`bool`, defaults to `False`): Replace a non-empty `output_dir`.

    Returns:
        `Path`: `output_dir`.

    Raises:
        FileNotFoundError: `gguf_file` does not exist.
        FileExistsError: `output_dir` is not empty and `overwrite` is false.
        ValueError: not a GGUF file, an unsupported architecture or dtype, or no tokenizer in the file.
        ImportError: the ``gguf`` package is missing (the message gives the install command).
    """
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
    path = check_gguf_file(gguf_file)
    out = check_output_dir(output_dir, overwrite)  # before the expensive load
    gguf_config(path)  # architecture check (and gguf package check) on the metadata alone
    extension = gguf_rope_extension(path)  # before the load: an unsupported scaling is refused up front
    model = AutoModelForCausalLM.from_pretrained(
        path.parent,
        gguf_file=path.name,
        dtype=getattr(torch, dtype),
        # Dense weights even where transformers could keep GGUF blocks (packed modules cannot be saved).
        quantization_config=GgufConfig(dequantize=True),
        local_files_only=True,
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot build a tokenizer from {str(gguf_file)!r}: {exc}") from exc
    for name in _GGUF_CONFIG_LEFTOVERS:
        if name in model.config.__dict__:
            delattr(model.config, name)
    if extension is not None:
        model.config.max_position_embeddings = extension["original_max_position_embeddings"]
        extend(model, **extension)
        tokenizer.model_max_length = model.config.max_position_embeddings

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return save_atomically(out, write, overwrite=overwrite)


@dataclass
class ConvertGGUFArguments:
    gguf_file: str = field(
        default="", metadata={"help": "The local .gguf file to convert (required; or the first positional argument)"}
    )
    output_dir: str = field(
        default="",
        metadata={"help": "Folder to write (required, must not exist or be empty; or the second positional argument)"},
    )
    dtype: str = field(
        default="float32",
        metadata={"help": "Weights dtype; float32 keeps the dequantised values exactly", "choices": FLOAT_DTYPES},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output folder"})

    def __post_init__(self) -> None:
        if not self.gguf_file or not self.output_dir:
            raise ValueError("usage: hf-longrope2 convert-gguf FILE OUT (or --gguf-file FILE --output-dir OUT)")
        check_choices(self)


def positionals_as_flags(argv: Sequence[str]) -> list[str]:
    """``FILE OUT [flags]`` -> ``--gguf_file FILE --output_dir OUT [flags]`` (up to two leading positionals)."""
    rest = list(argv)
    flags: list[str] = []
    for name in ("--gguf_file", "--output_dir"):
        if not rest or rest[0].startswith("-"):
            break
        flags += [name, rest.pop(0)]
    return flags + rest


def run_convert_gguf(args: ConvertGGUFArguments) -> int:
    """``hf-longrope2 convert-gguf``: [`convert_gguf`] and what the folder holds; 2 without the gguf package."""
    try:
        out = convert_gguf(args.gguf_file, args.output_dir, dtype=args.dtype, overwrite=args.overwrite)
    except ImportError as exc:
        print(f"hf-longrope2 convert-gguf: error: {exc}", file=sys.stderr)
        return 2
    config = json.loads((out / "config.json").read_text())
    print(
        f"converted {args.gguf_file} ({config['model_type']}, {config['num_hidden_layers']} layers, "
        f"{config['max_position_embeddings']}-token window) -> {out} ({args.dtype} safetensors)"
    )
    return 0
