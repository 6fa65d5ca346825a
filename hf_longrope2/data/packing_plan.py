"""The length planner of mixed-window packing: mixtures and packing plans from document lengths alone.

```python
>>> from hf_longrope2.data.packing_plan import mix, plan
>>> lengths = {"books": np.array([9000, 300, 40000, 2000]), "code": np.array([120, 800, 5000])}
>>> kept, dropped = mix(lengths, {"books": 3.0, "code": 1.0}, seed=0)  # document positions per source
>>> names = sorted(lengths)                                               # then as parallel arrays, one per document
>>> source = np.repeat(np.arange(len(names)), [len(kept[n]) for n in names])
>>> index = np.concatenate([np.sort(kept[n]) for n in names])
>>> length = np.concatenate([lengths[n][np.sort(kept[n])] for n in names])
>>> rows, report, _ = plan(names, source, index, length, original_window=8192, target_length=32768,
...                        max_document_tokens=None, short_fraction=None, seed=0, dropped=[])
>>> [rows.kind(r) for r in range(len(rows))], rows.pieces(0)[0]
(['short', 'long'], PlanPiece(source='code', index=2, start=0, length=5000))
```

This is what [`hf_longrope2.data.packing.build_mixed_dataset`] runs on the lengths of its tokenised sources.

Step 1 of [`hf_longrope2.data.packing`]: the mixture, the packing and the `short_fraction` choice see one integer per
document and produce a [`PackingPlan`] (rows of pieces ``(source, document index, start, length)`` followed by
padding segments) and a [`PackingReport`] (what was kept, and every dropped or truncated document). Only numpy, no
token ids: [`hf_longrope2.data.packing.materialise_plan`] writes the rows.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

KINDS = ("short", "long")
_KEY = 1 << 40  # (source, index) -> source * _KEY + index


@dataclass(frozen=True, slots=True)
class DroppedDocument:
    """A document, or the part of one, that is not in the rows.

    `length` is the document's length when it was dropped, `lost_tokens` how many of its tokens this entry removed,
    `category` one of ``empty``, ``min_document_tokens``, ``max_document_tokens``, ``mixture``, ``tail``,
    ``short_fraction``.
    """

    source: str
    index: int
    length: int
    lost_tokens: int
    reason: str
    category: str


class PlanPiece(NamedTuple):
    """Tokens ``[start, start + length)`` of document `index` of `source`."""

    source: str
    index: int
    start: int
    length: int


def padding_lengths(real: int, length: int, window: int) -> list[int]:
    """Padding segments after `real` tokens: pseudo-documents of `window` tokens, then the rest."""
    left = length - real
    return [window] * (left // window) + ([left % window] if left % window else [])


def _gather(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the items of `rows` (in that order) in ragged arrays with `offsets`, and the new offsets."""
    counts = (offsets[1:] - offsets[:-1])[rows]
    new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    positions = np.arange(new_offsets[-1], dtype=np.int64) + np.repeat(offsets[rows] - new_offsets[:-1], counts)
    return positions, new_offsets


