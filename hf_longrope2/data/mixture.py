"""Data sources of a mid-training mixture and their tokenisation, cached on disk as memory-mapped Arrow files.

```python
>>> from hf_longrope2.data.mixture import SourceSpec, mixture_from_yaml, tokenize_source
>>> sources = [SourceSpec("data/books", weight=3.0), SourceSpec("builtin:pydoc", unit="paragraph")]
>>> sources = mixture_from_yaml("my_mixture.yaml")  # the same, from a YAML list of SourceSpec fields
>>> ds = tokenize_source(tokenizer, sources[0], num_proc=4)  # cached under cache_dir() / "packing"
>>> ds.column_names
['input_ids']
```

A [`SourceSpec`] names a Hub dataset, local files or a built-in corpus, its mixture weight, and how its texts
become documents (whole, or split into paragraphs / lines; or already tokenised). [`tokenize_source`] turns it into
one ``input_ids`` list per document, ending in EOS; Hub sources and local ``.jsonl`` / ``.parquet`` files are read
through `datasets` and never held as a Python list of texts. [`hf_longrope2.data.packing.build_mixed_dataset`] mixes and
packs the tokenised sources.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..utils.environment import cache_dir
from .needles import tokenizer_fingerprint
from .packing_plan import DroppedDocument
from .texts import describe, load_texts, local_files, local_path, source_fingerprint

TOKENIZED_COLUMN = "input_ids"
TOKENIZED_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TEXT_BUILDERS = {".jsonl": "json", ".parquet": "parquet"}  # local text files read through `datasets`
CACHE_VERSION = 2
UNITS = ("document", "paragraph", "line")
TOKENIZE_BATCH = 64  # documents per tokenisation batch: bounds the Python lists of long documents
# Python's str.strip() whitespace as an RE2 class: a text is a document when it has any other character.
_NOT_SPACE = "[^" + "".join(f"\\x{{{c:x}}}" for c in range(0x110000) if chr(c).isspace()) + "]"


@dataclass
class SourceSpec:
    """One data source of a mixture.

    Args:
        dataset (`str`): A Hub dataset id, a local file or directory, or ``builtin:pydoc`` / ``builtin:stdlib``
            (as in [`hf_longrope2.data.texts.load_texts`]).
        weight (`float`): Relative share of the mixture's tokens.
        split (`str`): Hub dataset split. text_column (`str`): Column holding the text.
        dataset_config (`str`, *optional*): Hub dataset configuration.
        tokenized (`bool`): The source is pre-tokenised: its ``input_ids`` column holds token id lists
            (local ``.jsonl`` / ``.json`` / ``.parquet`` files or a Hub dataset).
        max_documents (`int`, *optional*): Use only the first this many documents.
        name (`str`, *optional*): Name in reports; defaults to `dataset`.
        unit (`str`): ``document`` (default), or ``paragraph`` / ``line`` to split each text at blank lines /
            newlines into separate documents (short-window material from long texts, e.g. for tiny models).
        data_dir (`str`, *optional*): Hub sources only: ``datasets.load_dataset(..., data_dir=data_dir)``, e.g.
            ``python`` for one language of ``bigcode/starcoderdata``.
        min_document_tokens (`int`, *optional*): Drop (and report) documents of fewer tokens, EOS included, e.g.
            8192 to keep only the paper's long data (with ``max_document_tokens`` 200000 at the top). Empty
            documents stay reported as ``empty``.
    """

    dataset: str
    weight: float = 1.0
    split: str = "train"
    text_column: str = "text"
    dataset_config: str | None = None
    tokenized: bool = False
    max_documents: int | None = None
    name: str | None = None
    unit: str = "document"
    data_dir: str | None = None
    min_document_tokens: int | None = None

    def __post_init__(self) -> None:
        self.name = self.dataset if self.name is None else self.name
        w, n, m = self.weight, self.max_documents, self.min_document_tokens
        checks = {
            "dataset": (isinstance(self.dataset, str) and self.dataset, "a non-empty string"),
            "split": (isinstance(self.split, str) and self.split, "a non-empty string"),
            "text_column": (isinstance(self.text_column, str) and self.text_column, "a non-empty string"),
            "name": (isinstance(self.name, str) and self.name, "a non-empty string or None"),
            "dataset_config": (self.dataset_config is None or isinstance(self.dataset_config, str), "a string or None"),
            "weight": (type(w) in (int, float) and 0 < w < math.inf, "a positive finite number"),
            "tokenized": (isinstance(self.tokenized, bool), "true or false"),
            "max_documents": (n is None or (type(n) is int and n > 0), "a positive integer or None"),
            "unit": (self.unit in UNITS and not (self.tokenized and self.unit != "document"),
                     f"one of {UNITS} ('document' for tokenized sources)"),
            "data_dir": (self.data_dir is None or (isinstance(self.data_dir, str) and self.data_dir),
                         "a non-empty string or None"),
            "min_document_tokens": (m is None or (type(m) is int and m > 0), "a positive integer or None"),
        }
        for attr, (ok, accepted) in checks.items():
            if not ok:
                raise ValueError(f"SourceSpec.{attr} must be {accepted}, got {getattr(self, attr)!r}")
        self.weight = float(w)


def check_unique_names(specs: Sequence[SourceSpec]) -> None:
    repeated = sorted(name for name, count in Counter(s.name for s in specs).items() if count > 1)
    if repeated:
        raise ValueError(f"source names must be unique, {repeated} repeat; give repeated datasets distinct `name`s")


def mixture_from_yaml(value: str | os.PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[SourceSpec]:
    """Sources from a YAML file, or from its parsed content: a list of mappings or a mapping with a ``sources`` list.

    Each mapping's keys are [`SourceSpec`] fields; unknown keys raise a `ValueError` naming them.
    """
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):  # inline, e.g. a list in a recipe YAML
        value = yaml.safe_load(value)
    elif isinstance(value, str | os.PathLike):
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"mixture file {str(path)!r} does not exist; expected a YAML list of sources")
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(value, Mapping) and set(value) == {"sources"}:
        value = value["sources"]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise ValueError(f"a mixture must be a non-empty list of source mappings (or {{'sources': [...]}}), "
                         f"got {value!r}")
    accepted = [f.name for f in fields(SourceSpec)]
    specs = []
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise ValueError(f"mixture entry {i} must be a mapping with keys from {accepted}, got {entry!r}")
        unknown = sorted(set(entry) - set(accepted))
        if unknown or "dataset" not in entry:
            problem = f"unknown key(s) {unknown}" if unknown else "no 'dataset' key"
            raise ValueError(f"mixture entry {i} has {problem}; accepted keys: {accepted}")
        specs.append(SourceSpec(**entry))
    check_unique_names(specs)
    return specs


def _with_eos(ids: Sequence[int], eos: int | None) -> list[int]:
    ids = list(ids)
    return ids + [eos] if eos is not None and ids and ids[-1] != eos else ids


def _tokenize_batch(batch: dict[str, list], tokenizer: Any = None, eos: int | None = None,
                    column: str = "text") -> dict[str, list]:
    """Token ids of a batch of texts (or of pre-tokenised documents when `tokenizer` is None), ending in `eos`."""
    if tokenizer is None:
        encoded = batch[TOKENIZED_COLUMN]
    else:
        encoded = tokenizer(batch[column], add_special_tokens=False, verbose=False)["input_ids"]
    return {TOKENIZED_COLUMN: [_with_eos(ids, eos) for ids in encoded]}


def _split_units(batch: dict[str, list], column: str, unit: str) -> dict[str, list]:
    separator = re.compile(r"\n\s*\n" if unit == "paragraph" else r"\n")
    return {"text": [piece.strip() for text in batch[column] for piece in separator.split(text) if piece.strip()]}


def _load_hub(spec: SourceSpec) -> Any:
    import datasets  # start-up: datasets takes ~1 s to import; only tokenised sources need it

    extra = {} if spec.data_dir is None else {"data_dir": spec.data_dir}
    try:
        return datasets.load_dataset(spec.dataset, spec.dataset_config, split=spec.split, **extra)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(
            f"could not load dataset {spec.dataset!r} (config {spec.dataset_config!r}, split {spec.split!r}, "
            f"data_dir {spec.data_dir!r}) with datasets.load_dataset: {type(exc).__name__}: {first_line}"
        ) from exc


def _check_data_dir(spec: SourceSpec, local: bool) -> None:
    if spec.data_dir is not None and (local or spec.dataset.startswith("builtin:")):
        raise ValueError(f"SourceSpec.data_dir applies to Hub datasets only; source {spec.name!r} is "
                         f"{spec.dataset!r}")


def _load_pretokenized(spec: SourceSpec, cache: Path) -> Any:
    import datasets  # start-up: datasets takes ~1 s to import; only tokenised sources need it

    path = Path(spec.dataset).expanduser()
    _check_data_dir(spec, path.exists())
    if path.exists():
        found = (p for p in path.rglob("*") if p.suffix.lower() in TOKENIZED_BUILDERS)
        files = [path] if path.is_file() else sorted(found)
        builders = {TOKENIZED_BUILDERS.get(p.suffix.lower()) for p in files}
        if not files or None in builders or len(builders) > 1:
            raise ValueError(f"pre-tokenised source {spec.dataset!r} must hold files of one type of "
                             f"{list(TOKENIZED_BUILDERS)}")
        ds = datasets.load_dataset(builders.pop(), data_files=[str(p) for p in files], split="train",
                                   cache_dir=str(cache / "raw"))
    else:
        ds = _load_hub(spec)
    if TOKENIZED_COLUMN not in ds.column_names:
        raise ValueError(f"pre-tokenised source {spec.name!r} needs an {TOKENIZED_COLUMN!r} column; "
                         f"found {ds.column_names}")
    ds = ds.select_columns([TOKENIZED_COLUMN])
    return ds.select(range(min(spec.max_documents, len(ds)))) if spec.max_documents else ds


def _text_dataset(spec: SourceSpec, cache: Path) -> Any | None:
    """The texts of a Hub source or of local ``.jsonl`` / ``.parquet`` files as a memory-mapped `datasets.Dataset`
    of the first `max_documents` non-blank texts (column `text_column`), or None for sources read as lists."""
    import datasets  # start-up: datasets takes ~1 s to import; only tokenised sources need it
    import pyarrow.compute as pc  # start-up: loaded with datasets, only for tokenised sources

    path = None if spec.dataset.startswith("builtin:") else local_path(spec.dataset)
    _check_data_dir(spec, path is not None)
    if spec.dataset.startswith("builtin:"):
        return None
    if path is not None:
        files = [p for _, p in local_files(path)]
        builders = {TEXT_BUILDERS.get(p.suffix.lower()) for p in files}
        if len(builders) != 1 or None in builders:
            return None  # .txt / .md / .json files, or a mix of types: read by load_texts
        ds = datasets.load_dataset(builders.pop(), data_files=[str(p) for p in files], split="train",
                                   cache_dir=str(cache / "raw"))
        where = f"{path}"
    else:
        ds = _load_hub(spec)
        where = f"dataset {spec.dataset!r}"
    column = spec.text_column
    if column not in ds.column_names:
        raise ValueError(f"text column {column!r} not found in {where}; available columns: {ds.column_names}")
    feature = ds.features[column]
    if not isinstance(feature, datasets.Value) or feature.dtype not in ("string", "large_string"):
        raise ValueError(f"text column {column!r} in {where} holds {feature}; expected strings")
    ds = ds.select_columns([column])
    keep, found, offset = [], 0, 0
    for chunk in ds.data.column(column).chunks:  # blank texts are skipped, as load_texts does
        mask = pc.fill_null(pc.match_substring_regex(chunk, _NOT_SPACE), False)
        hits = np.flatnonzero(mask.to_numpy(zero_copy_only=False)) + offset
        offset += len(chunk)
        keep.append(hits[:None if spec.max_documents is None else spec.max_documents - found])
        found += len(keep[-1])
        if spec.max_documents is not None and found >= spec.max_documents:
            break
    rows = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return ds if len(rows) == len(ds) else ds.select(rows)


def source_cache_key(tokenizer: Any, spec: SourceSpec, eos: int | None) -> str:
    """Cache key of the tokenised documents of `spec` (weights, names and length filters do not change them)."""
    column = TOKENIZED_COLUMN if spec.tokenized else spec.text_column
    settings = {
        "version": CACHE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer), "eos": eos,
        "source": source_fingerprint(spec.dataset, split=spec.split, text_column=column,
                                     config_name=spec.dataset_config),
        "path": str(path.resolve()) if (path := Path(spec.dataset).expanduser()).exists() else None,
        **{k: v for k, v in asdict(spec).items() if k not in ("weight", "name", "min_document_tokens")},
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def tokenize_source(tokenizer: Any, spec: SourceSpec, *, num_proc: int = 1, append_eos: bool = True,
                    use_cache: bool = True) -> Any:
    """The documents of `spec` as a `datasets.Dataset` with one ``input_ids`` column, cached on disk.

    The cache file (under ``cache_dir() / "packing"``) is named by a hash of the tokenizer, the source's fingerprint
    and these settings, so a second call reads it instead of tokenising again. EOS is appended to every non-empty
    document that does not already end with it when `append_eos` and the tokenizer has one. Hub sources and local
    ``.jsonl`` / ``.parquet`` files are read through `datasets` (memory-mapped, never all texts in a Python list);
    built-in sources and other local files through [`hf_longrope2.data.texts.load_texts`].
    """
    import datasets  # start-up: datasets takes ~1 s to import; only tokenised sources need it

    eos = tokenizer.eos_token_id if append_eos else None
    column = TOKENIZED_COLUMN if spec.tokenized else spec.text_column
    key = source_cache_key(tokenizer, spec, eos)
    cache = cache_dir() / "packing"
    cache.mkdir(parents=True, exist_ok=True)
    procs = num_proc if num_proc > 1 else None
    if spec.tokenized:
        raw, kwargs = _load_pretokenized(spec, cache), {"eos": eos}
    else:
        raw = _text_dataset(spec, cache)
        text = spec.text_column
        if raw is None:
            texts = load_texts(spec.dataset, split=spec.split, text_column=spec.text_column,
                               config_name=spec.dataset_config, max_documents=spec.max_documents)
            raw, text = datasets.Dataset.from_dict({"text": texts}), "text"
        if spec.unit != "document" and len(raw):
            raw = raw.map(_split_units, batched=True, num_proc=procs, fn_kwargs={"column": text, "unit": spec.unit},
                          remove_columns=raw.column_names, desc=f"split {spec.name} into {spec.unit}s")
            text = "text"
        kwargs = {"tokenizer": tokenizer, "eos": eos, "column": text}
    if len(raw) == 0:
        raise ValueError(f"source {spec.name!r} ({describe(spec.dataset, spec.split, column)}) has no documents")
    return raw.map(_tokenize_batch, batched=True, batch_size=TOKENIZE_BATCH, writer_batch_size=TOKENIZE_BATCH,
                   num_proc=procs, fn_kwargs=kwargs, remove_columns=raw.column_names,
                   cache_file_name=str(cache / f"{key}.arrow") if use_cache else None,
                   load_from_cache_file=use_cache, new_fingerprint=key, desc=f"tokenise {spec.name}")


def check_token_ids(dataset: Any, spec: SourceSpec, vocab_size: int) -> None:
    """Refuse token ids of a pre-tokenised source outside ``0 .. vocab_size - 1`` (they crash the embedding lookup).

    Raises:
        ValueError: naming the source's file, the first document holding a bad id, and the model's vocabulary.
    """
    import pyarrow.compute as pc  # start-up: loaded with datasets, only for tokenised sources

    flat = pc.list_flatten(dataset.data.column(TOKENIZED_COLUMN))
    if len(flat) == 0:
        return
    bounds = pc.min_max(flat)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low >= 0 and high < vocab_size:
        return
    bad = low if low < 0 else high
    position = pc.index(flat, bad).as_py()
    document = int(np.searchsorted(np.cumsum(document_lengths(dataset)), position, side="right"))
    raise ValueError(f"pre-tokenised source {spec.name!r} ({spec.dataset}) holds token id {bad} (document "
                     f"{document}), outside the model's vocabulary of {vocab_size} ids (0 .. {vocab_size - 1}): "
                     "tokenise it with this model's tokenizer")


def document_lengths(dataset: Any) -> np.ndarray:
    """Tokens per document of a tokenised source, from its Arrow list offsets (token ids are not read)."""
    import pyarrow.compute as pc  # start-up: loaded with datasets, only for tokenised sources

    column = dataset.data.column(TOKENIZED_COLUMN)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy()
    return np.asarray(lengths, dtype=np.int64)


def filter_lengths(spec: SourceSpec, lengths: np.ndarray, max_document_tokens: int | None
                    ) -> tuple[np.ndarray, np.ndarray, list[DroppedDocument]]:
    """Indices and (truncated) lengths of the documents of `spec` kept for mixing, and the drops, by index."""
    m = spec.min_document_tokens
    too_short = (lengths > 0) & (lengths < m) if m is not None else np.zeros(len(lengths), bool)
    too_long = lengths > max_document_tokens if max_document_tokens is not None else np.zeros(len(lengths), bool)
    too_long &= ~too_short
    drops = []
    for i, n, short in zip(*(a.tolist() for a in (np.flatnonzero(too_short | too_long),
                                                  lengths[too_short | too_long], too_short[too_short | too_long])),
                           strict=True):
        if short:
            drops.append(DroppedDocument(spec.name, i, n, n, f"shorter than min_document_tokens={m}",
                                         "min_document_tokens"))
        else:
            drops.append(DroppedDocument(spec.name, i, n, n - max_document_tokens,
                                         f"longer than max_document_tokens={max_document_tokens}",
                                         "max_document_tokens"))
    keep = np.flatnonzero(~too_short)
    kept = lengths[keep] if max_document_tokens is None else np.minimum(lengths[keep], max_document_tokens)
    return keep, kept, drops
