"""RULER-style synthetic long-context tasks, built offline from any haystack text (no Hub access needed).

```python
>>> from hf_longrope2.data.texts import load_texts
>>> from hf_longrope2.evaluation.ruler import RULER_TASKS, ruler_samples, string_match_all
>>> samples = ruler_samples(tokenizer, "niah_multikey", 4096, num_samples=8, haystacks=load_texts("builtin:pydoc"))
>>> s = samples[0]
>>> len(s.input_ids), s.answers                     # (4096, ['4821337'])
>>> out = model.generate(torch.tensor([s.input_ids]), max_new_tokens=s.max_new_tokens, do_sample=False)
>>> string_match_all(tokenizer.decode(out[0, len(s.input_ids):]), s.answers)   # 1.0 when every answer is found
```

Four tasks from RULER (Hsieh et al. 2024, "RULER: What's the Real Context Size of Your Long-Context Language
Models?", arXiv 2404.06654), with templates and default sizes adapted from the paper:

- ``niah_multikey``: 4 needles "One of the special magic numbers for {key} is: {number}." with different keys;
  the question asks for one key (the other three are distractors).
- ``niah_multivalue``: 4 needles for the same key; the question asks for all 4 numbers.
- ``variable_tracking``: one chain ``VAR ABCDE = 12345``, ``VAR FGHIJ = VAR ABCDE``, ... of 4 hops scattered
  through the haystack; the question asks for every variable that holds the value (RULER's noise sentences are
  replaced by real haystack text).
- ``common_words``: a numbered list where 10 words appear many times (30, fewer for short lengths) and the others
  2-3 times (RULER's CWE; more when the haystacks' vocabulary is small, always fewer than the common words); the
  question asks for the 10 most common. Words come from the haystacks.

Needles and statements go at random depths, moved back to the nearest end of a sentence or line when one is close.

Every sample is exactly ``length`` tokens: BOS (when the tokenizer has one), the instruction, the context, the
question and an answer prefix that ends where the answer starts. Token lists are built piece by piece (each
needle, statement and list entry tokenised on its own, the haystack cut at token boundaries), so BPE merges across
pieces cannot change the count. Samples are deterministic for a given ``seed``. The metric is RULER's
``string_match_all``: the fraction of reference strings found in the prediction, ignoring case.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from ..data.needles import KEYS

NIAH_INSTRUCTION = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards.\n"
)
NIAH_NEEDLE = " One of the special magic numbers for {key} is: {number}. "
NIAH_QUESTION = (
    "\nWhat are all the special magic numbers for {key} mentioned in the provided text? "
    "The special magic numbers for {key} mentioned in the provided text are"
)
VT_INSTRUCTION = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
VT_STATEMENT = " VAR {name} = {value}. "
VT_QUESTION = (
    "\nQuestion: Find all variables that are assigned the value {value} in the text above. Answer: According to "
    "the chain(s) of variable assignment in the text above, {count} variables are assigned the value {value}, "
    "they are:"
)
CWE_INSTRUCTION = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n"
)
CWE_QUESTION = (
    "\nQuestion: What are the {n} most common words in the above list? "
    "Answer: The top {n} words that appear most often in the list are:"
)
DOC_SEPARATOR = "\n\n"  # between haystack documents
WORD_PATTERN = re.compile(r"\b[a-z]{3,12}\b")  # common_words vocabulary
ANSWER_MARGIN = 8  # extra new tokens beyond the answers themselves
SNAP_REACH = 128  # tokens searched back from a depth for the end of a sentence or line


@dataclass
class TaskSample:
    """One prompt of exactly `length` tokens and what a correct continuation must contain."""

    input_ids: list[int]  # the whole prompt, ending right where the answer starts
    answers: list[str]  # reference strings, all expected in the answer
    max_new_tokens: int  # enough tokens to generate every answer with this tokenizer, plus a small margin


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _encode_all(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _head(tokenizer, instruction: str) -> list[int]:
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + _encode(tokenizer, instruction)


def _sample(tokenizer, ids: list[int], answers: list[str]) -> TaskSample:
    needed = sum(len(_encode(tokenizer, f" {answer},")) for answer in answers)
    return TaskSample(input_ids=ids, answers=answers, max_new_tokens=needed + ANSWER_MARGIN)


def _numbers(rng: random.Random, count: int, digits: int) -> list[str]:
    return [str(n) for n in rng.sample(range(10 ** (digits - 1), 10**digits), count)]


def _names(rng: random.Random, count: int) -> list[str]:
    names: dict[str, None] = {}
    while len(names) < count:
        names["".join(rng.choices(string.ascii_uppercase, k=5))] = None
    return list(names)


class _Haystack:
    """The haystack documents, tokenised (joined by a blank line) or split into words on first use only."""

    def __init__(self, tokenizer, texts: list[str], length: int):
        self.tokenizer, self.texts, self.length = tokenizer, texts, length

    @cached_property
    def tokens(self) -> list[int]:
        separator, tokens = _encode(self.tokenizer, DOC_SEPARATOR), []
        for text in self.texts:  # a few windows' worth is enough for random offsets
            tokens += (separator if tokens else []) + _encode(self.tokenizer, text)
            if len(tokens) >= 4 * self.length:
                break
        return tokens

    @cached_property
    def boundaries(self) -> set[int]:
        """Tokens that end a sentence or line: inserted statements go right after one, as RULER's do."""
        return {ids[-1] for text in (".", "\n", ".\n", "\n\n") if (ids := _encode(self.tokenizer, text))}

    def snap(self, window: list[int], at: int) -> int:
        """The last position <= `at` (at most SNAP_REACH back) that follows a boundary token, else `at`."""
        for p in range(at, max(0, at - SNAP_REACH) - 1, -1):
            if p == 0 or window[p - 1] in self.boundaries:
                return p
        return at

    @cached_property
    def words(self) -> list[str]:
        words: dict[str, None] = {}
        for text in self.texts:  # a list of `length` tokens holds at most length / 2 entries
            words.update(dict.fromkeys(WORD_PATTERN.findall(text)))
            if len(words) >= self.length:
                break
        return list(words)

    @cached_property
    def word_pieces(self) -> dict[str, list[int]]:
        return dict(zip(self.words, _encode_all(self.tokenizer, [f" {w}\n" for w in self.words]), strict=True))


