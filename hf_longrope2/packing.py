"""Mixed-window packing for LongRoPE2 mid-training: document-masked short rows and continuous long rows.

```python
>>> from hf_longrope2.packing import SourceSpec, build_mixed_dataset, mixture_from_yaml
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
``position_ids`` ([`hf_longrope2.windows.long_window_mask`]), so padding is cut into pseudo-documents of at most
``original_window`` tokens and never selects the long window. Labels are ``-100`` on padding and on the first token of
every document or piece, so nothing is predicted across a boundary. Nothing is dropped silently: the report lists
every dropped or truncated document, and kept plus lost tokens equal the input tokens.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import os
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

from .corpus import describe, load_texts, source_fingerprint
from .losses import IGNORE_INDEX
from .needles import cache_dir, tokenizer_fingerprint

logger = logging.getLogger(__name__)

KINDS = ("short", "long")
ROW_COLUMNS = ("input_ids", "labels", "position_ids", "seq_lengths", "kind")
TOKENIZED_COLUMN = "input_ids"
TOKENIZED_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
DEFAULT_SOURCE = "documents"
CACHE_VERSION = 1
UNITS = ("document", "paragraph", "line")


@dataclass
class SourceSpec:
    """One data source of a mixture.

    Args:
        dataset (`str`): A Hub dataset id, a local file or directory, or ``builtin:pydoc`` / ``builtin:stdlib``
            (as in [`hf_longrope2.corpus.load_texts`]).
        weight (`float`): Relative share of the mixture's tokens.
        split (`str`): Hub dataset split. text_column (`str`): Column holding the text.
        dataset_config (`str`, *optional*): Hub dataset configuration.
        tokenized (`bool`): The source is pre-tokenised: its ``input_ids`` column holds token id lists
            (local ``.jsonl`` / ``.json`` / ``.parquet`` files or a Hub dataset).
        max_documents (`int`, *optional*): Use only the first this many documents.
        name (`str`, *optional*): Name in reports; defaults to `dataset`.
        unit (`str`): ``document`` (default), or ``paragraph`` / ``line`` to split each text at blank lines /
            newlines into separate documents (short-window material from long texts, e.g. for tiny models).
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

    def __post_init__(self) -> None:
        self.name = self.dataset if self.name is None else self.name
        w, n = self.weight, self.max_documents
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
        }
        for attr, (ok, accepted) in checks.items():
            if not ok:
                raise ValueError(f"SourceSpec.{attr} must be {accepted}, got {getattr(self, attr)!r}")
        self.weight = float(w)


def _check_unique(specs: Sequence[SourceSpec]) -> None:
    repeated = sorted(name for name, count in Counter(s.name for s in specs).items() if count > 1)
    if repeated:
        raise ValueError(f"source names must be unique, {repeated} repeat; give repeated datasets distinct `name`s")


def mixture_from_yaml(value: str | os.PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[SourceSpec]:
    """Sources from a YAML file, or from its parsed content: a list of mappings or a mapping with a ``sources`` list.

    Each mapping's keys are [`SourceSpec`] fields; unknown keys raise a `ValueError` naming them.
    """
    if isinstance(value, str | os.PathLike):
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"mixture file {str(path)!r} does not exist; expected a YAML list of sources")
        import yaml

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
    _check_unique(specs)
    return specs


@dataclass(frozen=True)
class Document:
    """Token ids of one document and where it came from (`index`: its position in its source)."""

    source: str
    index: int
    token_ids: Sequence[int]


@dataclass(frozen=True)
class DroppedDocument:
    """A document, or the part of one, that is not in the rows.

    `length` is the document's length when it was dropped, `lost_tokens` how many of its tokens this entry removed,
    `category` one of ``empty``, ``max_document_tokens``, ``mixture``, ``tail``, ``short_fraction``.
    """

    source: str
    index: int
    length: int
    lost_tokens: int
    reason: str
    category: str


class Piece(NamedTuple):
    source: str
    index: int
    document_length: int
    tokens: int


