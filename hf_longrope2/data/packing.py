"""Mixed-window packing for LongRoPE2 mid-training: document-masked short rows and continuous long rows.

```python
>>> from hf_longrope2.data.mixture import SourceSpec, mixture_from_yaml
>>> from hf_longrope2.data.packing import build_mixed_dataset
>>> sources = [SourceSpec("data/books", weight=3.0), SourceSpec("builtin:pydoc")]  # or mixture_from_yaml(path)
>>> rows, report = build_mixed_dataset(tokenizer, sources, original_window=8192, target_length=131072, seed=0)
>>> rows.column_names
['input_ids', 'labels', 'position_ids', 'seq_lengths', 'kind']
>>> print(report.summary())  # tokens and rows per kind and per source, and everything dropped or truncated
```

Every row holds exactly ``target_length`` tokens (LongRoPE2 section 5). Short rows pack documents of at most
``original_window`` tokens best-fit-decreasing, positions restart at 0 per document, so the model keeps the
original RoPE and document-masks them in padding-free mode. Documents longer than the window become long rows: full
``target_length`` pieces with continuous positions, then the remainder, kept when it is itself longer than the window
(packed best-fit with other such pieces) and dropped otherwise. The model reads the window back from
``position_ids`` ([`hf_longrope2.modeling.windows.long_window_mask`]), so padding is cut into pseudo-documents of at most
``original_window`` tokens and never selects the long window. Labels are ``-100`` on padding and on the first token of
every document or piece, so nothing is predicted across a boundary. Nothing is dropped silently: the report lists
every dropped or truncated document, and kept plus lost tokens equal the input tokens.

It scales to billions of tokens in two steps, and never holds all token ids at once:

1. Plan from lengths only ([`hf_longrope2.data.packing_plan.mix`], [`hf_longrope2.data.packing_plan.plan`]): the
   mixture, the packing and the `short_fraction` choice see one integer per document and produce a [`PackingPlan`],
   rows of pieces ``(source, document index, start, length)`` followed by padding segments.
2. Materialise ([`build_mixed_dataset`]): the rows are written by ``datasets.map`` (``num_proc`` processes) from the
   tokenised, memory-mapped Arrow file of every source ([`tokenize_source`]) to an Arrow file under
   ``cache_dir() / "packing"`` named by a hash of the plan; a second run with the same plan reads it back.

The planner of step 1 lives in [`hf_longrope2.data.packing_plan`], the sources and their tokenisation in
[`hf_longrope2.data.mixture`].
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..losses import IGNORE_INDEX
from ..utils.environment import cache_dir
from . import packing_plan as planner
from .mixture import (
    CACHE_VERSION,
    TOKENIZED_COLUMN,
    SourceSpec,
    check_token_ids,
    check_unique_names,
    document_lengths,
    filter_lengths,
    source_cache_key,
    tokenize_source,
)
from .packing_plan import (
    KINDS,
    PackingPlan,
    PackingReport,
    check_settings,
    mixture_drops,
    padding_lengths,
)

__all__ = [
    "PLAN_COLUMNS",
    "ROW_BATCH_TOKENS",
    "ROW_COLUMNS",
    "build_mixed_dataset",
    "materialise_plan",
]

logger = logging.getLogger(__name__)

ROW_COLUMNS = ("input_ids", "labels", "position_ids", "seq_lengths", "kind")
PLAN_COLUMNS = ("kind", "source", "index", "start", "length")
ROW_BATCH_TOKENS = 1 << 20  # tokens per materialisation batch


# -------------------------------------------------------------------------------------------------- materialising


def _row_arrays(chunks: Sequence[np.ndarray], length: int, window: int, pad: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """input_ids, labels, position_ids and seq_lengths of a row holding `chunks`, then padding."""
    seq = [len(c) for c in chunks]
    real = sum(seq)
    seq += padding_lengths(real, length, window)
    ids = np.full(length, pad, dtype=np.int64)
    if chunks:
        ids[:real] = np.concatenate(chunks)
    starts = np.zeros(len(seq), dtype=np.int64)
    np.cumsum(seq[:-1], out=starts[1:])
    positions = np.arange(length, dtype=np.int64) - np.repeat(starts, seq)
    labels = ids.copy()
    labels[starts[:len(chunks)]] = IGNORE_INDEX
    labels[real:] = IGNORE_INDEX
    return ids, labels, positions, seq


class _TokenReader:
    """Token ids of documents of a tokenised source, read from its (memory-mapped) Arrow table."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._column = None

    def __getstate__(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "_column": None}

    def __call__(self, index: int, start: int, length: int) -> np.ndarray:
        if self._column is None:
            self._column = self.dataset.data.column(TOKENIZED_COLUMN)
        values = self._column[index].values.slice(start, length)
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


