"""The midtraining recall corpus: exact lengths, far lookups, held-out evaluation vocabulary, a pure function of the seed."""

from __future__ import annotations

import json
import re

import pytest

from hf_longrope2.data.needles import KEYS
from hf_longrope2.tiny.models import char_tokenizer
from hf_longrope2.tiny.pretraining import ADJECTIVES, NOUNS
from hf_longrope2.tiny.recall_data import RecallCorpusSettings, RecallDocuments, write_recall_corpus

TEXT = "def f(x):\n    return x + 1\n\nclass A:\n    pass\n" * 400


@pytest.fixture(scope="module")
def docs():
    tok = char_tokenizer()
    return tok, RecallDocuments(tok, tok(TEXT, add_special_tokens=False)["input_ids"],
                                RecallCorpusSettings(target_length=2048, window=256, seed=3))


def _records(text: str) -> list[tuple[int, str, str]]:
    return [(m.start(), m.group(1), m.group(2)) for m in re.finditer(r"\n([a-z]+-\d\d): (\d{7})\n", text)]


def test_long_documents_have_far_lookups_of_consistent_values(docs):
    tok, gen = docs
    for i in (0, 2, 4):
        ids = gen.document("long", i)
        assert len(ids) == 2048 and ids[0] == tok.bos_token_id
        first: dict[str, tuple[int, str]] = {}
        distances = []
        for at, key, value in _records(tok.decode(ids[1:])):
            if key in first:
                assert first[key][1] == value  # a lookup repeats the record's value
                distances.append(at - first[key][0])
            else:
                first[key] = (at, value)
        # char tokenizer: characters are tokens; every lookup is at least a quarter of the document back
        assert len(distances) >= 10 and min(distances) >= 2048 // 4 - 16 and max(distances) > 2048 // 2


def test_short_documents_fit_the_window_and_the_seed_decides_everything(docs):
    tok, gen = docs
    assert all(len(gen.document("short", i)) == 255 for i in range(20))  # + EOS = the window
    odd = [len(gen.document("long", i)) for i in range(1, 20, 2)]
    assert all(256 < n <= 2048 for n in odd) and len(set(odd)) > 5  # long documents of many lengths too
    again = RecallDocuments(tok, tok(TEXT, add_special_tokens=False)["input_ids"],
                            RecallCorpusSettings(target_length=2048, window=256, seed=3))
    assert again.document("long", 1) == gen.document("long", 1)
    other = RecallDocuments(tok, tok(TEXT, add_special_tokens=False)["input_ids"],
                            RecallCorpusSettings(target_length=2048, window=256, seed=4))
    assert other.document("long", 1) != gen.document("long", 1)


def test_evaluation_template_and_keys_are_held_out_of_every_document(docs):
    """Long documents and the replayed short rows alike: no needle template, no adjective-noun key (the short rows
    replay pretraining's key-to-value snippets with syllable keys instead of its needle episodes)."""
    tok, gen = docs
    for kind, n in (("long", 10), ("short", 200)):
        text = " ".join(tok.decode(gen.document(kind, i)) for i in range(n))
        assert "magic" not in text and "special" not in text, kind
        keys = re.findall(r"(?:^|\n)([a-z]+(?:-[a-z]+)*-\d+):", text)
        words = set(re.findall(r"[a-z]+", " ".join(keys)))
        assert words and not words & (set(ADJECTIVES) | set(NOUNS) | {w for k in KEYS for w in k.split("-")}), kind


def test_default_text_is_the_training_slices_of_the_base_corpus(tmp_path, monkeypatch):
    """The held-out slices (where the evaluation's text comes from) are never read for midtraining data."""
    from hf_longrope2.tiny import recall_data

    read = []
    monkeypatch.setattr(recall_data, "load_texts", lambda spec: read.append(spec) or [TEXT])
    settings = RecallCorpusSettings(target_length=512, window=64, long_documents=2, short_documents=2)
    write_recall_corpus(char_tokenizer(), tmp_path / "data", settings)
    assert read == ["builtin:stdlib:train", "builtin:pydoc:train"]


def test_written_corpus_is_a_pretokenized_mixture_source(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))
    from hf_longrope2.data.mixture import SourceSpec
    from hf_longrope2.data.packing import build_mixed_dataset

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text(TEXT)
    tok = char_tokenizer()
    settings = RecallCorpusSettings(target_length=512, window=64, long_documents=6, short_documents=20,
                                    text_source=str(tmp_path / "text"))
    files = write_recall_corpus(tok, tmp_path / "data", settings)
    assert json.loads((tmp_path / "data" / "settings.json").read_text())["target_length"] == 512
    rows, report = build_mixed_dataset(
        tok, [SourceSpec(str(files["long"]), tokenized=True, name="long"),
              SourceSpec(str(files["short"]), tokenized=True, name="short")],
        original_window=64, target_length=512, seed=0, short_fraction=0.3)
    assert {"long", "short"} <= set(rows["kind"])
    assert report.to_dict()["source_documents"]["short"] > 0 and report.to_dict()["rows"]["short"] > 0
    with pytest.raises(FileExistsError):
        write_recall_corpus(tok, tmp_path / "data", settings)  # nothing overwritten without overwrite=True
    with pytest.raises(ValueError, match="target_length .* must exceed the window"):
        RecallCorpusSettings(target_length=64, window=64)
