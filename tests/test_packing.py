"""Mixed-window packing: row layout, window decisions, accounting, mixtures, caching and determinism (offline)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from hf_longrope2 import packing
from hf_longrope2.losses import IGNORE_INDEX
from hf_longrope2.packing import (
    DroppedDocument,
    PackedRow,
    SourceSpec,
    build_mixed_dataset,
    mix_sources,
    mixture_from_yaml,
    pack_mixed_windows,
)
from hf_longrope2.testing import char_tokenizer
from hf_longrope2.windows import long_window_mask

PAD = 0


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))


def _docs(lengths: list[int], start: int = 0) -> list[list[int]]:
    """Documents of the given lengths with distinct, non-pad token ids (3..99)."""
    return [[3 + (start + i * 7 + j) % 97 for j in range(n)] for i, n in enumerate(lengths)]


def _pack(docs, window: int = 8, length: int = 32, **kwargs) -> tuple[list[PackedRow], packing.PackingReport]:
    return pack_mixed_windows(docs, original_window=window, target_length=length, pad_token_id=PAD, **kwargs)


def _check_layout(row: PackedRow, length: int) -> None:
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
    documents, dropped = mix_sources(per_source, {"a": 3.0, "b": 1.0}, seed=0)
    assert all(d.reason == "over the mixture weight" for d in dropped)
    assert not any(d.source == "b" for d in dropped)  # b runs out first: it sets the scale
    rows, report = _pack(documents, dropped=dropped)
    share = report.source_tokens["a"] / report.kept_tokens
    assert abs(share - 0.75) < 0.01 and report.source_input_tokens["a"] == sum(map(len, per_source["a"]))
    assert report.kept_tokens + report.lost_tokens == report.input_tokens
    assert report.input_documents == 700
    with pytest.raises(ValueError, match="no tokens|weight"):
        mix_sources({"a": [[1]], "b": []}, {"a": 1.0, "b": 1.0}, seed=0)


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
    tokenize = packing._tokenize_batch
    monkeypatch.setattr(packing, "_tokenize_batch", lambda batch, **kw: calls.append(1) or tokenize(batch, **kw))
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
        pack_mixed_windows(_docs([3]), pad_token_id=PAD, **settings)
    with pytest.raises(ValueError, match=match):  # checked before any source is loaded
        build_mixed_dataset(char_tokenizer(), [SourceSpec("builtin:pydoc")], **settings)