@dataclass(frozen=True, eq=False)
class PackingPlan:
    """Rows as pieces of documents, made from document lengths only; see [`plan`].

    Row ``r`` has kind ``KINDS[kinds[r]]`` and the pieces ``row_offsets[r]`` to ``row_offsets[r + 1]`` (exclusive) of
    the ``piece_*`` arrays: tokens ``[piece_start, piece_start + piece_length)`` of document ``piece_index`` of
    source ``sources[piece_source]``, whose (possibly truncated) length is ``piece_document_length``. Padding
    segments of at most `original_window` tokens fill every row to `target_length` ([`seq_lengths`]).
    """

    sources: tuple[str, ...]
    original_window: int
    target_length: int
    kinds: np.ndarray
    row_offsets: np.ndarray
    piece_source: np.ndarray
    piece_index: np.ndarray
    piece_start: np.ndarray
    piece_length: np.ndarray
    piece_document_length: np.ndarray

    def __len__(self) -> int:
        return len(self.kinds)

    def kind(self, row: int) -> str:
        return KINDS[self.kinds[row]]

    def pieces(self, row: int) -> list[PlanPiece]:
        span = slice(self.row_offsets[row], self.row_offsets[row + 1])
        return [PlanPiece(self.sources[s], i, a, n) for s, i, a, n in zip(
            self.piece_source[span].tolist(), self.piece_index[span].tolist(), self.piece_start[span].tolist(),
            self.piece_length[span].tolist(), strict=True)]

    def real_tokens(self) -> np.ndarray:
        """Non-padding tokens per row."""
        total = np.zeros(len(self.piece_length) + 1, dtype=np.int64)
        np.cumsum(self.piece_length, out=total[1:])
        return total[self.row_offsets[1:]] - total[self.row_offsets[:-1]]

    def seq_lengths(self, row: int) -> list[int]:
        """The row's segment lengths: its pieces, then its padding segments."""
        real = self.piece_length[self.row_offsets[row]:self.row_offsets[row + 1]].tolist()
        return real + padding_lengths(sum(real), self.target_length, self.original_window)

    def take(self, rows: Sequence[int] | np.ndarray) -> PackingPlan:
        """The plan of these rows, in this order."""
        rows = np.asarray(rows, dtype=np.int64)
        positions, offsets = _gather(self.row_offsets, rows)
        return PackingPlan(self.sources, self.original_window, self.target_length, self.kinds[rows], offsets,
                           *(a[positions] for a in (self.piece_source, self.piece_index, self.piece_start,
                                                    self.piece_length, self.piece_document_length)))

    def fingerprint(self) -> str:
        """sha256 hex digest of the sources, settings and every row's pieces."""
        digest = hashlib.sha256(json.dumps([self.sources, self.original_window, self.target_length]).encode())
        for array, dtype in ((self.kinds, np.int8), (self.row_offsets, np.int64), (self.piece_source, np.int32),
                             (self.piece_index, np.int64), (self.piece_start, np.int64),
                             (self.piece_length, np.int64)):
            digest.update(memoryview(np.ascontiguousarray(array, dtype=dtype)).cast("B"))
        return digest.hexdigest()


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