def _embed(
    task: str,
    length: int,
    rng: random.Random,
    haystack: _Haystack,
    head: list[int],
    pieces: list[list[int]],
    depths: list[float],
    tail: list[int],
) -> list[int]:
    """`head`, a haystack window with `pieces` inserted near fractional `depths` (ties keep order), then `tail`."""
    fixed = len(head) + sum(map(len, pieces)) + len(tail)
    budget = length - fixed
    if budget < 1:
        raise ValueError(
            f"length {length} leaves no room for a haystack in {task}: the instruction, {len(pieces)} inserted "
            f"statements, question and answer prefix take {fixed} tokens with this tokenizer"
        )
    stream = haystack.tokens
    if len(stream) < budget:
        raise ValueError(
            f"not enough haystack text for {task} at length {length}: needs {budget} tokens, the haystacks hold "
            f"{len(stream)} with this tokenizer"
        )
    start = rng.randint(0, len(stream) - budget)
    window, ids, done = stream[start : start + budget], list(head), 0
    for depth, piece in sorted(zip(depths, pieces, strict=True), key=lambda pair: pair[0]):
        at = max(done, haystack.snap(window, round(depth * budget)))
        ids += window[done:at] + piece
        done = at
    return ids + window[done:] + tail


def niah_multikey(tokenizer, length: int, rng: random.Random, haystack: _Haystack, num_keys: int = 4) -> TaskSample:
    """`num_keys` needles with different keys at random depths; the answer is the number of one of them."""
    keys, numbers = rng.sample(KEYS, num_keys), _numbers(rng, num_keys, 7)
    query = rng.randrange(num_keys)
    pieces = [_encode(tokenizer, NIAH_NEEDLE.format(key=k, number=n)) for k, n in zip(keys, numbers, strict=True)]
    depths = [rng.random() for _ in pieces]
    tail = _encode(tokenizer, NIAH_QUESTION.format(key=keys[query]))
    ids = _embed("niah_multikey", length, rng, haystack, _head(tokenizer, NIAH_INSTRUCTION), pieces, depths, tail)
    return _sample(tokenizer, ids, [numbers[query]])