def _materialise_rows(batch: dict[str, list], *, readers: Sequence[_TokenReader], original_window: int,
                      target_length: int, pad_token_id: int) -> Any:
    """Rows (an Arrow table of `ROW_COLUMNS`) for a batch of plan rows."""
    import pyarrow as pa  # start-up: loaded with datasets, only when rows are written

    columns: dict[str, list] = {c: [] for c in ROW_COLUMNS[:-1]}
    for sources, indices, starts, lengths in zip(*(batch[c] for c in PLAN_COLUMNS[1:]), strict=True):
        chunks = [readers[s](i, a, n) for s, i, a, n in zip(sources, indices, starts, lengths, strict=True)]
        ids, labels, positions, seq = _row_arrays(chunks, target_length, original_window, pad_token_id)
        for name, values in zip(ROW_COLUMNS[:-1], (ids, labels, positions, np.asarray(seq, np.int64)), strict=True):
            columns[name].append(values)
    arrays = []
    for name in ROW_COLUMNS[:-1]:
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in columns[name]])]).astype(np.int32)
        arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(columns[name]))))
    arrays.append(pa.array([KINDS[k] for k in batch["kind"]], pa.string()))
    return pa.Table.from_arrays(arrays, names=list(ROW_COLUMNS))


def _row_features() -> Any:
    import datasets  # start-up: datasets takes ~1 s to import; only tokenised sources need it

    ints = datasets.List(datasets.Value("int64"))
    return datasets.Features({c: ints for c in ROW_COLUMNS[:-1]} | {"kind": datasets.Value("string")})


def _plan_table(plan: PackingPlan) -> Any:
    import pyarrow as pa  # start-up: loaded with datasets, only when rows are written

    if len(plan.piece_length) >= 1 << 31:
        raise ValueError(f"the plan has {len(plan.piece_length)} pieces; at most 2**31 - 1 fit one Arrow list column")
    offsets = pa.array(plan.row_offsets.astype(np.int32))
    lists = [pa.ListArray.from_arrays(offsets, pa.array(a)) for a in (
        plan.piece_source.astype(np.int32), plan.piece_index, plan.piece_start, plan.piece_length)]
    return pa.Table.from_arrays([pa.array(plan.kinds), *lists], names=list(PLAN_COLUMNS))


