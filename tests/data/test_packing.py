"""Mixed-window packing: row layout, window decisions, accounting, mixtures, caching and determinism (offline)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hf_longrope2.data import mixture as sources
from hf_longrope2.data import packing, packing_plan
from hf_longrope2.data.mixture import SourceSpec, mixture_from_yaml
from hf_longrope2.data.packing import build_mixed_dataset
from hf_longrope2.data.packing_plan import DroppedDocument
from hf_longrope2.data.texts import load_texts
from hf_longrope2.losses import IGNORE_INDEX
from hf_longrope2.modeling.windows import long_window_mask
from hf_longrope2.tiny.models import char_tokenizer

PAD = 0


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))


def _docs(lengths: list[int], start: int = 0) -> list[list[int]]:
    """Documents of the given lengths with distinct, non-pad token ids (3..99)."""
    return [[3 + (start + i * 7 + j) % 97 for j in range(n)] for i, n in enumerate(lengths)]


@dataclasses.dataclass
class Row:
    """One materialised row and its plan pieces ``(source, document index, document length, tokens)``."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    seq_lengths: list[int]
    kind: str
    pieces: list[tuple[str, int, int, int]]

    @property
    def real_tokens(self) -> int:
        return sum(p[3] for p in self.pieces)


def _lengths(docs) -> dict[str, np.ndarray]:
    """The document lengths of `docs` (token id lists, or a mapping source -> lists), per source."""
    docs = docs if isinstance(docs, dict) else {"documents": docs}
    return {n: np.array([len(d) for d in ds], dtype=np.int64) for n, ds in docs.items()}


def _plan(lengths: dict[str, np.ndarray], window: int = 8, length: int = 32, *, weights=None,
          max_document_tokens=None, short_fraction=None, seed: int = 0, dropped=()
          ) -> tuple[packing_plan.PackingPlan, packing_plan.PackingReport]:
    """The steps of `build_mixed_dataset` after tokenisation, on document `lengths` per source: settings checked,
    `mix` when `weights` are given, then `plan`."""
    packing_plan.check_settings(window, length, max_document_tokens, short_fraction)
    names = sorted(lengths)
    lengths = {n: np.asarray(lengths[n], dtype=np.int64) for n in names}
    kept = {n: np.arange(len(lengths[n])) for n in names}
    drops = list(dropped)
    if weights is not None:
        kept, left_out = packing_plan.mix(lengths, weights, seed)
        for n in names:
            drops += packing_plan.mixture_drops(n, left_out[n], lengths[n][left_out[n]])
            kept[n] = np.sort(kept[n])
    source = np.repeat(np.arange(len(names), dtype=np.int32), [len(kept[n]) for n in names])
    index = np.concatenate([kept[n] for n in names])
    length_of = np.concatenate([lengths[n][kept[n]] for n in names])
    plan, report, _ = packing_plan.plan(names, source, index, length_of, original_window=window, target_length=length,
                                        max_document_tokens=max_document_tokens, short_fraction=short_fraction,
                                        seed=seed, dropped=drops)
    return plan, report


def _tokenized(docs) -> dict[str, datasets.Dataset]:
    """`docs` as the tokenised sources `materialise_plan` reads."""
    docs = docs if isinstance(docs, dict) else {"documents": docs}
    features = datasets.Features({sources.TOKENIZED_COLUMN: datasets.List(datasets.Value("int64"))})
    return {n: datasets.Dataset.from_dict({sources.TOKENIZED_COLUMN: list(ds)}, features=features)
            for n, ds in docs.items()}


def _pack(docs, window: int = 8, length: int = 32, *, pad: int = PAD, **settings
          ) -> tuple[list[Row], packing_plan.PackingReport]:
    """Rows by the production path: [`_plan`], then `materialise_plan` (in memory); each with its plan pieces."""
    plan, report = _plan(_lengths(docs), window, length, **settings)
    rows = packing.materialise_plan(plan, _tokenized(docs), pad_token_id=pad)
    out = []
    for r, row in enumerate(rows):
        lo, hi = int(plan.row_offsets[r]), int(plan.row_offsets[r + 1])
        pieces = list(zip([plan.sources[s] for s in plan.piece_source[lo:hi].tolist()],
                          plan.piece_index[lo:hi].tolist(), plan.piece_document_length[lo:hi].tolist(),
                          plan.piece_length[lo:hi].tolist(), strict=True))
        assert (row["kind"], row["seq_lengths"]) == (plan.kind(r), plan.seq_lengths(r))
        out.append(Row(*(row[c] for c in packing.ROW_COLUMNS), pieces=pieces))
    return out, report


