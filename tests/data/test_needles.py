"""Needle samples: exact length, answer-only labels, the answer survives truncation, errors and the cache."""

from __future__ import annotations

import pytest
import torch

from hf_longrope2.data import needles
from hf_longrope2.data.needles import NeedleSettings, build_needle_sample, needle_samples
from hf_longrope2.losses import IGNORE_INDEX
from hf_longrope2.tiny.models import char_tokenizer

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
        n = len(answer)
        assert scored.sum() == n and scored[-n:].all()  # the answer's digits, and only they, end the sample
        assert tok.decode(labels[scored]) == answer
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


def _space_merging_tokenizer():
    """Characters, plus tokens " 0" .. " 9" that merge the leading space into the first digit."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    merged = [f" {d}" for d in "0123456789"]
    vocab = {token: i for i, token in enumerate(specials + chars + merged)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[(" ", d) for d in "0123456789"], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def _tiny_base_tokenizer():
    from transformers import AutoTokenizer

    from hf_longrope2.tiny.base import tiny_base_path

    return AutoTokenizer.from_pretrained(tiny_base_path())


@pytest.mark.parametrize(
    "make,first_token",
    [(_tiny_base_tokenizer, "1"), (_space_merging_tokenizer, " 1"), (char_tokenizer, "1")],
    ids=["tiny-bpe", "space-merged", "chars"],
)
def test_only_the_digits_are_scored_whatever_the_tokenizer_does_with_the_space(make, first_token):
    tok = make()
    haystack = tok(WORDS * 100, add_special_tokens=False)["input_ids"]
    ids, labels = build_needle_sample(tok, haystack, 400, 0.3, "k", "1234567")
    scored = [t for t in labels if t != IGNORE_INDEX]
    assert ids[-len(scored):] == scored  # the scored tokens end the sample
    assert tok.decode(scored).strip() == "1234567"
    assert tok.convert_ids_to_tokens(scored[0]).replace("\u0120", " ") == first_token
    assert len(scored) == 7  # one token per digit here; never the lone space
    assert labels[-8] == IGNORE_INDEX  # the token before the number (the space, or the colon) is not scored


def test_offsets_and_decoding_give_the_same_mask():
    """The slow-tokenizer path (decoding prefixes) marks the same tokens as character offsets."""
    tok = _space_merging_tokenizer()
    fast = needles.number_token_mask(tok, " 1234567", 1, 8)

    class Slow:
        is_fast = False

        def __call__(self, text, add_special_tokens=False):
            return tok(text, add_special_tokens=add_special_tokens)

        def decode(self, ids):
            return tok.decode(ids)

    assert needles.number_token_mask(Slow(), " 1234567", 1, 8) == fast
    assert fast[1] == [True] * 7


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_one_huge_line_is_read_and_tokenised_only_as_far_as_samples_need(tmp_path, monkeypatch, suffix):
    import json

    text = "lorem ipsum dolor sit amet " * 200_000  # one 5.4 MB line: tokenised whole, it took GBs at 60 MB
    path = tmp_path / f"huge{suffix}"
    path.write_text(text if suffix == ".txt" else json.dumps({"text": text}) + "\n")
    seen = []
    encode = needles._encode
    monkeypatch.setattr(needles, "_encode", lambda tokenizer, t: seen.append(len(t)) or encode(tokenizer, t))
    batch = needle_samples(char_tokenizer(), NeedleSettings(dataset=str(path), target_length=512, num_samples=1),
                           use_cache=False)
    assert batch.input_ids.shape == (1, 512)
    assert max(seen) == needles.haystack_chars(512) == 2**20 < len(text)


def test_echo_template_repeats_the_needle_words_and_magic_does_not():
    from hf_longrope2.data.needles import NEEDLE, niah_template

    tok = char_tokenizer()
    haystack = tok("lorem ipsum dolor " * 40, add_special_tokens=False)["input_ids"]
    samples = {t: build_needle_sample(tok, haystack, 400, 0.5, "k-12", "1234567", template=t) for t in ("magic", "echo")}
    texts = {t: tok.decode(ids) for t, (ids, _) in samples.items()}
    needle_words = NEEDLE.format(key="k-12", number="").strip().rstrip(".").strip()  # "One of ... for k-12 is:"
    tail = {t: text[-(len(needle_words) + 9):] for t, text in texts.items()}
    assert needle_words in tail["echo"] and needle_words not in tail["magic"]
    for ids, labels in samples.values():  # same length, same scored answer digits
        assert len(ids) == 400 and [t for t in labels if t != -100] == tok("1234567", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="unknown NIAH template 'nope'.*echo.*magic"):
        niah_template("nope")
