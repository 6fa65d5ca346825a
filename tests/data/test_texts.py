"""Dataset specs to raw text documents: local formats, built-in sources, Hub errors and fingerprints (offline)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_longrope2.data.texts import BUILTIN_SOURCES, TEXT_EXTENSIONS, describe, load_texts, source_fingerprint


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _write_parquet(path: Path, columns: dict[str, list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def test_txt_and_md_are_one_document_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond line\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\nbody", encoding="utf-8")
    assert load_texts(str(tmp_path / "a.txt")) == ["first line\nsecond line\n"]
    assert load_texts(str(tmp_path / "b.md")) == ["# Title\n\nbody"]


def test_jsonl_takes_text_column_and_skips_blank_records(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"body": "one", "id": 1}, {"body": "  \n", "id": 2}, {"body": "two"}])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n")  # a trailing blank line is not a record
    assert load_texts(str(path), text_column="body") == ["one", "two"]


def test_json_list_and_data_object(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"text": "alpha"}, {"text": ""}, {"text": "beta"}]), encoding="utf-8")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 1, "data": [{"text": "gamma"}, {"text": "delta"}]}), encoding="utf-8")
    assert load_texts(str(listed)) == ["alpha", "beta"]
    assert load_texts(str(wrapped)) == ["gamma", "delta"]


def test_json_that_is_not_a_list_is_rejected(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"text": "not a list"}), encoding="utf-8")
    with pytest.raises(ValueError, match="'data' list"):
        load_texts(str(path))


def test_parquet_rows(tmp_path):
    path = _write_parquet(tmp_path / "p.parquet", {"content": ["row0", None, "   ", "row3"], "n": [0, 1, 2, 3]})
    assert load_texts(str(path), text_column="content") == ["row0", "row3"]


def test_directory_mixes_formats_in_sorted_relative_order(tmp_path):
    root = tmp_path / "corpus"
    _write_parquet(root / "z" / "deep" / "rows.parquet", {"text": ["pq0", "pq1"]})
    _write_jsonl(root / "b" / "items.jsonl", [{"text": "jl0"}, {"text": "jl1"}])
    (root / "a.md").write_text("markdown", encoding="utf-8")
    (root / "b" / "c.txt").write_text("plain", encoding="utf-8")
    (root / "b" / "notes.csv").write_text("ignored,file", encoding="utf-8")
    (root / "m.json").write_text(json.dumps({"data": [{"text": "js0"}]}), encoding="utf-8")
    expected = ["markdown", "plain", "jl0", "jl1", "js0", "pq0", "pq1"]
    assert load_texts(str(root)) == expected
    assert load_texts(str(root)) == expected  # deterministic
    assert describe(str(root), "validation", "text") == f"local directory {root} (5 files)"


def test_missing_column_names_column_file_and_available_columns(tmp_path):
    jsonl = _write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "title": "y"}])
    with pytest.raises(ValueError, match="text column 'text'") as info:
        load_texts(str(jsonl))
    assert str(jsonl) in str(info.value) and "'body'" in str(info.value) and "'title'" in str(info.value)

    parquet = _write_parquet(tmp_path / "p.parquet", {"content": ["a"], "meta": ["b"]})
    with pytest.raises(ValueError, match="'article'") as info:
        load_texts(str(parquet), text_column="article")
    assert str(parquet) in str(info.value) and "'content'" in str(info.value) and "'meta'" in str(info.value)


def test_empty_directory_names_directory_and_extensions(tmp_path):
    (tmp_path / "only.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_texts(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    assert all(ext in str(info.value) for ext in TEXT_EXTENSIONS)


def test_unsupported_extension_lists_accepted_ones(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("text\nhello", encoding="utf-8")
    with pytest.raises(ValueError, match=r"'\.csv'") as info:
        load_texts(str(path))
    assert all(ext in str(info.value) for ext in TEXT_EXTENSIONS)


@pytest.mark.parametrize("spec", ["/no/such/dir", "./missing_dir", "../missing_dir", "~/missing-hf-lr2", "~nosuchuser-hflr2/x", "gone.jsonl"])
def test_missing_local_path_is_file_not_found(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(spec)):
        load_texts(spec)
    with pytest.raises(FileNotFoundError):
        source_fingerprint(spec)


def _force_offline(monkeypatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Both libraries read the variables at import time, which has already happened.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_unreachable_hub_dataset_gives_helpful_error(monkeypatch):
    _force_offline(monkeypatch)
    dataset = "hf-longrope2-tests/no-such-dataset"
    with pytest.raises(ValueError) as info:
        load_texts(dataset, split="validation")
    message = str(info.value)
    assert "could not load dataset" in message and dataset in message
    assert "local file or directory" in message and all(src in message for src in BUILTIN_SOURCES)
    assert info.value.__cause__ is not None
    assert str(info.value.__cause__).strip().splitlines()[0] in message
    assert describe(dataset, "validation", "text") == f"Hub dataset {dataset} [validation] column 'text'"


def test_hub_dataset_column_selection_and_limit(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, *, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"text": ["d0", "", "d2", "d3"], "label": [0, 1, 2, 3]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_texts("org/set", split="test", config_name="cfg") == ["d0", "d2", "d3"]
    assert load_texts("org/set", max_documents=2) == ["d0", "d2"]
    assert calls == [("org/set", "cfg", "test"), ("org/set", None, "validation")]
    with pytest.raises(ValueError, match="'body'") as info:
        load_texts("org/set", text_column="body")
    assert "'text'" in str(info.value) and "'label'" in str(info.value)


def test_builtin_pydoc_long_deterministic_documents():
    docs = load_texts("builtin:pydoc")
    assert len(docs) >= 3
    assert all(len(doc) >= 60_000 for doc in docs)
    assert load_texts("builtin:pydoc") == docs
    assert load_texts("builtin:pydoc", max_documents=2) == docs[:2]
    assert describe("builtin:pydoc", "validation", "text") == "built-in Python documentation (pydoc topics)"


def test_builtin_stdlib_sources():
    docs = load_texts("builtin:stdlib")
    assert docs and all(len(doc) >= 2_000 for doc in docs)
    assert any("def dumps(" in doc for doc in docs)  # json/__init__.py is included
    assert load_texts("builtin:stdlib", max_documents=3) == docs[:3]


def test_unknown_builtin_lists_accepted_sources():
    with pytest.raises(ValueError, match="builtin:nope") as info:
        load_texts("builtin:nope")
    assert all(src in str(info.value) for src in BUILTIN_SOURCES)


def test_max_documents(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": f"doc {i}"} for i in range(5)])
    assert load_texts(str(path), max_documents=2) == ["doc 0", "doc 1"]
    assert load_texts(str(path), max_documents=50) == [f"doc {i}" for i in range(5)]
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"max_documents.*{bad}"):
            load_texts(str(path), max_documents=bad)


def test_fingerprint_tracks_local_file_changes(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", [{"text": "alpha"}])
    txt = tmp_path / "sub" / "b.txt"
    txt.parent.mkdir()
    txt.write_text("beta", encoding="utf-8")
    spec = str(tmp_path)
    before = source_fingerprint(spec)
    assert before == source_fingerprint(spec)
    assert len(before) >= 8 and all(c in "0123456789abcdef" for c in before)
    assert source_fingerprint(spec, text_column="body") != before

    stat = txt.stat()
    txt.write_text("beta, now longer", encoding="utf-8")
    os.utime(txt, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: the size change alone must show
    after = source_fingerprint(spec)
    assert after != before and after == source_fingerprint(spec)

    (tmp_path / "c.md").write_text("gamma", encoding="utf-8")
    assert source_fingerprint(spec) != after


def test_fingerprint_of_builtins_and_hub_ids_is_stable_and_distinct():
    keys = {
        source_fingerprint("builtin:pydoc"),
        source_fingerprint("builtin:stdlib"),
        source_fingerprint("org/set"),
        source_fingerprint("org/set", split="train"),
        source_fingerprint("org/set", config_name="cfg"),
    }
    assert len(keys) == 5
    assert source_fingerprint("org/set") == source_fingerprint("org/set")


@pytest.mark.parametrize("source", BUILTIN_SOURCES)
def test_builtin_slices_split_each_source_into_a_fixed_heldout_part_and_the_rest(source):
    """The miniature holds one slice out of midtraining: the two slices are disjoint and cover the source."""
    import hashlib

    def units(docs: list[str]) -> set[str]:  # pydoc documents join topics with blank lines; stdlib is one per file
        return {hashlib.sha256(p.encode()).hexdigest() for d in docs for p in d.split("\n\n") if p.strip()}

    whole, heldout, train = (load_texts(spec) for spec in (source, f"{source}:heldout", f"{source}:train"))
    assert heldout and train
    assert units(heldout) | units(train) == units(whole)
    assert not (set(heldout) & set(train))
    assert len(units(heldout)) < len(units(train)) or source == "builtin:pydoc"
    assert load_texts(f"{source}:heldout") == heldout  # fixed, not drawn per call
    keys = {source_fingerprint(s) for s in (source, f"{source}:heldout", f"{source}:train")}
    assert len(keys) == 3
    assert "held-out slice" in describe(f"{source}:heldout", "validation", "text")


def test_builtin_slice_of_a_topic_or_file_is_decided_by_its_name_alone():
    from hf_longrope2.data.texts import in_heldout_slice

    names = [f"topic-{i}" for i in range(2000)]
    share = sum(in_heldout_slice("builtin:stdlib", n) for n in names) / len(names)
    assert 0.15 < share < 0.25  # HELDOUT_SHARE 0.2
    assert [in_heldout_slice("builtin:pydoc", n) for n in names[:50]] == \
           [in_heldout_slice("builtin:pydoc", n) for n in names[:50]]


def test_unknown_builtin_slice_lists_the_accepted_specs():
    with pytest.raises(ValueError, match="builtin:pydoc:test") as info:
        load_texts("builtin:pydoc:test")
    assert "builtin:pydoc:heldout" in str(info.value) and "builtin:stdlib:train" in str(info.value)