def _check_layout(row: Row, length: int) -> None:
    """Exact length, positions restart per segment, labels -100 exactly on segment starts and padding."""
    assert len(row.input_ids) == len(row.labels) == len(row.position_ids) == length == sum(row.seq_lengths)
    assert row.position_ids == [p for n in row.seq_lengths for p in range(n)]
    real = row.real_tokens
    starts = {sum(row.seq_lengths[:i]) for i in range(len(row.seq_lengths))}
    for t, (tok, lab) in enumerate(zip(row.input_ids, row.labels, strict=True)):
        if t >= real:
            assert tok == PAD and lab == IGNORE_INDEX
        else:
            assert lab == (IGNORE_INDEX if t in starts else tok)


def test_short_rows_restart_positions_per_document():
    rows, report = _pack(_docs([8, 7, 6, 5, 4, 3, 2, 1, 8, 8]))
    assert {r.kind for r in rows} == {"short"}
    for row in rows:
        _check_layout(row, 32)
    assert report.real_tokens["short"] == 52 and report.padding_tokens["short"] == 2 * 32 - 52
    assert report.dropped == []


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [([5, 5, 3, 3, 2, 2], [[5, 5], [3, 3, 2, 2]]), ([5, 5, 5, 3, 3, 3], [[5, 5], [5, 3, 2], [3, 3, 4]]),
     ([7, 6, 3, 3, 1], [[7, 3], [6, 3, 1]])],
)
def test_best_fit_decreasing_row_count(lengths, expected):
    rows, _ = _pack(_docs(lengths), window=7, length=10)
    assert [r.seq_lengths for r in rows] == expected  # trailing 2 / 4: padding


def test_best_fit_prefers_the_fullest_row():
    # rows [7] and [4, 4] have 3 and 2 tokens free: the 2 fills the second (first-fit would pick the first)
    rows, _ = _pack(_docs([7, 4, 4, 2, 1]), window=7, length=10)
    assert [r.seq_lengths for r in rows] == [[7, 1, 2], [4, 4, 2]]


@pytest.mark.parametrize(("window", "kept"), [(8, True), (16, False)])
def test_long_document_full_rows_and_remainder(window, kept):
    doc = _docs([80])[0]  # 2.5 rows of 32
    rows, report = _pack([doc], window=window)
    full = [r for r in rows if r.seq_lengths[0] == 32]
    assert len(full) == 2 and all(r.kind == "long" for r in rows)
    assert [r.input_ids for r in full] == [doc[:32], doc[32:64]]
    assert all(r.position_ids == list(range(32)) for r in full)
    for row in rows:
        _check_layout(row, 32)
    if kept:
        assert len(rows) == 3 and rows[2].input_ids[:16] == doc[64:] and rows[2].seq_lengths == [16, 8, 8]
        assert report.dropped == []
    else:
        assert len(rows) == 2
        assert [(d.index, d.length, d.lost_tokens) for d in report.dropped] == [(0, 80, 16)]
        assert report.dropped[0].reason.startswith("tail of 16 tokens <= original window")


def test_long_remainders_share_rows_and_keep_the_long_window():
    rows, _ = _pack(_docs([12, 10, 9, 20]), window=8, length=32)
    assert [(r.kind, r.seq_lengths) for r in rows] == [("long", [20, 12]), ("long", [10, 9, 8, 5])]


def _mixed_docs(seed: int = 0, count: int = 60) -> list[list[int]]:
    rng = random.Random(seed)
    lengths = [rng.choice([0, rng.randint(1, 8), rng.randint(9, 32), rng.randint(33, 120)]) for _ in range(count)]
    return _docs(lengths, start=seed)


def test_model_window_matches_the_packer():
    rows, report = _pack(_mixed_docs())
    assert report.rows["short"] > 0 and report.rows["long"] > 0
    for row in rows:
        mask = long_window_mask(torch.tensor(row.position_ids), 8).tolist()
        real = row.real_tokens
        if row.kind == "short":
            assert not any(mask)
        else:
            assert all(mask[:real]) and not any(mask[real:])


