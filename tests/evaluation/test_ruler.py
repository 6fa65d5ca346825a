"""RULER tasks: exact lengths (char and BPE tokenizers), answers recoverable from the prompt, seeds, metric, errors."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from hf_longrope2.data.texts import load_texts
from hf_longrope2.evaluation.ruler import RULER_TASKS, ruler_samples, string_match_all
from hf_longrope2.tiny.models import char_tokenizer

NEEDLE = re.compile(r"One of the special magic numbers for ([\w-]+) is: (\d+)\.")
NIAH_QUERY = re.compile(r"What are all the special magic numbers for ([\w-]+) mentioned in the provided text\?")
STATEMENT = re.compile(r"VAR ([A-Z]{5}) = (VAR [A-Z]{5}|\d+)\.")
VT_QUERY = re.compile(r"Find all variables that are assigned the value (\d+) in the text above\.")
LIST_ENTRY = re.compile(r"(?m)^(\d+)\. ([a-z]+)$")
PREFIXES = {
    "niah_multikey": "mentioned in the provided text are",
    "niah_multivalue": "mentioned in the provided text are",
    "variable_tracking": "they are:",
    "common_words": "the top 10 words that appear most often in the list are:",
}


@pytest.fixture(scope="module")
def haystacks():
    return load_texts("builtin:pydoc")


def _bpe(haystacks, bos: bool):
    """A ~500-token byte-level BPE trained in memory on the pydoc text (merges make counts context-dependent)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(haystacks[:2], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>" if bos else None, eos_token="</s>")


@pytest.fixture(scope="module")
def tokenizers(haystacks):
    return {"char": char_tokenizer(), "bpe": _bpe(haystacks, bos=True), "bpe_no_bos": _bpe(haystacks, bos=False)}


def _decode(tokenizer, sample) -> str:
    return tokenizer.decode(sample.input_ids, skip_special_tokens=True)


@pytest.mark.parametrize("name", ["char", "bpe", "bpe_no_bos"])
@pytest.mark.parametrize("task", sorted(RULER_TASKS))
def test_every_sample_has_exactly_the_length(task, name, tokenizers, haystacks):
    tok = tokenizers[name]
    for length in (1000, 2345, 6000):
        samples = ruler_samples(tok, task, length, 2, haystacks, seed=length)
        for sample in samples:
            assert len(sample.input_ids) == length
            assert (sample.input_ids[0] == tok.bos_token_id) == (tok.bos_token_id is not None)
            assert _decode(tok, sample).lower().endswith(PREFIXES[task])
            needed = len(tok(" " + ", ".join(sample.answers), add_special_tokens=False)["input_ids"])
            assert needed < sample.max_new_tokens <= needed + 3 * len(sample.answers) + 8


@pytest.mark.parametrize("name", ["char", "bpe"])
def test_niah_needles_hold_the_answers(name, tokenizers, haystacks):
    tok = tokenizers[name]
    for sample in ruler_samples(tok, "niah_multikey", 3000, 3, haystacks):
        text = _decode(tok, sample)
        needles = NEEDLE.findall(text)
        keys = [key for key, _ in needles]
        assert len(needles) == len(set(keys)) == 4  # one real key, three distractors
        (query,) = NIAH_QUERY.findall(text)
        assert sample.answers == [dict(needles)[query]]
    for sample in ruler_samples(tok, "niah_multivalue", 3000, 3, haystacks):
        text = _decode(tok, sample)
        needles = NEEDLE.findall(text)
        (query,) = NIAH_QUERY.findall(text)
        assert {key for key, _ in needles} == {query}
        assert sorted(number for _, number in needles) == sorted(sample.answers) and len(set(sample.answers)) == 4


@pytest.mark.parametrize("name", ["char", "bpe"])
def test_following_the_chain_gives_exactly_the_answers(name, tokenizers, haystacks):
    tok = tokenizers[name]
    for sample in ruler_samples(tok, "variable_tracking", 3000, 3, haystacks):
        text = _decode(tok, sample)
        (value,) = VT_QUERY.findall(text)
        assigned = dict(STATEMENT.findall(text))
        assert len(assigned) == 5  # RULER's default: one chain of 4 hops
        holders, frontier = set(), {value}
        while frontier:
            frontier = {name for name, rhs in assigned.items() if rhs.removeprefix("VAR ") in frontier} - holders
            holders |= frontier
        assert holders == set(sample.answers) and len(sample.answers) == 5
        assert f"{len(sample.answers)} variables are assigned the value {value}" in text


@pytest.mark.parametrize("name,length", [("char", 1000), ("char", 12000), ("bpe", 3000), ("bpe", 12000)])
def test_common_words_are_strictly_the_most_frequent(name, length, tokenizers, haystacks):
    tok = tokenizers[name]
    for sample in ruler_samples(tok, "common_words", length, 2, haystacks):
        entries = LIST_ENTRY.findall(_decode(tok, sample))
        assert [int(number) for number, _ in entries] == list(range(1, len(entries) + 1))
        counts = Counter(word for _, word in entries)
        assert len(sample.answers) == 10
        rest = [count for word, count in counts.items() if word not in sample.answers]
        assert min(counts[word] for word in sample.answers) > max(rest)
        assert len(rest) >= 5 and max(rest) <= 3  # the others are rare, as in RULER's CWE


def test_seed_determines_the_samples(tokenizers, haystacks):
    tok = tokenizers["char"]
    for task in RULER_TASKS:
        first = ruler_samples(tok, task, 1500, 2, haystacks, seed=1)
        again = ruler_samples(tok, task, 1500, 2, haystacks, seed=1)
        other = ruler_samples(tok, task, 1500, 2, haystacks, seed=2)
        assert first == again
        assert first[0].input_ids != first[1].input_ids  # samples differ within a set
        assert all(a.input_ids != b.input_ids and a.answers != b.answers for a, b in zip(first, other, strict=True))


def test_string_match_all():
    answers = ["1234567", "Alpha"]
    assert string_match_all("The numbers are 1234567 and alpha.", answers) == 1.0
    assert string_match_all("only 1234567", answers) == 0.5
    assert string_match_all("ALPHA", ["alpha"]) == 1.0
    assert string_match_all("nothing here", answers) == 0.0
    with pytest.raises(ValueError, match="at least one reference answer"):
        string_match_all("x", [])


def test_errors_name_the_problem(tokenizers, haystacks):
    tok = tokenizers["char"]
    with pytest.raises(ValueError, match=r"unknown RULER task 'niah_single'; accepted tasks: \['common_words', "):
        ruler_samples(tok, "niah_single", 1000, 1, haystacks)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        ruler_samples(tok, "niah_multikey", 1000, 0, haystacks)
    with pytest.raises(ValueError, match=r"length 300 leaves no room for a haystack in niah_multikey: .* take \d+ tok"):
        ruler_samples(tok, "niah_multikey", 300, 1, haystacks)
    with pytest.raises(ValueError, match=r"length 500 is too short for common_words: .* take \d+ tokens and the sh"):
        ruler_samples(tok, "common_words", 500, 1, haystacks)
    with pytest.raises(ValueError, match=r"variable_tracking at length 2000: needs \d+ tokens, the haystacks hold 28"):
        ruler_samples(tok, "variable_tracking", 2000, 1, ["only a short document.", "tiny"])
    with pytest.raises(ValueError, match=r"needs more than 10 distinct words, the haystacks hold 3"):
        ruler_samples(tok, "common_words", 2000, 1, ["one two three one two"])
    with pytest.raises(ValueError, match=r"not enough haystack text for common_words at length 20000: 30 distinct"):
        ruler_samples(
            tok, "common_words", 20000, 1, [" ".join(f"word{chr(97 + i // 5)}{chr(97 + i % 5)}" for i in range(30))]
        )
