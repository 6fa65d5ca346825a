"""Pretraining of the embedded tiny base model: offline corpus, BPE tokenizer, LM + key-to-value recall rows.

```bash
python recipes/pretrain_tiny.py --output-dir tiny-base            # ~30 min on 2 CPU cores, seed 0
python recipes/pretrain_tiny.py --output-dir t --max-steps 20     # a smoke run
```

The corpus is what every Python installation carries: the standard library's sources (``builtin:stdlib``)
and its documentation (``builtin:pydoc``). A byte-level BPE tokenizer is trained on it (digits split one
per token, so a 7-digit number is 7 tokens and copying it is position-by-position). Training rows are one
window long and of four kinds, drawn per row from a seeded generator (so a run is reproducible from its seed
and a resumed run sees the same rows):

- plain text: a random window of the tokenised corpus;
- repeats: a random piece of text or of 7-digit numbers, repeated to fill the window (copying it grows the
  induction heads that retrieval builds on);
- key-to-value snippets: lines ``quiet-harbor-417: 1234567``, then some of the keys again, whose values are
  the answers. Fact and query look alike, so copying (an induction head) solves them, and it forms fast;
- recall: the needle-in-a-haystack template of [`hf_longrope2.data.needles`] (instruction, haystack text,
  1-4 needles "One of the special magic numbers for {key} is: {number}." with distinct random keys,
  the question about one key, its answer), of a random length up to the window, followed by corpus text
  up to the window.

Answer tokens get `answer_weight` in the loss. Keys are random adjective-noun pairs (``quiet-harbor-417``),
numbers random 7-digit integers, so the model cannot memorise answers; it has to find them in its context.
The result is a Llama with the original RoPE and a short window, saved with its tokenizer; training state is
saved every `save_every` steps for ``--resume``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, PreTrainedTokenizerFast

from ..data.needles import ANSWER, INSTRUCTION, NEEDLE, QUESTION

ADJECTIVES = (
    "amber", "quiet", "silver", "northern", "copper", "hidden", "velvet", "rapid", "golden", "misty", "crimson",
    "patient", "bold", "calm", "dusty", "eager", "frozen", "gentle", "hollow", "ivory", "jolly", "kind", "lunar",
    "mellow", "narrow", "olive", "proud", "rustic", "sandy", "tidy", "urban", "vivid", "wild", "young", "zesty",
    "brave", "clever", "distant", "early", "fancy",
)
NOUNS = (
    "falcon", "harbor", "orchid", "lantern", "meadow", "glacier", "comet", "willow", "canyon", "island", "forge",
    "river", "anchor", "badger", "castle", "dune", "ember", "fjord", "garden", "hill", "igloo", "jungle", "kettle",
    "lagoon", "mesa", "nebula", "oasis", "pepper", "quarry", "reef", "summit", "tundra", "valley", "walrus",
    "yarrow", "zephyr", "beacon", "cellar", "delta", "engine",
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


@dataclass
class TinyModelSettings:
    """Architecture of the tiny base (a Llama)."""

    window: int = field(default=256, metadata={"help": "Native context window (max_position_embeddings)"})
    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size, special tokens included"})
    hidden_size: int = field(default=128, metadata={"help": "Model width"})
    intermediate_size: int = field(default=384, metadata={"help": "MLP width"})
    num_hidden_layers: int = field(default=4, metadata={"help": "Decoder layers"})
    num_attention_heads: int = field(default=2, metadata={"help": "Query heads (head_dim = hidden / heads)"})
    num_key_value_heads: int = field(default=1, metadata={"help": "Key/value heads (GQA)"})
    rope_theta: float = field(default=500.0, metadata={"help": "RoPE base (500 with head_dim 64 and window 256: critical dimension 20 of 32 pairs, as SmolLM2)"})


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on `texts`; digits are single tokens."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_llama_config(settings: TinyModelSettings, tokenizer):
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_hidden_layers,
        num_attention_heads=settings.num_attention_heads,
        num_key_value_heads=settings.num_key_value_heads,
        max_position_embeddings=settings.window,
        rope_parameters={"rope_type": "default", "rope_theta": settings.rope_theta},
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_key(rng: random.Random) -> str:
    key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
    return f"{key}-{rng.randint(100, 999)}" if rng.random() < 0.7 else key


class RecallRows:
    """Seeded training rows of one window: plain corpus text or a recall sample (see the module docstring).

    ``rows.row(step, index)`` is a pure function of ``(seed, step, index)``: ``(input_ids, weights)`` with
    weight 1 on ordinary tokens, `answer_weight` on answer tokens and 0 where nothing is predicted.

    Midtraining replays these rows with the evaluation held out: `key` draws keys from another vocabulary
    (pretraining: [`random_key`], adjective-noun pairs like the evaluation's) and ``episodes=False`` turns the
    needle-template rows into key-to-value snippets, so no row holds the evaluation's template.
    """

    def __init__(self, tokenizer, stream: Sequence[int], window: int, seed: int, recall_fraction: float = 0.6,
                 answer_weight: float = 10.0, min_haystack: int = 16,
                 key: Callable[[random.Random], str] = random_key, episodes: bool = True) -> None:
        self.tok, self.stream, self.window, self.seed = tokenizer, stream, window, seed
        self.recall_fraction, self.answer_weight, self.min_haystack = recall_fraction, answer_weight, min_haystack
        self.key, self.episodes = key, episodes
        self.head = [tokenizer.bos_token_id] + self._encode(INSTRUCTION)
        if len(stream) < 4 * window:
            raise ValueError(f"the corpus has {len(stream)} tokens; training rows need at least {4 * window}")

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _text(self, rng: random.Random, n: int) -> list[int]:
        start = rng.randrange(0, len(self.stream) - n)
        return list(self.stream[start : start + n])

    def _keys(self, rng: random.Random, count: int, taken: set[str]) -> list[str]:
        keys: list[str] = []
        while len(keys) < count:
            key = self.key(rng)
            if key not in taken:
                taken.add(key)
                keys.append(key)
        return keys

    def _parts(self, rng: random.Random, taken: set[str]) -> tuple[list[list[int]], list[int], list[int]]:
        """Needles (1-4, distinct keys; the first is the one asked about), the question and its answer."""
        keys = self._keys(rng, rng.choice((1, 1, 2, 3, 4)), taken)
        numbers = [str(rng.randint(1_000_000, 9_999_999)) for _ in keys]
        needles = [self._encode(NEEDLE.format(key=k, number=n)) for k, n in zip(keys, numbers, strict=True)]
        question = self._encode(QUESTION.format(key=keys[0]))
        return needles, question, self._encode(ANSWER.format(number=numbers[0]))

    def _episode(self, rng: random.Random, parts, haystack_budget: int) -> tuple[list[int], int]:
        """The needles spread over `haystack_budget` tokens of text, the question, the answer; returns the
        tokens and where the answer starts."""
        needles, question, answer = parts
        needles = rng.sample(needles, len(needles))  # the asked-about needle anywhere among the distractors
        haystack = self._text(rng, haystack_budget) if haystack_budget > 0 else []
        cuts = sorted(rng.randint(0, haystack_budget) for _ in needles)
        ids, last = [], 0
        for cut, needle in zip(cuts, needles, strict=True):
            ids += haystack[last:cut] + needle
            last = cut
        ids += haystack[last:] + question
        return ids + answer, len(ids)

    def _snippets(self, rng: random.Random) -> tuple[list[int], list[float]]:
        """Key-to-value lines (``quiet-harbor-417: 1234567``), then some keys again: the repeated values are the
        answers. Query and fact look alike, so plain copying (an induction head) solves it: it forms fast, and
        the needle template builds on it."""
        ids, weights, taken = [self.tok.bos_token_id], [1.0], set()
        facts = []
        while True:
            key = self._keys(rng, 1, taken)[0]
            line_key, value = self._encode(f"{key}:"), self._encode(f" {rng.randint(1_000_000, 9_999_999)}\n")
            if len(ids) + len(line_key) + len(value) > self.window * 0.55:
                break
            facts.append((line_key, value))
            ids += line_key + value
            weights += [1.0] * (len(line_key) + len(value))
        while facts:
            line_key, value = facts.pop(rng.randrange(len(facts)))
            if len(ids) + len(line_key) + len(value) > self.window:
                break
            ids += line_key + value
            weights += [1.0] * len(line_key) + [self.answer_weight] * (len(value) - 1) + [1.0]
        filler = self.window - len(ids)
        return ids + (self._text(rng, filler) if filler > 0 else []), weights + [1.0] * filler

    def _repeats(self, rng: random.Random) -> tuple[list[int], list[float]]:
        """A random piece (corpus text or 7-digit numbers) written again and again until the window is full:
        every repetition is predictable by copying, the fastest way to grow induction heads (Olsson et al. 2022),
        which retrieval builds on."""
        if rng.random() < 0.5:
            piece = self._text(rng, rng.randint(12, 80))
        else:
            piece = self._encode(", ".join(str(rng.randint(1_000_000, 9_999_999)) for _ in range(rng.randint(2, 8))))
        piece = piece + self._encode("\n")
        ids = [self.tok.bos_token_id]
        while len(ids) < self.window:
            ids += piece
        return ids[: self.window], [1.0] * self.window

    def row(self, step: int, index: int) -> tuple[list[int], list[float]]:
        """Plain text, repeats, key-to-value snippets, or one recall sample in the evaluation's layout."""
        rng = random.Random(f"{self.seed}-{step}-{index}")
        draw = rng.random()
        if draw >= self.recall_fraction:
            return self._text(rng, self.window), [1.0] * self.window
        if draw < self.recall_fraction / 3:
            return self._repeats(rng)
        if draw < self.recall_fraction / 2 or not self.episodes:
            return self._snippets(rng)
        ids, weights = list(self.head), [1.0] * len(self.head)
        needles, question, answer = self._parts(rng, set())
        fixed = len(ids) + len(question) + len(answer)
        while len(needles) > 1 and fixed + sum(map(len, needles)) + self.min_haystack > self.window:
            needles.pop()  # a distractor: needles[0] is the one asked about
        room = self.window - fixed - sum(map(len, needles))
        if room >= self.min_haystack:  # one sample in the evaluation's layout, of any length up to the window
            episode, at = self._episode(rng, (needles, question, answer), rng.randint(self.min_haystack, room))
            weights += [1.0] * at + [self.answer_weight] * (len(episode) - at)
            ids += episode
        filler = self.window - len(ids)
        ids += self._text(rng, filler) if filler > 0 else []
        weights += [1.0] * filler
        return ids, weights


def weighted_lm_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, float | None]:
    """Next-token NLL weighted per target token, ``sum(w * nll) / sum(w)`` over positions 1..n, and the mean
    NLL of the answer tokens (weight > 1; ``None`` when the batch has none) for the log."""
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none"
    )
    w = weights[:, 1:].flatten()
    answers = w > 1
    answer_nll = nll.detach()[answers].mean().item() if bool(answers.any()) else None
    return (nll * w).sum() / w.sum(), answer_nll


def cosine_lr(step: int, max_steps: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up to `peak`, then cosine decay to ``floor * peak`` at `max_steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