@pytest.mark.parametrize("short_fraction", [None, 0.0, 0.3, 0.9, 1.0])
def test_token_accounting(short_fraction):
    docs = {"a": _mixed_docs(1), "b": _mixed_docs(2)}
    rows, report = _pack(docs, max_document_tokens=100, short_fraction=short_fraction, seed=3)
    assert report.input_tokens == sum(len(d) for ds in docs.values() for d in ds)
    kept = sum(r.real_tokens for r in rows)
    assert kept == report.kept_tokens == sum(report.source_tokens.values())
    assert report.kept_tokens + report.lost_tokens == report.input_tokens
    assert sum(report.padding_tokens.values()) == len(rows) * 32 - kept
    assert {d.category for d in report.dropped} >= {"empty", "max_document_tokens", "tail"}
    assert json.loads(json.dumps(report.to_dict()))["kept_tokens"] == kept
    assert "dropped or truncated" in report.summary()


@pytest.mark.parametrize("short_fraction", [0.1, 0.5, 0.9])
def test_short_fraction_within_one_row(short_fraction):
    docs = _docs([random.Random(i).randint(1, 8) for i in range(300)] + [40 + i for i in range(40)])
    rows, report = _pack(docs, short_fraction=short_fraction, seed=1)
    short, long = report.real_tokens["short"], report.real_tokens["long"]
    assert short > 0 and long > 0
    assert abs(short - short_fraction * (short + long)) <= 32
    assert any(d.category == "short_fraction" for d in report.dropped)
    assert report.kept_tokens + report.lost_tokens == report.input_tokens


def test_mixture_weights_set_token_shares():
    per_source = {"a": _docs([random.Random(i).randint(1, 8) for i in range(600)]),
                  "b": _docs([random.Random(-i).randint(1, 8) for i in range(100)])}
    rows, report = _pack(per_source, weights={"a": 3.0, "b": 1.0}, seed=0)
    dropped = [d for d in report.dropped if d.category == "mixture"]
    assert dropped and all(d.reason == "over the mixture weight" for d in dropped)
    assert not any(d.source == "b" for d in dropped)  # b runs out first: it sets the scale
    share = report.source_tokens["a"] / report.kept_tokens
    assert abs(share - 0.75) < 0.01 and report.source_input_tokens["a"] == sum(map(len, per_source["a"]))
    assert report.kept_tokens + report.lost_tokens == report.input_tokens
    assert report.input_documents == 700
    with pytest.raises(ValueError, match="no tokens|weight"):
        packing_plan.mix({"a": np.array([1]), "b": np.array([], dtype=np.int64)}, {"a": 1.0, "b": 1.0}, seed=0)


def test_mixture_yaml(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("- dataset: builtin:pydoc\n  weight: 3\n- {dataset: data/x.jsonl, tokenized: true, name: x}\n")
    specs = mixture_from_yaml(path)
    assert [(s.name, s.weight, s.tokenized) for s in specs] == [("builtin:pydoc", 3.0, False), ("x", 1.0, True)]
    assert mixture_from_yaml({"sources": [{"dataset": "builtin:stdlib"}]})[0].split == "train"
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['wieght'\].*accepted keys"):
        mixture_from_yaml([{"dataset": "builtin:pydoc", "wieght": 2}])
    with pytest.raises(ValueError, match="weight must be a positive"):
        SourceSpec("builtin:pydoc", weight=0)
    with pytest.raises(ValueError, match="unique"):
        mixture_from_yaml([{"dataset": "builtin:pydoc"}, {"dataset": "builtin:pydoc"}])


def test_pretokenized_jsonl_source(tmp_path):
    records = [{"input_ids": ids} for ids in _docs([5, 20, 70, 3])] + [{"input_ids": []}]
    path = tmp_path / "tok.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ds, report = build_mixed_dataset(char_tokenizer(), [SourceSpec(str(path), tokenized=True, name="tok")],
                                     original_window=8, target_length=32)
    assert ds.column_names == ["input_ids", "labels", "position_ids", "seq_lengths", "kind"]
    assert all(len(ids) == 32 for ids in ds["input_ids"])
    short_row = next(r for r in ds if r["kind"] == "short")
    assert short_row["input_ids"][:6] == records[0]["input_ids"] + [2]  # EOS appended
    assert report.input_tokens == 6 + 21 + 71 + 4
    assert sorted(d.category for d in report.dropped) == ["empty", "tail"]  # 71 tokens leave a 7-token tail