def check_settings(original_window: int, target_length: int, max_document_tokens: int | None,
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


def _sum_by(keys: np.ndarray, values: np.ndarray, count: int) -> list[int]:
    """Per-key sums of integer `values` (exact below 2**53)."""
    if not len(keys):
        return [0] * count
    return [int(round(x)) for x in np.bincount(keys, weights=values, minlength=count)]


# ---------------------------------------------------------------------------------------------------------- mixing


def mix(lengths: Mapping[str, np.ndarray], weights: Mapping[str, float], seed: int
         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Positions kept and dropped per source, each in the seeded visiting order; without oversampling.

    Takes from every source the most tokens such that token shares follow `weights`: the source with the fewest
    tokens per unit of weight is used whole and sets the scale; the others take whole documents, in a seeded shuffled
    order, while they fit their budget ([`mixture_drops`] reports the rest).
    """
    if set(lengths) != set(weights):
        raise ValueError(f"weights name the sources {sorted(weights)} but the documents come from "
                         f"{sorted(lengths)}")
    bad = {n: w for n, w in weights.items() if not 0 < w < math.inf}
    totals = {name: int(n.sum()) for name, n in lengths.items()}
    empty = sorted(n for n, t in totals.items() if t == 0)
    if bad or empty:
        raise ValueError(f"every source needs a positive finite weight and some tokens; bad weights {bad}, "
                         f"sources without tokens {empty}")
    exact = {name: Fraction(w) for name, w in weights.items()}
    limit = min(totals, key=lambda n: (Fraction(totals[n]) / exact[n], n))
    kept, dropped = {}, {}
    for name in sorted(lengths):
        budget = math.floor(Fraction(totals[limit]) * exact[name] / exact[limit])  # used + n <= budget, all ints
        order = list(range(len(lengths[name])))
        random.Random(f"{seed}:{name}").shuffle(order)
        order = np.asarray(order, dtype=np.int64)
        sizes = lengths[name][order]
        take = np.zeros(len(order), dtype=bool)
        fits = np.cumsum(sizes) <= budget  # the longest prefix that fits is taken whole
        head = int(np.argmin(fits)) if not fits.all() else len(order)
        take[:head] = True
        used = int(sizes[:head].sum())
        positive = sizes[head:][sizes[head:] > 0]
        smallest = int(positive.min()) if len(positive) else 0
        at = head
        for n in sizes[head:].tolist():
            if budget - used < smallest:  # only empty documents fit from here on
                break
            if used + n <= budget:
                used += n
                take[at] = True
            at += 1
        take[at:] |= sizes[at:] <= budget - used
        kept[name], dropped[name] = order[take], order[~take]
    return kept, dropped


def mixture_drops(name: str, index: np.ndarray, lengths: np.ndarray) -> list[DroppedDocument]:
    """The documents `index` (of `lengths`) of source `name` that [`mix`] left out, as dropped "over the mixture weight"."""
    return [DroppedDocument(name, i, n, n, "over the mixture weight", "mixture")
            for i, n in zip(index.tolist(), lengths.tolist(), strict=True)]


# -------------------------------------------------------------------------------------------------------- planning


def _best_fit_decreasing(sizes: np.ndarray, capacity: int) -> np.ndarray:
    """Bin of every item (`sizes` sorted largest first), placed into the fullest bin it fits, lowest bin on ties."""
    scale = len(sizes) + 1  # free bins are ints space * scale + bin: sorted as (space, bin)
    bins = np.empty(len(sizes), dtype=np.int64)
    free: list[int] = []
    count = 0
    for lo in range(0, len(sizes), 1 << 16):
        chunk = sizes[lo:lo + (1 << 16)].tolist()
        placed = []
        for size in chunk:
            at = bisect.bisect_left(free, size * scale)
            if at == len(free):
                b, space = count, capacity - size
                count += 1
            else:
                space, b = divmod(free.pop(at), scale)
                space -= size
            placed.append(b)
            if space > 0:
                bisect.insort(free, space * scale + b)
        bins[lo:lo + len(chunk)] = placed
    return bins


def _bins_to_rows(items: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`items` grouped by bin, keeping their order inside a bin, and the number of items per bin."""
    return items[np.argsort(bins, kind="stable")], np.bincount(bins) if len(bins) else np.zeros(0, np.int64)


def _balance(plan: PackingPlan, short_fraction: float, seed: int) -> tuple[np.ndarray, list[DroppedDocument]]:
    """Rows kept, dropping rows of the over-represented kind, in a seeded order, while that brings the short
    fraction closer; and the dropped pieces."""
    real = plan.real_tokens().tolist()
    kinds = plan.kinds.tolist()
    everything = np.arange(len(plan))
    tokens = {k: sum(r for r, kind in zip(real, kinds, strict=True) if KINDS[kind] == k) for k in KINDS}
    total = tokens["short"] + tokens["long"]
    if total == 0 or tokens["short"] == short_fraction * total:
        return everything, []
    over = "short" if tokens["short"] > short_fraction * total else "long"
    under = "long" if over == "short" else "short"
    goal = short_fraction if over == "short" else 1.0 - short_fraction  # wanted share of the over-represented kind
    if tokens[under] == 0 and goal > 0:
        logger.warning("short_fraction=%s cannot be met without %s rows; keeping every row", short_fraction, under)
        return everything, []

    def distance(have: int) -> float:  # how far the share is from the goal; no rows left of either kind is worst
        return abs(have / (have + tokens[under]) - goal) if have + tokens[under] else math.inf

    candidates = [i for i, kind in enumerate(kinds) if KINDS[kind] == over]
    random.Random(seed).shuffle(candidates)
    have, removed = tokens[over], set()
    for i in candidates:
        if distance(have - real[i]) < distance(have) or (goal == 0 and tokens[under] == 0):
            have -= real[i]
            removed.add(i)
    reason = f"{over} row dropped to meet short_fraction={short_fraction}"
    gone = plan.take(sorted(removed))
    dropped = [DroppedDocument(plan.sources[s], i, n, k, reason, "short_fraction") for s, i, n, k in zip(
        gone.piece_source.tolist(), gone.piece_index.tolist(), gone.piece_document_length.tolist(),
        gone.piece_length.tolist(), strict=True)]
    return np.asarray([i for i in range(len(plan)) if i not in removed], dtype=np.int64), dropped


def _count_inputs(report: PackingReport, names: tuple[str, ...], source: np.ndarray, index: np.ndarray,
                  length: np.ndarray, drops: list[DroppedDocument]) -> None:
    """Tokens per source and documents in the input, counting documents the mixture already dropped."""
    present = np.bincount(source, minlength=len(names)) > 0 if len(source) else np.zeros(len(names), bool)
    for name, total, has in zip(names, _sum_by(source, length, len(names)), present.tolist(), strict=True):
        if has:
            report.source_input_tokens[name] = total
    ids = {name: i for i, name in enumerate(names)}
    drop_keys = np.fromiter((ids.setdefault(d.source, len(ids)) * _KEY + d.index for d in drops), np.int64,
                            len(drops))
    for d in drops:
        report.source_input_tokens[d.source] = report.source_input_tokens.get(d.source, 0) + d.lost_tokens
    report.input_tokens = sum(report.source_input_tokens.values())
    report.input_documents = len(np.unique(np.concatenate([source.astype(np.int64) * _KEY + index, drop_keys])))


class _Trimmed(NamedTuple):
    """Documents in (source name, index) order, cut to ``max_document_tokens``, with their long-row tails."""

    order: np.ndarray  # input position of each document below
    rank: np.ndarray  # source -> rank of its name
    src: np.ndarray
    idx: np.ndarray
    kept: np.ndarray  # tokens kept
    empty: np.ndarray
    long: np.ndarray  # more than the original window: long rows
    tail: np.ndarray  # tokens after the last full long row
    tail_kept: np.ndarray  # a tail longer than the window: packed into long rows of its own


def _trim(names: tuple[str, ...], source: np.ndarray, index: np.ndarray, length: np.ndarray, window: int, row: int,
          max_document_tokens: int | None, drops: list[DroppedDocument]) -> _Trimmed:
    """Order and cut the documents; note in `drops` the empty ones, the cut tokens and the tails too short to keep."""
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    order = np.lexsort((index, rank[source]))  # documents by (source name, index)
    src, idx, n = source[order], index[order], length[order]
    kept = n if max_document_tokens is None else np.minimum(n, max_document_tokens)
    empty, cut, long = n == 0, n > kept, kept > window
    tail = np.where(long, kept % row, 0)
    tail_kept, tail_dropped = long & (tail > window), long & (tail > 0) & (tail <= window)
    noted = np.flatnonzero(empty | cut | tail_dropped)
    for j, s, i, full, k, t in zip(noted.tolist(), src[noted].tolist(), idx[noted].tolist(), n[noted].tolist(),
                                   kept[noted].tolist(), tail[noted].tolist(), strict=True):
        if empty[j]:
            drops.append(DroppedDocument(names[s], i, 0, 0, "empty document", "empty"))
            continue
        if cut[j]:
            drops.append(DroppedDocument(names[s], i, full, full - k, f"longer than max_document_tokens="
                                         f"{max_document_tokens}", "max_document_tokens"))
        if tail_dropped[j]:
            reason = f"tail of {t} tokens <= original window ({window})"
            drops.append(DroppedDocument(names[s], i, k, t, reason, "tail"))
    return _Trimmed(order, rank, src, idx, kept, empty, long, tail, tail_kept)


def _pack(names: tuple[str, ...], d: _Trimmed, window: int, row: int) -> tuple[PackingPlan, np.ndarray]:
    """Short documents best-fit-decreasing into rows, long ones as full rows plus their tails best-fit; the plan and
    the input position of every piece."""

    def largest_first(selected: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        return selected[np.lexsort((d.idx[selected], d.rank[d.src[selected]], -sizes[selected]))]

    kept, tail = d.kept, d.tail
    short_items = largest_first(np.flatnonzero(~d.empty & ~d.long), kept)
    short_docs, short_counts = _bins_to_rows(short_items, _best_fit_decreasing(kept[short_items], row))
    long_docs = np.flatnonzero(d.long)
    full_counts = kept[long_docs] // row
    full_docs = np.repeat(long_docs, full_counts)
    full_starts = (np.arange(len(full_docs)) - np.repeat(np.cumsum(full_counts) - full_counts, full_counts)) * row
    tail_items = largest_first(np.flatnonzero(d.tail_kept), tail)
    tail_docs, tail_counts = _bins_to_rows(tail_items, _best_fit_decreasing(tail[tail_items], row))

    pieces = np.concatenate([short_docs, full_docs, tail_docs]).astype(np.int64)
    counts = np.concatenate([short_counts, np.ones(len(full_docs), np.int64), tail_counts]).astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    starts = np.concatenate([np.zeros(len(short_docs), np.int64), full_starts, (kept - tail)[tail_docs]])
    sizes = np.concatenate([kept[short_docs], np.full(len(full_docs), row, np.int64), tail[tail_docs]])
    kinds = np.repeat(np.array([0, 1, 1], np.int8), [len(short_counts), len(full_docs), len(tail_counts)])
    packed = PackingPlan(names, window, row, kinds, offsets, d.src[pieces].astype(np.int32), d.idx[pieces],
                         starts.astype(np.int64), sizes.astype(np.int64), kept[pieces])
    return packed, d.order[pieces]


def _count_outputs(report: PackingReport, packed: PackingPlan, names: tuple[str, ...], row: int) -> None:
    """Rows, real and padding tokens per kind; tokens and documents per source in the order the rows use them."""
    real = packed.real_tokens()
    for k, kind in enumerate(KINDS):
        report.rows[kind] = int((packed.kinds == k).sum())
        report.real_tokens[kind] = int(real[packed.kinds == k].sum())
        report.padding_tokens[kind] = report.rows[kind] * row - report.real_tokens[kind]
    used, first = np.unique(packed.piece_source, return_index=True)
    used = used[np.argsort(first)].tolist()  # sources in the order the rows first use them
    tokens = _sum_by(packed.piece_source, packed.piece_length, len(names))
    documents = np.bincount(np.unique(packed.piece_source.astype(np.int64) * _KEY + packed.piece_index) // _KEY,
                            minlength=len(names))
    report.source_tokens = {names[s]: tokens[s] for s in used}
    report.source_documents = {names[s]: int(documents[s]) for s in used}


def plan(
    names: Sequence[str], source: np.ndarray, index: np.ndarray, length: np.ndarray, *, original_window: int,
    target_length: int, max_document_tokens: int | None, short_fraction: float | None, seed: int,
    dropped: Sequence[DroppedDocument],
) -> tuple[PackingPlan, PackingReport, np.ndarray]:
    """The plan and report for documents given as parallel arrays (`names` in first-appearance order), and the
    input position of every piece: count the input, trim, pack, balance the short fraction, count the output."""
    window, row = original_window, target_length
    names, drops = tuple(names), list(dropped)
    report = PackingReport(window, row, short_fraction_target=short_fraction)
    _count_inputs(report, names, source, index, length, drops)
    packed, items = _pack(names, _trim(names, source, index, length, window, row, max_document_tokens, drops),
                          window, row)
    if short_fraction is not None:
        rows, balance_drops = _balance(packed, short_fraction, seed)
        drops += balance_drops
        positions, _ = _gather(packed.row_offsets, rows)
        packed, items = packed.take(rows), items[positions]
    _count_outputs(report, packed, names, row)
    report.dropped = drops
    return packed, report, items