def materialise_plan(
    plan: PackingPlan, tokenized: Mapping[str, Any], *, pad_token_id: int, num_proc: int = 1,
    cache_file: str | os.PathLike | None = None,
) -> Any:
    """The rows of `plan` as a `datasets.Dataset` of `ROW_COLUMNS`, read from the tokenised `datasets` per source.

    Rows are written by ``datasets.map`` with `num_proc` processes to `cache_file` (reused when it, or its shards
    for ``num_proc > 1``, exist), or kept in memory when it is None.
    """
    import datasets  # start-up: datasets takes ~1 s to import; only tokenised sources need it
    from datasets.table import InMemoryTable

    features = _row_features()
    if len(plan) == 0:
        return datasets.Dataset.from_dict({c: [] for c in ROW_COLUMNS}, features=features)
    table = _plan_table(plan)
    if cache_file is None:
        plan_ds = datasets.Dataset(InMemoryTable(table))
    else:
        plan_file = Path(cache_file).with_suffix(".plan.arrow")
        if not plan_file.exists():
            import pyarrow as pa  # start-up: loaded with datasets, only when rows are written

            partial = plan_file.with_name(f"{plan_file.name}.{os.getpid()}.tmp")
            with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=1 << 14)
            os.replace(partial, plan_file)
        plan_ds = datasets.Dataset.from_file(str(plan_file))
    del table
    batch = max(1, ROW_BATCH_TOKENS // plan.target_length)
    readers = [_TokenReader(tokenized[name]) for name in plan.sources]
    kwargs = {"readers": readers, "original_window": plan.original_window, "target_length": plan.target_length,
              "pad_token_id": pad_token_id}
    rows = plan_ds.map(
        _materialise_rows, batched=True, batch_size=batch, writer_batch_size=batch, fn_kwargs=kwargs,
        num_proc=num_proc if num_proc > 1 and cache_file is not None else None, features=features,
        remove_columns=plan_ds.column_names, cache_file_name=None if cache_file is None else str(cache_file),
        load_from_cache_file=cache_file is not None, new_fingerprint=f"{plan.fingerprint()[:24]}-{pad_token_id}",
        desc="pack rows",
    )
    return rows.select_columns(list(ROW_COLUMNS))


def build_mixed_dataset(
    tokenizer: Any,
    sources: Sequence[SourceSpec],
    *,
    original_window: int,
    target_length: int,
    seed: int = 0,
    num_proc: int = 1,
    short_fraction: float | None = None,
    max_document_tokens: int | None = None,
    append_eos: bool = True,
    pad_token_id: int | None = None,
    use_cache: bool = True,
    vocab_size: int | None = None,
) -> tuple[Any, PackingReport]:
    """Tokenise, mix by weight, pack and shuffle `sources` into mid-training rows.

    Plans from document lengths ([`hf_longrope2.data.packing_plan.mix`], [`hf_longrope2.data.packing_plan.plan`]), then
    writes the rows from the tokenised
    sources' Arrow files to ``cache_dir() / "packing" / "rows-<plan hash>.arrow"`` (read back by a later call with
    the same plan); the dataset is memory-mapped from there.

    Args:
        tokenizer: A Hugging Face tokenizer. sources: The mixture ([`SourceSpec`], see [`mixture_from_yaml`]).
        original_window (`int`): The model's original context window; longer documents get long rows.
        target_length (`int`): Tokens per row (> `original_window`).
        short_fraction (`float`, *optional*): Wanted fraction of non-padding tokens in short rows; rows of the
            over-represented kind are dropped (seeded, reported) to come as close as possible.
        max_document_tokens (`int`, *optional*): Truncate longer documents (reported).
        seed (`int`): Fixes the mixture's document choice, the rows dropped for `short_fraction` and the row order.
        num_proc (`int`): Processes for tokenisation and for writing rows. append_eos (`bool`): End every document
            with EOS.
        pad_token_id (`int`, *optional*): Defaults to the tokenizer's pad, else EOS, token.
        use_cache (`bool`): Reuse / write the tokenised sources and the rows under ``cache_dir() / "packing"``;
            False keeps them in memory.
        vocab_size (`int`, *optional*): The model's number of input embeddings: a pre-tokenised source holding an
            id outside ``0 .. vocab_size - 1`` is refused before anything is packed.

    Returns:
        `(dataset, report)`: a `datasets.Dataset` with columns ``input_ids``, ``labels``, ``position_ids``,
        ``seq_lengths``, ``kind`` (``"short"`` / ``"long"``) in a seeded order, and the [`PackingReport`].
    """
    sources = list(sources)
    if not sources or not all(isinstance(s, SourceSpec) for s in sources):
        raise ValueError(f"sources must be a non-empty list of SourceSpec, got {sources!r}")
    check_unique_names(sources)
    check_settings(original_window, target_length, max_document_tokens, short_fraction)
    pad = next((p for p in (pad_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) if p is not None), None)
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token; pass pad_token_id")
    tokenized, keys, lengths, indices, drops = {}, {}, {}, {}, []
    for spec in sources:
        ds = tokenize_source(tokenizer, spec, num_proc=num_proc, append_eos=append_eos, use_cache=use_cache)
        if spec.tokenized and vocab_size is not None:
            check_token_ids(ds, spec, vocab_size)
        tokenized[spec.name] = ds
        keys[spec.name] = source_cache_key(tokenizer, spec, tokenizer.eos_token_id if append_eos else None)
        n = document_lengths(ds)
        logger.info("source %s: %d documents, %d tokens", spec.name, len(n), int(n.sum()))
        # filtered and truncated before mixing: the weights count the tokens used
        indices[spec.name], lengths[spec.name], cut = filter_lengths(spec, n, max_document_tokens)
        drops += cut
        if spec.min_document_tokens is not None and not lengths[spec.name].any():
            raise ValueError(f"source {spec.name!r} has no document of at least min_document_tokens="
                             f"{spec.min_document_tokens} tokens")
    kept, dropped = planner.mix(lengths, {s.name: s.weight for s in sources}, seed)
    names = sorted(lengths)
    for name in names:
        drops += mixture_drops(name, indices[name][dropped[name]], lengths[name][dropped[name]])
        kept[name] = np.sort(kept[name])
    source = np.repeat(np.arange(len(names), dtype=np.int32), [len(kept[n]) for n in names])
    index = np.concatenate([indices[n][kept[n]] for n in names])
    length = np.concatenate([lengths[n][kept[n]] for n in names])
    del lengths, indices
    plan, report, _ = planner.plan(names, source, index, length, original_window=original_window,
                            target_length=target_length, max_document_tokens=max_document_tokens,
                            short_fraction=short_fraction, seed=seed, dropped=drops)
    order = list(range(len(plan)))
    random.Random(seed).shuffle(order)
    plan = plan.take(order)
    logger.info("%s", report.summary())
    settings = {"version": CACHE_VERSION, "pad": pad, "sources": {name: keys[name] for name in names},
                "plan": plan.fingerprint()}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    cache = cache_dir() / "packing"
    rows = materialise_plan(plan, tokenized, pad_token_id=pad, num_proc=num_proc,
                            cache_file=cache / f"rows-{key}.arrow" if use_cache else None)
    return rows, report