def _text_source(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.txt").write_text(("word " * (3 + 9 * i))[: 5 + 17 * i])
    return SourceSpec(str(folder), name="texts")


def test_tokenisation_cache_is_reused(tmp_path, monkeypatch):
    calls = []
    tokenize = sources._tokenize_batch
    monkeypatch.setattr(sources, "_tokenize_batch", lambda batch, **kw: calls.append(1) or tokenize(batch, **kw))
    spec = _text_source(tmp_path)
    first, _ = build_mixed_dataset(char_tokenizer(), [spec], original_window=16, target_length=64)
    assert calls and list((tmp_path / "cache" / "packing").glob("*.arrow"))
    calls.clear()
    second, _ = build_mixed_dataset(char_tokenizer(), [spec], original_window=16, target_length=64)
    assert calls == [] and second.to_dict() == first.to_dict()


def test_same_seed_same_rows_other_seed_other_order(tmp_path):
    spec = _text_source(tmp_path)
    runs = [build_mixed_dataset(char_tokenizer(), [spec], original_window=4, target_length=16, seed=s)[0].to_dict()
            for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert sorted(map(tuple, runs[0]["input_ids"])) == sorted(map(tuple, runs[2]["input_ids"]))


def test_dropped_documents_are_reported_not_silent():
    rows, report = _pack({"s": [[], _docs([3])[0]]}, dropped=[DroppedDocument("s", 2, 9, 9, "upstream", "mixture")])
    assert report.input_documents == 3 and report.input_tokens == 12 and report.lost_tokens == 9


def test_short_fraction_measures_shares_not_token_distance():
    # 4 short tokens against 20 long rows: the closest share to 0.2 keeps one long row (0.11), not none (1.0)
    rows, report = _pack(_docs([4] + [64] * 10), short_fraction=0.2)
    assert report.rows == {"short": 1, "long": 1} and abs(report.short_fraction - 4 / 36) < 1e-9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"target_length": 8}, "target_length must be an integer > original_window"),
     ({"max_document_tokens": 0}, "max_document_tokens must be a positive integer"),
     ({"short_fraction": 1.5}, r"short_fraction must be in \[0, 1\]")],
)
def test_invalid_settings_name_the_value(kwargs, match):
    settings = {"original_window": 8, "target_length": 32, **kwargs}
    with pytest.raises(ValueError, match=match):
        packing_plan.check_settings(**{"max_document_tokens": None, "short_fraction": None, **settings})
    with pytest.raises(ValueError, match=match):  # checked before any source is loaded
        build_mixed_dataset(char_tokenizer(), [SourceSpec("builtin:pydoc")], **settings)


# ------------------------------------------------------------------------------------------------------------------
# Planning from lengths, materialising from Arrow, and the larger-scale sources.


class Doc(NamedTuple):
    source: str
    index: int
    token_ids: list[int]