@dataclass
class PackedRow:
    """One row of exactly ``target_length`` tokens; `pieces` describes its real segments (padding follows them)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    seq_lengths: list[int]
    kind: str
    pieces: list[Piece]

    @property
    def real_tokens(self) -> int:
        return sum(p.tokens for p in self.pieces)


@dataclass
class PackingReport:
    """What packing kept, per kind and per source, and every dropped or truncated document."""

    original_window: int
    target_length: int
    input_tokens: int = 0
    input_documents: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    real_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    padding_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    source_input_tokens: dict[str, int] = field(default_factory=dict)
    source_tokens: dict[str, int] = field(default_factory=dict)
    source_documents: dict[str, int] = field(default_factory=dict)
    dropped: list[DroppedDocument] = field(default_factory=list)
    short_fraction_target: float | None = None

    @property
    def kept_tokens(self) -> int:
        return sum(self.real_tokens.values())

    @property
    def lost_tokens(self) -> int:
        return sum(d.lost_tokens for d in self.dropped)

    @property
    def short_fraction(self) -> float:
        return self.real_tokens["short"] / self.kept_tokens if self.kept_tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field plus ``kept_tokens``, ``lost_tokens``, ``short_fraction`` and ``tokens`` per kind."""
        tokens = {k: {"real": self.real_tokens[k], "padding": self.padding_tokens[k]} for k in KINDS}
        return {**asdict(self), "kept_tokens": self.kept_tokens, "lost_tokens": self.lost_tokens,
                "short_fraction": self.short_fraction, "tokens": tokens}

    def summary(self) -> str:
        """A few human-readable lines."""
        target = "" if self.short_fraction_target is None else f" (target {self.short_fraction_target:.3f})"
        lines = [
            f"packed {sum(self.rows.values())} rows of {self.target_length} tokens (original window "
            f"{self.original_window}) from {self.input_tokens} tokens in {self.input_documents} documents",
            *(f"  {k}: {self.rows[k]} rows, {self.real_tokens[k]} tokens + {self.padding_tokens[k]} padding"
              for k in KINDS),
            f"  short fraction {self.short_fraction:.3f}{target}",
        ]
        for name, total in self.source_input_tokens.items():
            kept = self.source_tokens.get(name, 0)
            share = kept / self.kept_tokens if self.kept_tokens else 0.0
            lines.append(f"  source {name}: {kept} of {total} tokens kept ({share:.1%} of the rows), "
                         f"{self.source_documents.get(name, 0)} documents")
        lost, count = Counter(), Counter(d.category for d in self.dropped)
        for d in self.dropped:
            lost[d.category] += d.lost_tokens
        detail = ", ".join(f"{c} {lost[c]} tokens ({count[c]})" for c in sorted(count)) or "none"
        lines.append(f"  dropped or truncated: {self.lost_tokens} tokens in {len(self.dropped)} entries: {detail}")
        return "\n".join(lines)


def _check_settings(original_window: int, target_length: int, max_document_tokens: int | None,
                    short_fraction: float | None) -> None:
    if not isinstance(original_window, int) or original_window < 1:
        raise ValueError(f"original_window must be a positive integer, got {original_window!r}")
    if not isinstance(target_length, int) or target_length <= original_window:
        raise ValueError(f"target_length must be an integer > original_window ({original_window}), "
                         f"got {target_length!r}")
    if max_document_tokens is not None and (not isinstance(max_document_tokens, int) or max_document_tokens < 1):
        raise ValueError(f"max_document_tokens must be a positive integer or None, got {max_document_tokens!r}")
    if short_fraction is not None and not 0.0 <= short_fraction <= 1.0:
        raise ValueError(f"short_fraction must be in [0, 1] or None, got {short_fraction!r}")


def _as_documents(documents: Any) -> list[Document]:
    if isinstance(documents, Mapping):
        return [Document(name, i, ids) for name, docs in documents.items() for i, ids in enumerate(docs)]
    documents = list(documents)
    if documents and isinstance(documents[0], Document):
        return documents
    return [Document(DEFAULT_SOURCE, i, ids) for i, ids in enumerate(documents)]


