"""Needle samples: exact length, answer-only labels, the answer survives truncation, errors and the cache."""

from __future__ import annotations

import pytest
import torch

from hf_longrope2 import needles
from hf_longrope2.losses import IGNORE_INDEX
from hf_longrope2.needles import NeedleSettings, build_needle_sample, needle_samples
from hf_longrope2.testing import char_tokenizer

WORDS = "the quick brown fox jumps over the lazy dog while the river keeps flowing past the old mill "


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))


def _corpus(path, lengths):
    path.mkdir()
    for i, n in enumerate(lengths):
        (path / f"doc{i}.txt").write_text((f"doc {i}: " + WORDS * (n // len(WORDS) + 1))[:n])
    return path


def test_samples_have_target_length_and_answer_only_labels(tmp_path):
    tok = char_tokenizer()
    settings = NeedleSettings(dataset=str(_corpus(tmp_path / "t", [3000, 4000, 5000])), target_length=700, num_samples=3)
    batch = needle_samples(tok, settings)
    assert batch.input_ids.shape == batch.labels.shape == (3, 700)
    assert len(set(batch.depths)) == 3 and batch.depths[0] == 0.0 and batch.depths[-1] == 0.5
    for row, labels, key, answer in zip(batch.input_ids, batch.labels, batch.keys, batch.answers, strict=True):
        scored = labels != IGNORE_INDEX
        n = len(" " + answer)
        assert scored.sum() == n and scored[-n:].all()  # the answer, and only it, ends the sample
        assert tok.decode(labels[scored]) == " " + answer
        text = tok.decode(row)
        assert f"special magic numbers for {key} is: {answer}." in text
        assert text.endswith(f"The special magic number for {key} mentioned in the provided text is: {answer}")
        assert text.startswith("<s>A special magic number is hidden")


def test_answer_survives_truncation_and_depth_moves_needle():
    tok = char_tokenizer()
    haystack = tok(WORDS * 100, add_special_tokens=False)["input_ids"]  # far longer than needed
    early, _ = build_needle_sample(tok, haystack, 400, 0.0, "k", "1234567")
    late, labels = build_needle_sample(tok, haystack, 400, 0.5, "k", "1234567")
    assert len(late) == len(labels) == 400
    assert tok.decode(late).endswith("is: 1234567")
    assert tok.decode(early).index("magic numbers for k") < tok.decode(late).index("magic numbers for k")
    with pytest.raises(ValueError, match="leaves no room for a haystack"):
        build_needle_sample(tok, haystack, 150, 0.0, "k", "1234567")


def test_too_few_long_documents_is_a_clear_error(tmp_path):
    folder = _corpus(tmp_path / "t", [900, 200, 1200])
    settings = NeedleSettings(dataset=str(folder), target_length=1000, num_samples=2)
    with pytest.raises(ValueError, match=r"only 1 of 3 documents .* have at least 1000 tokens; 2 samples need 2"):
        needle_samples(char_tokenizer(), settings)


def test_cache_hit_skips_the_corpus_and_key_follows_settings(tmp_path, monkeypatch):
    tok = char_tokenizer()
    folder = _corpus(tmp_path / "t", [2000, 2000])
    settings = NeedleSettings(dataset=str(folder), target_length=500, num_samples=2, seed=3)
    first = needle_samples(tok, settings)

    def boom(*args, **kwargs):
        raise AssertionError("the corpus was read although the samples are cached")

    monkeypatch.setattr(needles, "load_texts", boom)
    again = needle_samples(tok, settings)
    assert torch.equal(first.input_ids, again.input_ids) and again.answers == first.answers
    with pytest.raises(AssertionError, match="corpus was read"):
        needle_samples(tok, NeedleSettings(dataset=str(folder), target_length=500, num_samples=2, seed=4))


def test_ppl_objective_scores_every_token(tmp_path):
    folder = _corpus(tmp_path / "t", [2000, 2000])
    batch = needle_samples(char_tokenizer(), NeedleSettings(dataset=str(folder), target_length=300, num_samples=2,
                                                            objective="ppl"))
    assert ((batch.labels != IGNORE_INDEX).sum(1) == 299).all()
    assert "magic" not in char_tokenizer().decode(batch.input_ids[0])