def _reference_pack(documents, window, length, *, max_document_tokens=None, short_fraction=None, seed=0):
    """The original in-memory packer (token ids in Python lists end to end): the semantics the planner keeps."""
    docs = [Doc(name, i, ids) for name, ds in documents.items() for i, ids in enumerate(ds)]
    items, full, tails, drops = [], [], [], []
    for doc in sorted(docs, key=lambda d: (d.source, d.index)):
        ids = list(doc.token_ids)[:max_document_tokens]
        n = len(ids)
        if n == 0:
            drops.append((doc.source, doc.index, 0, 0, "empty"))
            continue
        if len(doc.token_ids) > n:
            drops.append((doc.source, doc.index, len(doc.token_ids), len(doc.token_ids) - n, "max_document_tokens"))
        if n <= window:
            items.append((n, (doc, ids, 0, n)))
            continue
        full += [[(doc, ids, a, a + length)] for a in range(0, n - length + 1, length)]
        tail = n % length
        if tail > window:
            tails.append((tail, (doc, ids, n - tail, n)))
        elif tail:
            drops.append((doc.source, doc.index, n, tail, "tail"))

    def bfd(sized):
        bins, free = [], []
        for size, payload in sorted(sized, key=lambda x: (-x[0], x[1][0].source, x[1][0].index)):
            at = next((k for k, (space, _) in enumerate(sorted(free)) if space >= size), None)
            if at is None:
                bins.append([payload])
                free.append((length - size, len(bins) - 1))
            else:
                space, b = sorted(free)[at]
                free.remove((space, b))
                bins[b].append(payload)
                free.append((space - size, b))
            free = [f for f in free if f[0] > 0]
        return bins

    def row(kind, parts):
        ids, labels, positions, seq, pieces = [], [], [], [], []
        for doc, tokens, a, b in parts:
            chunk = tokens[a:b]
            ids += chunk
            labels += [IGNORE_INDEX, *chunk[1:]]
            positions += range(len(chunk))
            seq.append(len(chunk))
            pieces.append((doc.source, doc.index, len(tokens), len(chunk)))
        while (left := length - len(ids)) > 0:
            k = min(left, window)
            ids, labels, positions, seq = ids + [PAD] * k, labels + [IGNORE_INDEX] * k, positions + [*range(k)], seq + [k]
        return ids, labels, positions, seq, kind, pieces

    rows = [row("short", b) for b in bfd(items)] + [row("long", p) for p in full] + [row("long", b) for b in bfd(tails)]
    if short_fraction is not None:
        real = [sum(p[3] for p in r[5]) for r in rows]
        tokens = {k: sum(n for n, r in zip(real, rows, strict=True) if r[4] == k) for k in ("short", "long")}
        total = sum(tokens.values())
        over = "short" if tokens["short"] > short_fraction * total else "long"
        under = "long" if over == "short" else "short"
        goal = short_fraction if over == "short" else 1 - short_fraction
        if total and tokens["short"] != short_fraction * total and not (tokens[under] == 0 and goal > 0):
            def distance(have):
                return abs(have / (have + tokens[under]) - goal) if have + tokens[under] else math.inf

            candidates = [i for i, r in enumerate(rows) if r[4] == over]
            random.Random(seed).shuffle(candidates)
            have, removed = tokens[over], set()
            for i in candidates:
                if distance(have - real[i]) < distance(have) or (goal == 0 and tokens[under] == 0):
                    have, removed = have - real[i], removed | {i}
            drops += [(*p[:3], p[3], "short_fraction") for i in sorted(removed) for p in rows[i][5]]
            rows = [r for i, r in enumerate(rows) if i not in removed]
    return rows, drops


def _random_case(seed: int):
    rng = random.Random(seed)
    window = rng.randint(1, 12)
    length = window + rng.randint(1, 40)
    docs = {f"s{k}": _docs([rng.choice([0, rng.randint(1, window), rng.randint(window + 1, 4 * length)])
                            for _ in range(rng.randint(1, 30))], start=k) for k in range(rng.randint(1, 3))}
    settings = {"max_document_tokens": rng.choice([None, rng.randint(1, 3 * length)]),
                "short_fraction": rng.choice([None, 0.0, 0.2, 0.5, 0.9, 1.0]), "seed": rng.randint(0, 9)}
    return docs, window, length, settings


@pytest.mark.parametrize("case", range(60))
def test_planner_keeps_the_original_packing(case):
    docs, window, length, settings = _random_case(case)
    expected, expected_drops = _reference_pack(docs, window, length, **settings)
    rows, report = _pack(docs, window=window, length=length, **settings)
    assert [(r.input_ids, r.labels, r.position_ids, r.seq_lengths, r.kind, [tuple(p) for p in r.pieces])
            for r in rows] == expected
    assert [(d.source, d.index, d.length, d.lost_tokens, d.category) for d in report.dropped] == expected_drops
    plan, _ = _plan(_lengths(docs), window, length, **settings)  # lengths alone (no token ids anywhere) give the same pieces
    assert [[(p.source, p.index, p.length) for p in plan.pieces(r)] for r in range(len(plan))] == [
        [p[:2] + (p[3],) for p in r[5]] for r in expected]


@pytest.mark.parametrize("cached", [False, True])
def test_plan_from_lengths_materialises_the_in_memory_rows(tmp_path, cached):
    docs, window, length, settings = _random_case(7)
    plan, _ = _plan(_lengths(docs), window, length, **settings)
    rows = packing.materialise_plan(plan, _tokenized(docs), pad_token_id=PAD,
                                    cache_file=tmp_path / "rows.arrow" if cached else None)
    expected, _ = _reference_pack(docs, window, length, **settings)
    assert [tuple(r[c] for c in packing.ROW_COLUMNS) for r in rows] == [r[:5] for r in expected]
    assert bool(rows.cache_files) == cached