def mix_sources(
    per_source_docs: Mapping[str, Sequence[Sequence[int]]], weights: Mapping[str, float], seed: int = 0
) -> tuple[list[Document], list[DroppedDocument]]:
    """Take from every source the most tokens such that token shares follow `weights`, without oversampling.

    The source with the fewest tokens per unit of weight is used whole and sets the scale; the others take whole
    documents, in a seeded shuffled order, while they fit their budget. Returns `(documents, dropped)`: what is left
    out is dropped "over the mixture weight".
    """
    if set(per_source_docs) != set(weights):
        raise ValueError(f"weights name the sources {sorted(weights)} but the documents come from "
                         f"{sorted(per_source_docs)}")
    bad = {n: w for n, w in weights.items() if not 0 < w < math.inf}
    totals = {name: sum(len(d) for d in docs) for name, docs in per_source_docs.items()}
    empty = sorted(n for n, t in totals.items() if t == 0)
    if bad or empty:
        raise ValueError(f"every source needs a positive finite weight and some tokens; bad weights {bad}, "
                         f"sources without tokens {empty}")
    exact = {name: Fraction(w) for name, w in weights.items()}
    limit = min(totals, key=lambda n: (Fraction(totals[n]) / exact[n], n))
    documents, dropped = [], []
    for name in sorted(per_source_docs):
        docs = per_source_docs[name]
        budget = Fraction(totals[limit]) * exact[name] / exact[limit]
        order = list(range(len(docs)))
        random.Random(f"{seed}:{name}").shuffle(order)
        used = 0
        for i in order:
            n = len(docs[i])
            if used + n <= budget:
                used += n
                documents.append(Document(name, i, docs[i]))
            else:
                dropped.append(DroppedDocument(name, i, n, n, "over the mixture weight", "mixture"))
    return documents, dropped


def _truncate(doc: Document, limit: int | None) -> tuple[Document, list[DroppedDocument]]:
    n = len(doc.token_ids)
    if limit is None or n <= limit:
        return doc, []
    cut = DroppedDocument(doc.source, doc.index, n, n - limit, f"longer than max_document_tokens={limit}",
                          "max_document_tokens")
    return Document(doc.source, doc.index, doc.token_ids[:limit]), [cut]


def _best_fit_decreasing(items: list[tuple[int, Any]], capacity: int) -> list[list[Any]]:
    """Bins of `(size, payload)` items, placed largest first into the fullest bin they fit."""
    bins: list[list[Any]] = []
    free: list[tuple[int, int]] = []  # (free space, bin), sorted
    for size, payload in items:
        at = bisect.bisect_left(free, (size, -1))
        if at == len(free):
            bins.append([payload])
            space, b = capacity - size, len(bins) - 1
        else:
            space, b = free.pop(at)
            bins[b].append(payload)
            space -= size
        if space > 0:
            bisect.insort(free, (space, b))
    return bins


def _largest_first(item: tuple[int, tuple[Document, int, int]]) -> tuple[int, str, int]:
    return -item[0], item[1][0].source, item[1][0].index


def _make_row(kind: str, parts: list[tuple[Document, int, int]], length: int, window: int, pad: int) -> PackedRow:
    """A row from `(document, start, stop)` slices, padded with pseudo-documents of at most `window` tokens."""
    ids, labels, positions, seq_lengths, pieces = [], [], [], [], []
    for doc, start, stop in parts:
        chunk = [int(t) for t in doc.token_ids[start:stop]]
        ids += chunk
        labels += [IGNORE_INDEX, *chunk[1:]]
        positions += range(len(chunk))
        seq_lengths.append(len(chunk))
        pieces.append(Piece(doc.source, doc.index, len(doc.token_ids), len(chunk)))
    while (left := length - len(ids)) > 0:
        k = min(left, window)
        ids += [pad] * k
        labels += [IGNORE_INDEX] * k
        positions += range(k)
        seq_lengths.append(k)
    return PackedRow(ids, labels, positions, seq_lengths, kind, pieces)