def niah_multivalue(tokenizer, length: int, rng: random.Random, haystack: _Haystack, num_values: int = 4) -> TaskSample:
    """`num_values` needles for the same key at random depths; the answers are all their numbers."""
    key, numbers = rng.choice(KEYS), _numbers(rng, num_values, 7)
    pieces = [_encode(tokenizer, NIAH_NEEDLE.format(key=key, number=n)) for n in numbers]
    depths = [rng.random() for _ in pieces]
    tail = _encode(tokenizer, NIAH_QUESTION.format(key=key))
    ids = _embed("niah_multivalue", length, rng, haystack, _head(tokenizer, NIAH_INSTRUCTION), pieces, depths, tail)
    return _sample(tokenizer, ids, numbers)


def variable_tracking(
    tokenizer, length: int, rng: random.Random, haystack: _Haystack, num_chains: int = 1, num_hops: int = 4
) -> TaskSample:
    """`num_chains` assignment chains of `num_hops` hops, in order at random depths; asks for the first chain."""
    names, values = _names(rng, num_chains * (num_hops + 1)), _numbers(rng, num_chains, 5)
    pieces, depths = [], []
    for c in range(num_chains):
        chain = names[c * (num_hops + 1) : (c + 1) * (num_hops + 1)]
        rhs = [values[c]] + [f"VAR {name}" for name in chain[:-1]]
        pieces += [_encode(tokenizer, VT_STATEMENT.format(name=n, value=v)) for n, v in zip(chain, rhs, strict=True)]
        depths += sorted(rng.random() for _ in chain)  # a chain reads in order
    answers = names[: num_hops + 1]
    tail = _encode(tokenizer, VT_QUESTION.format(value=values[0], count=len(answers)))
    ids = _embed("variable_tracking", length, rng, haystack, _head(tokenizer, VT_INSTRUCTION), pieces, depths, tail)
    return _sample(tokenizer, ids, answers)