def test_rows_are_written_to_an_arrow_cache_and_reused(tmp_path, monkeypatch):
    calls = []
    materialise = packing._materialise_rows
    monkeypatch.setattr(packing, "_materialise_rows", lambda batch, **kw: calls.append(1) or materialise(batch, **kw))
    spec = _text_source(tmp_path)
    first, report = build_mixed_dataset(char_tokenizer(), [spec], original_window=16, target_length=64)
    cache = tmp_path / "cache" / "packing"
    files = [Path(f["filename"]) for f in first.cache_files]
    assert calls and files and all(f.parent == cache and f.name.startswith("rows-") for f in files)
    calls.clear()
    second, again = build_mixed_dataset(char_tokenizer(), [spec], original_window=16, target_length=64)
    assert calls == [] and [Path(f["filename"]) for f in second.cache_files] == files
    assert second.to_dict() == first.to_dict() and again.to_dict() == report.to_dict()
    in_memory, _ = build_mixed_dataset(char_tokenizer(), [spec], original_window=16, target_length=64, use_cache=False)
    assert in_memory.cache_files == [] and in_memory.to_dict() == first.to_dict()
    other, _ = build_mixed_dataset(char_tokenizer(), [spec], original_window=16, target_length=64, seed=1)
    assert [Path(f["filename"]) for f in other.cache_files] != files  # another plan, another file


def test_build_matches_the_in_memory_packer_with_processes(tmp_path):
    spec = _text_source(tmp_path)
    settings = {"original_window": 4, "target_length": 16, "seed": 2, "short_fraction": 0.4, "max_document_tokens": 40}
    rows, report = build_mixed_dataset(char_tokenizer(), [spec], num_proc=2, **settings)
    assert len(rows.cache_files) == 2  # one shard per process
    docs = sources.tokenize_source(char_tokenizer(), spec)[sources.TOKENIZED_COLUMN]
    expected, _ = _pack({"texts": docs}, settings["original_window"], settings["target_length"],
                        pad=char_tokenizer().pad_token_id, seed=2, short_fraction=0.4, max_document_tokens=40)
    random.Random(2).shuffle(expected)
    assert rows.to_dict() == {c: [getattr(r, c) for r in expected] for c in packing.ROW_COLUMNS}
    assert report.kept_tokens + report.lost_tokens == report.input_tokens == sum(map(len, docs))


def _token_file(tmp_path, lengths: list[int]):
    path = tmp_path / "tok.jsonl"
    path.write_text("".join(json.dumps({"input_ids": ids}) + "\n" for ids in _docs(lengths)))
    return path


def test_min_document_tokens_drops_and_reports(tmp_path):
    path = _token_file(tmp_path, [3, 7, 0, 12, 40, 9, 2])  # + EOS: 4, 8, 0, 13, 41, 10, 3
    spec = SourceSpec(str(path), tokenized=True, name="tok", min_document_tokens=9)
    rows, report = build_mixed_dataset(char_tokenizer(), [spec], original_window=16, target_length=32,
                                       max_document_tokens=30)
    by_category = {}
    for d in report.dropped:
        by_category.setdefault(d.category, []).append((d.index, d.length, d.lost_tokens))
    assert by_category == {"min_document_tokens": [(0, 4, 4), (1, 8, 8), (6, 3, 3)], "empty": [(2, 0, 0)],
                           "max_document_tokens": [(4, 41, 11)]}
    assert report.dropped[0].reason == "shorter than min_document_tokens=9"
    assert report.input_tokens == 4 + 8 + 13 + 41 + 10 + 3 and report.input_documents == 7
    assert report.kept_tokens + report.lost_tokens == report.input_tokens
    assert report.source_documents == {"tok": 3} and report.kept_tokens == 13 + 30 + 10
    assert sorted(map(sorted, rows["seq_lengths"])) == [[2, 30], [9, 10, 13]]  # long 30 + padding, short 13 + 10
    for bad in (0, -1, 2.5, "9", True):
        with pytest.raises(ValueError, match="min_document_tokens must be a positive integer"):
            SourceSpec("builtin:pydoc", min_document_tokens=bad)
    with pytest.raises(ValueError, match="no document of at least min_document_tokens=100"):
        build_mixed_dataset(char_tokenizer(), [SourceSpec(str(path), tokenized=True, min_document_tokens=100)],
                            original_window=16, target_length=32)