def _balance(
    rows: list[PackedRow], short_fraction: float, seed: int
) -> tuple[list[PackedRow], list[DroppedDocument]]:
    """Drop rows of the over-represented kind, in a seeded order, while that brings the short fraction closer."""
    tokens = {k: sum(r.real_tokens for r in rows if r.kind == k) for k in KINDS}
    total = tokens["short"] + tokens["long"]
    if total == 0 or tokens["short"] == short_fraction * total:
        return rows, []
    over = "short" if tokens["short"] > short_fraction * total else "long"
    under = "long" if over == "short" else "short"
    goal = short_fraction if over == "short" else 1.0 - short_fraction  # wanted share of the over-represented kind
    if tokens[under] == 0 and goal > 0:
        logger.warning("short_fraction=%s cannot be met without %s rows; keeping every row", short_fraction, under)
        return rows, []

    def distance(have: int) -> float:  # how far the share is from the goal; no rows left of either kind is worst
        return abs(have / (have + tokens[under]) - goal) if have + tokens[under] else math.inf

    candidates = [i for i, r in enumerate(rows) if r.kind == over]
    random.Random(seed).shuffle(candidates)
    have, removed = tokens[over], set()
    for i in candidates:
        if distance(have - rows[i].real_tokens) < distance(have) or (goal == 0 and tokens[under] == 0):
            have -= rows[i].real_tokens
            removed.add(i)
    reason = f"{over} row dropped to meet short_fraction={short_fraction}"
    dropped = [DroppedDocument(p.source, p.index, p.document_length, p.tokens, reason, "short_fraction")
               for i in sorted(removed) for p in rows[i].pieces]
    return [r for i, r in enumerate(rows) if i not in removed], dropped


def pack_mixed_windows(
    documents: Sequence[Sequence[int]] | Mapping[str, Sequence[Sequence[int]]] | Sequence[Document],
    *,
    original_window: int,
    target_length: int,
    pad_token_id: int,
    max_document_tokens: int | None = None,
    short_fraction: float | None = None,
    seed: int = 0,
    dropped: Sequence[DroppedDocument] = (),
) -> tuple[list[PackedRow], PackingReport]:
    """Pack token id documents into short- and long-window rows of exactly `target_length` tokens.

    Args:
        documents: Token id lists (source ``"documents"``), a mapping source name -> lists, or [`Document`]s.
        original_window (`int`): The model's original context window; longer documents get long rows.
        target_length (`int`): Tokens per row (> `original_window`).
        pad_token_id (`int`): Id that fills the end of rows.
        max_document_tokens (`int`, *optional*): Truncate longer documents (reported).
        short_fraction (`float`, *optional*): Wanted fraction of non-padding tokens in short rows; rows of the
            over-represented kind are dropped (seeded, reported) to come as close as possible.
        seed (`int`): Seed for the rows dropped by `short_fraction`.
        dropped: Documents already dropped upstream (e.g. by [`mix_sources`]); they count as input and are reported.

    Returns:
        `(rows, report)`: short rows, then full long rows, then packed long rows.
    """
    _check_settings(original_window, target_length, max_document_tokens, short_fraction)
    docs, drops = _as_documents(documents), list(dropped)
    report = PackingReport(original_window, target_length, short_fraction_target=short_fraction)
    for name, n in [(d.source, len(d.token_ids)) for d in docs] + [(d.source, d.lost_tokens) for d in drops]:
        report.source_input_tokens[name] = report.source_input_tokens.get(name, 0) + n
    report.input_tokens = sum(report.source_input_tokens.values())
    report.input_documents = len({(d.source, d.index) for d in docs} | {(d.source, d.index) for d in drops})
    window, length = original_window, target_length
    short_items, long_items, full_rows = [], [], []
    for doc in sorted(docs, key=lambda d: (d.source, d.index)):
        n = len(doc.token_ids)
        if n == 0:
            drops.append(DroppedDocument(doc.source, doc.index, 0, 0, "empty document", "empty"))
            continue
        doc, cut = _truncate(doc, max_document_tokens)
        drops += cut
        n = len(doc.token_ids)
        if n <= window:
            short_items.append((n, (doc, 0, n)))
            continue
        full_rows += [[(doc, start, start + length)] for start in range(0, n - length + 1, length)]
        tail = n % length
        if tail > window:
            long_items.append((tail, (doc, n - tail, n)))
        elif tail:
            reason = f"tail of {tail} tokens <= original window ({window})"
            drops.append(DroppedDocument(doc.source, doc.index, n, tail, reason, "tail"))
    rows = [_make_row("short", b, length, window, pad_token_id)
            for b in _best_fit_decreasing(sorted(short_items, key=_largest_first), length)]
    rows += [_make_row("long", parts, length, window, pad_token_id) for parts in full_rows]
    rows += [_make_row("long", b, length, window, pad_token_id)
             for b in _best_fit_decreasing(sorted(long_items, key=_largest_first), length)]
    if short_fraction is not None:
        rows, balance_drops = _balance(rows, short_fraction, seed)
        drops += balance_drops
    kept_docs = set()
    for row in rows:
        report.rows[row.kind] += 1
        report.real_tokens[row.kind] += row.real_tokens
        report.padding_tokens[row.kind] += length - row.real_tokens
        for p in row.pieces:
            report.source_tokens[p.source] = report.source_tokens.get(p.source, 0) + p.tokens
            kept_docs.add((p.source, p.index))
    report.source_documents = dict(Counter(source for source, _ in kept_docs))
    report.dropped = drops
    return rows, report