def common_words(
    tokenizer,
    length: int,
    rng: random.Random,
    haystack: _Haystack,
    num_common: int = 10,
    max_common_freq: int = 30,
    rare_freq: int = 3,
) -> TaskSample:
    """A numbered list filling the length: `num_common` words repeated often, the rest fewer than them.

    The common words appear ``f`` times, the largest ``f <= max_common_freq`` whose entries take at most half the
    list (at least ``rare_freq + 1``); the others a few times each (2 to `rare_freq` when the vocabulary allows,
    never more than ``f - 1``). A remainder too small for any entry is padded with newline tokens.
    """
    head, tail = _head(tokenizer, CWE_INSTRUCTION), _encode(tokenizer, CWE_QUESTION.format(n=num_common))
    budget = length - len(head) - len(tail)
    vocab = haystack.words
    if len(vocab) <= num_common:
        raise ValueError(
            f"not enough haystack text for common_words: needs more than {num_common} distinct words, the "
            f"haystacks hold {len(vocab)}"
        )
    words = rng.sample(vocab, len(vocab))
    common, pool, pieces = words[:num_common], words[num_common:], haystack.word_pieces
    number_pieces = _encode_all(tokenizer, [f"{i}." for i in range(1, max(budget, 0) // 2 + 2)])  # entry >= 2 tokens
    prefix = list(itertools.accumulate((len(p) for p in number_pieces), initial=0))
    common_cost = sum(len(pieces[w]) for w in common)

    def cost_of_common(freq: int) -> float:
        n = num_common * freq
        return prefix[n] + freq * common_cost if n < len(prefix) else math.inf

    freq = rare_freq + 1
    if cost_of_common(freq) > budget:
        needed = cost_of_common(freq) if cost_of_common(freq) < math.inf else f"more than {max(budget, 0)}"
        raise ValueError(
            f"length {length} is too short for common_words: the instruction and question take "
            f"{len(head) + len(tail)} tokens and the shortest list ({num_common} words x {freq}) takes {needed}"
        )
    while freq < max_common_freq and cost_of_common(freq + 1) <= budget // 2:
        freq += 1
    common_used = cost_of_common(freq)
    rare_entries = (budget - common_used) * num_common * freq / common_used  # at the common words' mean cost
    estimate = math.ceil(1.25 * rare_entries / rare_freq)  # distinct words for about rare_freq uses each
    tries = [min(len(pool), max(1, estimate) << k) for k in range(len(pool).bit_length() + 1)]
    for n_rare in dict.fromkeys(tries):  # the estimate, doubled until the list fills (up to every word)
        entries, used, full = [w for w in common for _ in range(freq)], common_used, False
        shortest = min(len(pieces[w]) for w in pool[:n_rare])
        for word in itertools.chain.from_iterable(itertools.repeat(pool[:n_rare], freq - 1)):
            next_number = len(number_pieces[len(entries)])
            if used + next_number + shortest > budget:
                full = True
                break
            if used + next_number + len(pieces[word]) <= budget:  # else skip it: a shorter word may still fit
                entries.append(word)
                used += next_number + len(pieces[word])
        if full or used == budget:
            break
    else:
        raise ValueError(
            f"not enough haystack text for common_words at length {length}: {len(vocab)} distinct words, each "
            f"used fewer than {freq} times, fill {used} of the {budget} list tokens needed"
        )
    rng.shuffle(entries)
    ids = list(head)
    for number, word in zip(number_pieces[: len(entries)], entries, strict=True):
        ids += number + pieces[word]
    ids += _encode(tokenizer, "\n")[-1:] * (budget - used) + tail
    return _sample(tokenizer, ids, common)


# name -> builder(tokenizer, length, rng, haystack) of one sample
RULER_TASKS: dict[str, Callable[..., TaskSample]] = {
    "niah_multikey": niah_multikey,
    "niah_multivalue": niah_multivalue,
    "variable_tracking": variable_tracking,
    "common_words": common_words,
}


def ruler_samples(
    tokenizer, task: str, length: int, num_samples: int, haystacks: list[str], seed: int = 0
) -> list[TaskSample]:
    """Build `num_samples` prompts of exactly `length` tokens for the RULER `task`.

    Args:
        tokenizer: A Hugging Face tokenizer; its BOS token (if any) starts every prompt.
        task: One of [`RULER_TASKS`].
        length: Tokens per prompt, answer prefix included.
        num_samples: How many prompts.
        haystacks: Long documents; NIAH and variable tracking cut windows from them (joined by a blank line),
            common words draws its vocabulary from them.
        seed: Samples are a deterministic function of the arguments and this seed.

    Returns:
        The samples, each with its reference answers and a ``max_new_tokens`` long enough to generate them all.
    """
    if task not in RULER_TASKS:
        raise ValueError(f"unknown RULER task {task!r}; accepted tasks: {sorted(RULER_TASKS)}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    rng, haystack = random.Random(seed), _Haystack(tokenizer, list(haystacks), length)
    samples = [RULER_TASKS[task](tokenizer, length, rng, haystack) for _ in range(num_samples)]
    for sample in samples:  # a broken invariant here would silently skew every score
        assert len(sample.input_ids) == length, (task, len(sample.input_ids), length)
    return samples


def string_match_all(prediction: str, answers: list[str]) -> float:
    """RULER's metric: the fraction of `answers` that occur in `prediction`, ignoring case (0.0 to 1.0)."""
    if not answers:
        raise ValueError("string_match_all needs at least one reference answer")
    prediction = prediction.lower()
    return sum(answer.lower() in prediction for answer in answers) / len(answers)