def test_data_dir_is_passed_to_load_dataset(tmp_path, monkeypatch):
    calls = []
    texts = ["def f():\n    return 1\n", "   ", None, "x = 2\n" * 9, "print('hi')\n", "y = 3\n"]

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.Dataset.from_dict({"content": texts, "other": list(range(len(texts)))})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(sources, "load_texts", lambda *a, **k: pytest.fail("Hub texts must not become a list"))
    spec = SourceSpec("bigcode/starcoderdata", data_dir="python", text_column="content", max_documents=3,
                      name="starcoder")
    assert [f.name for f in dataclasses.fields(SourceSpec)][-2:] == ["data_dir", "min_document_tokens"]
    tokens = sources.tokenize_source(char_tokenizer(), spec)
    assert calls == [("bigcode/starcoderdata", None, {"split": "train", "data_dir": "python"})]
    tokenizer = char_tokenizer()
    assert tokens[sources.TOKENIZED_COLUMN] == [  # blank and missing texts skipped, as load_texts does
        tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts[:5] if t and t.strip()]
    rows, report = build_mixed_dataset(tokenizer, [spec], original_window=16, target_length=64)
    assert report.input_documents == 3 and len(rows) > 0
    calls.clear()
    sources.tokenize_source(tokenizer, SourceSpec("org/plain", text_column="content"))
    assert calls == [("org/plain", None, {"split": "train"})]  # no data_dir: not passed
    with pytest.raises(ValueError, match="data_dir applies to Hub datasets only"):
        sources.tokenize_source(tokenizer, SourceSpec("builtin:pydoc", data_dir="python"))
    with pytest.raises(ValueError, match="data_dir must be a non-empty string"):
        SourceSpec("org/x", data_dir="")


def test_local_jsonl_and_parquet_texts_are_read_through_datasets(tmp_path, monkeypatch):
    records = [{"text": t} for t in ["first doc", "", " \u3000\n", "second\n\nparagraph", None, "third", "fourth"]]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pq.write_table(pa.table({"text": [r["text"] for r in records]}), tmp_path / "b.parquet")
    expected = {}
    for name in ("a.jsonl", "b.parquet"):
        for unit in ("document", "paragraph"):
            spec = SourceSpec(str(tmp_path / name), max_documents=3, unit=unit)
            expected[name, unit] = sources.tokenize_source(char_tokenizer(), spec, use_cache=False)[
                sources.TOKENIZED_COLUMN]
    texts = load_texts(str(tmp_path / "a.jsonl"), max_documents=3)
    assert texts == ["first doc", "second\n\nparagraph", "third"]
    monkeypatch.setattr(sources, "load_texts", lambda *a, **k: pytest.fail("local jsonl / parquet must not be a list"))
    tokenizer = char_tokenizer()
    encode = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    assert expected["a.jsonl", "document"] == expected["b.parquet", "document"] == encode
    assert expected["a.jsonl", "paragraph"] == [encode[0], encode[1][:6] + [2], encode[1][8:], encode[2]]


def test_planning_200k_documents_from_lengths_is_fast_and_small():
    rng = np.random.default_rng(0)

    def lengths(count: int) -> np.ndarray:  # half short (<= 8k), half long (8k..300k, log-uniform)
        long = np.exp(rng.uniform(np.log(8193), np.log(300_000), count)).astype(np.int64)
        return np.where(rng.random(count) < 0.5, rng.integers(1, 8193, count), long)

    sources = {"a": lengths(100_000), "b": lengths(100_000)}

    def plan():
        return _plan(sources, 8192, 131072, weights={"a": 3.0, "b": 1.0}, max_document_tokens=200_000,
                     short_fraction=0.1)

    start = time.perf_counter()
    result, report = plan()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    try:
        plan()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"planned {report.input_documents} documents ({report.input_tokens / 1e9:.2f}B tokens) into "
          f"{len(result)} rows in {seconds:.2f} s, peak traced memory {peak / 2**20:.0f} MiB")
    assert report.input_documents == 200_000 and report.kept_tokens + report.lost_tokens == report.input_tokens
    assert abs(report.short_fraction - 0.1) < 0.01
    assert peak < 256 * 2**20  # ~55 MiB, most of it the drop list (the time is printed, never asserted)