def _with_eos(ids: Sequence[int], eos: int | None) -> list[int]:
    ids = list(ids)
    return ids + [eos] if eos is not None and ids and ids[-1] != eos else ids


def _tokenize_batch(batch: dict[str, list], tokenizer: Any = None, eos: int | None = None) -> dict[str, list]:
    """Token ids of a batch of texts (or of pre-tokenised documents when `tokenizer` is None), ending in `eos`."""
    if tokenizer is None:
        encoded = batch[TOKENIZED_COLUMN]
    else:
        encoded = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
    return {TOKENIZED_COLUMN: [_with_eos(ids, eos) for ids in encoded]}


def _load_pretokenized(spec: SourceSpec, cache: Path) -> Any:
    import datasets

    path = Path(spec.dataset).expanduser()
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
        ds = datasets.load_dataset(spec.dataset, spec.dataset_config, split=spec.split)
    if TOKENIZED_COLUMN not in ds.column_names:
        raise ValueError(f"pre-tokenised source {spec.name!r} needs an {TOKENIZED_COLUMN!r} column; "
                         f"found {ds.column_names}")
    ds = ds.select_columns([TOKENIZED_COLUMN])
    return ds.select(range(min(spec.max_documents, len(ds)))) if spec.max_documents else ds


def tokenize_source(tokenizer: Any, spec: SourceSpec, *, num_proc: int = 1, append_eos: bool = True,
                    use_cache: bool = True) -> Any:
    """The documents of `spec` as a `datasets.Dataset` with one ``input_ids`` column, cached on disk.

    The cache file (under ``cache_dir() / "packing"``) is named by a hash of the tokenizer, the source's fingerprint
    and these settings, so a second call reads it instead of tokenising again. EOS is appended to every non-empty
    document that does not already end with it when `append_eos` and the tokenizer has one.
    """
    import datasets

    eos = tokenizer.eos_token_id if append_eos else None
    column = TOKENIZED_COLUMN if spec.tokenized else spec.text_column
    settings = {
        "version": CACHE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer), "eos": eos,
        "source": source_fingerprint(spec.dataset, split=spec.split, text_column=column,
                                     config_name=spec.dataset_config),
        "path": str(path.resolve()) if (path := Path(spec.dataset).expanduser()).exists() else None,
        **{k: v for k, v in asdict(spec).items() if k not in ("weight", "name")},
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    cache = cache_dir() / "packing"
    cache.mkdir(parents=True, exist_ok=True)
    if spec.tokenized:
        raw, kwargs = _load_pretokenized(spec, cache), {"eos": eos}
    else:
        texts = load_texts(spec.dataset, split=spec.split, text_column=spec.text_column,
                           config_name=spec.dataset_config, max_documents=spec.max_documents)
        if spec.unit != "document":
            separator = re.compile(r"\n\s*\n" if spec.unit == "paragraph" else r"\n")
            texts = [piece.strip() for text in texts for piece in separator.split(text) if piece.strip()]
        raw, kwargs = datasets.Dataset.from_dict({"text": texts}), {"tokenizer": tokenizer, "eos": eos}
    if len(raw) == 0:
        raise ValueError(f"source {spec.name!r} ({describe(spec.dataset, spec.split, column)}) has no documents")
    return raw.map(_tokenize_batch, batched=True, num_proc=num_proc if num_proc > 1 else None, fn_kwargs=kwargs,
                   remove_columns=raw.column_names, cache_file_name=str(cache / f"{key}.arrow") if use_cache else None,
                   load_from_cache_file=use_cache, new_fingerprint=key, desc=f"tokenise {spec.name}")


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
) -> tuple[Any, PackingReport]:
    """Tokenise, mix by weight, pack and shuffle `sources` into mid-training rows.

    Args:
        tokenizer: A Hugging Face tokenizer. sources: The mixture ([`SourceSpec`], see [`mixture_from_yaml`]).
        original_window, target_length, short_fraction, max_document_tokens: See [`pack_mixed_windows`].
        seed (`int`): Fixes the mixture's document choice, the rows dropped for `short_fraction` and the row order.
        num_proc (`int`): Processes for tokenisation. append_eos (`bool`): End every document with EOS.
        pad_token_id (`int`, *optional*): Defaults to the tokenizer's pad, else EOS, token.
        use_cache (`bool`): Reuse / write the tokenised sources under ``cache_dir() / "packing"``.

    Returns:
        `(dataset, report)`: a `datasets.Dataset` with columns ``input_ids``, ``labels``, ``position_ids``,
        ``seq_lengths``, ``kind`` (``"short"`` / ``"long"``) in a seeded order, and the [`PackingReport`].
    """
    import datasets

    sources = list(sources)
    if not sources or not all(isinstance(s, SourceSpec) for s in sources):
        raise ValueError(f"sources must be a non-empty list of SourceSpec, got {sources!r}")
    _check_unique(sources)
    _check_settings(original_window, target_length, max_document_tokens, short_fraction)
    pad = next((p for p in (pad_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) if p is not None), None)
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token; pass pad_token_id")
    per_source, drops = {}, []
    for spec in sources:
        ds = tokenize_source(tokenizer, spec, num_proc=num_proc, append_eos=append_eos, use_cache=use_cache)
        docs = ds.data.column(TOKENIZED_COLUMN).to_pylist()
        logger.info("source %s: %d documents, %d tokens", spec.name, len(docs), sum(map(len, docs)))
        cut = [_truncate(Document(spec.name, i, d), max_document_tokens) for i, d in enumerate(docs)]
        per_source[spec.name] = [doc.token_ids for doc, _ in cut]  # truncated before mixing: weights count used tokens
        drops += [d for _, cuts in cut for d in cuts]
    documents, mixture_drops = mix_sources(per_source, {s.name: s.weight for s in sources}, seed)
    rows, report = pack_mixed_windows(documents, original_window=original_window, target_length=target_length,
                                      pad_token_id=pad, max_document_tokens=max_document_tokens,
                                      short_fraction=short_fraction, seed=seed, dropped=drops + mixture_drops)
    random.Random(seed).shuffle(rows)
    ints = datasets.List(datasets.Value("int64"))
    features = datasets.Features({c: ints for c in ROW_COLUMNS[:-1]} | {"kind": datasets.Value("string")})
    table = {c: [getattr(r, c) for r in rows] for c in ROW_COLUMNS}
    logger.info("%s", report.summary())
    return datasets.Dataset.from_dict(table, features=features), report
