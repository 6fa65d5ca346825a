"""Needle-in-a-haystack evaluation: a lengths x depths grid scored by exact match of greedy answers.

```python
>>> from hf_longrope2.evaluation.niah import haystack_stream, niah_grid, greedy_continuations, exact_match
>>> docs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in load_texts("builtin:pydoc")]
>>> stream = haystack_stream(docs, separator=tokenizer("\\n\\n")["input_ids"], min_tokens=8192)
>>> grid = niah_grid(tokenizer, stream, lengths=[4096, 8192], depths=[0.0, 0.5, 1.0], needles_per_cell=4)
>>> cell = grid[(8192, 0.5)]                      # NiahCell: prompts [4, 8192 - answer] and answers
>>> out = greedy_continuations(model, cell.prompts, cell.max_new_tokens)
>>> accuracy = sum(exact_match(tokenizer.decode(o), a) for o, a in zip(out, cell.answers)) / len(cell.answers)
```

A cell of length ``L`` holds samples of exactly ``L`` tokens (the search's template: instruction, haystack,
one needle "One of the special magic numbers for {key} is: {number}." at the cell's depth, question, answer),
cut from one token stream of concatenated documents at random offsets, the way NIAH haystacks are usually
built (Kamradt's test concatenates essays). The model sees the sample without its answer and generates the
answer greedily; the answer must come out exactly (the 7-digit number, not followed by another digit).
Every prompt of a cell has the same length, so a cell is one padding-free batch; ``generate`` projects only
the last position onto the vocabulary (``logits_to_keep=1``), never [sequence x vocabulary].
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig

from ..data.needles import ANSWER, KEYS, build_needle_sample, niah_template
from ..losses import IGNORE_INDEX, labelled_nll


@dataclass
class NiahCell:
    """The samples of one (length, depth) cell: prompts without the answer, and the answers as text.

    `scored` keeps each whole sample (prompt and answer) with its labels, for the answer's NLL
    ([`answer_nll`]): exact match is 0 or 1, the NLL shows how close a model that misses comes.
    """

    length: int
    depth: float
    prompts: torch.Tensor  # [needles, length - answer tokens]
    answers: list[str]
    max_new_tokens: int
    scored: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (input_ids, labels) per sample


def haystack_stream(documents: Sequence[Sequence[int]], separator: Sequence[int], min_tokens: int, seed: int = 0) -> list[int]:
    """Tokenised `documents` in a seeded order joined by `separator`, up to ``2 * min_tokens`` tokens (or all).

    Twice the longest cell leaves room for different haystacks at random offsets.

    Raises:
        ValueError: if all `documents` together have fewer than `min_tokens` tokens.
    """
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    stream: list[int] = []
    for i in order:
        stream += list(documents[i]) + list(separator)
        if len(stream) >= 2 * min_tokens:
            break
    if len(stream) < min_tokens:
        raise ValueError(
            f"the haystack documents have {len(stream)} tokens in all; the longest needle cell needs {min_tokens}. "
            "Use a larger --dataset or smaller --lengths"
        )
    return stream


def niah_grid(
    tokenizer,
    stream: Sequence[int],
    lengths: Sequence[int],
    depths: Sequence[float],
    needles_per_cell: int,
    seed: int = 0,
    template: str = "magic",
) -> dict[tuple[int, float], NiahCell]:
    """Every (length, depth) cell of the grid, each with `needles_per_cell` samples.

    Each sample has its own haystack offset, key and 7-digit number; the same seed gives the same grid, and the
    same draws for every `template` (so templates differ only in the question).
    """
    niah_template(template)  # an unknown name fails before any sample is built
    if needles_per_cell < 1:
        raise ValueError(f"needles_per_cell must be >= 1, got {needles_per_cell}")
    bad = [d for d in depths if not 0.0 <= d <= 1.0]
    if bad:
        raise ValueError(f"depths must be in [0, 1] (fractions of the haystack), got {bad}")
    longest = max(lengths)
    if len(stream) < longest:
        raise ValueError(f"the haystack stream has {len(stream)} tokens; the longest cell needs {longest}")
    rng = random.Random(seed)
    grid = {}
    for length in lengths:
        for depth in depths:
            draws = []
            for j in range(needles_per_cell):
                key = f"{KEYS[j % len(KEYS)]}-{rng.randint(100, 999)}"
                number = str(rng.randint(1_000_000, 9_999_999))
                start = rng.randint(0, len(stream) - length)
                answer_len = len(tokenizer(ANSWER.format(number=number), add_special_tokens=False)["input_ids"])
                draws.append((key, number, start, answer_len))
            # A BPE tokenizer may spend more tokens on some numbers: shorten those samples' haystacks so every
            # prompt of the cell has the same width (one batch) and no sample exceeds `length`.
            longest_answer = max(d[3] for d in draws)
            prompts, scored = [], []
            for key, number, start, answer_len in draws:
                target = length - (longest_answer - answer_len)
                ids, labels = build_needle_sample(tokenizer, list(stream[start : start + length]), target, depth, key,
                                                  number, template)
                prompts.append(ids[: target - answer_len])
                scored.append((ids, labels))
            grid[(length, depth)] = NiahCell(
                length, depth, torch.tensor(prompts), [d[1] for d in draws], longest_answer + 2, scored
            )
    return grid


@torch.no_grad()
def greedy_continuations(model, prompts: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy continuations [batch, max_new_tokens] of equal-length `prompts` [batch, seq] (no padding needed).

    Uses ``model.generate`` with a KV cache and a fresh greedy generation config (the model's own sampling
    settings are ignored); only the last position of each step goes through the output head.
    """
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None else 0,
        eos_token_id=None,
    )
    device = next(model.parameters()).device
    prompts = prompts.to(device)
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), generation_config=config)
    return out[:, prompts.shape[1] :].cpu()


def exact_match(prediction: str, answer: str) -> bool:
    """True when `prediction`, leading spaces removed, starts with `answer` not followed by a letter or digit.

    ``" 1234567."`` matches ``"1234567"``; ``" 12345678"`` and ``" 123456"`` do not.
    """
    text = prediction.lstrip()
    if not text.startswith(answer):
        return False
    rest = text[len(answer) :]
    return not rest or not rest[0].isalnum()


def answer_prefix() -> str:
    """The text between the prompt and the answer digits (the template's answer starts with a space)."""
    return ANSWER.split("{")[0]


def score_niah(
    model,
    tokenizer,
    cells: Iterable[NiahCell],
    batch_size: int = 1,
    on_cell: Callable[[NiahCell, float], None] | None = None,
) -> dict[tuple[int, float], float]:
    """Exact-match accuracy of each cell; rows of equal prompt width share batches across cells.

    Args:
        on_cell: Called with each cell and its accuracy as soon as its last row is scored (progress, state).

    Returns:
        ``{(length, depth): accuracy}``.
    """
    by_width: dict[int, list[tuple[NiahCell, int]]] = defaultdict(list)
    for cell in cells:
        by_width[cell.prompts.shape[1]] += [(cell, i) for i in range(len(cell.answers))]
    hits: dict[tuple[int, float], list[bool]] = defaultdict(list)
    accuracy = {}
    for rows in by_width.values():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            prompts = torch.stack([cell.prompts[i] for cell, i in chunk])
            outputs = greedy_continuations(model, prompts, max(cell.max_new_tokens for cell, _ in chunk))
            for (cell, i), out in zip(chunk, outputs, strict=True):
                key = (cell.length, cell.depth)
                hits[key].append(exact_match(tokenizer.decode(out, skip_special_tokens=True), cell.answers[i]))
                if len(hits[key]) == len(cell.answers):
                    accuracy[key] = sum(hits[key]) / len(hits[key])
                    if on_cell is not None:
                        on_cell(cell, accuracy[key])
    return accuracy


def answer_nll(model, cells: Iterable[NiahCell], batch_size: int = 1) -> float:
    """Mean NLL per answer digit token of `cells`' whole samples, teacher-forced (lower: closer to the answer).

    Rows are right-padded with unscored tokens (a causal model's earlier positions are unchanged) and scored by
    [`~hf_longrope2.losses.labelled_nll`], which puts only the answer's positions through the output head.
    """
    device = next(model.parameters()).device
    total, count = 0.0, 0
    rows = [row for cell in cells for row in cell.scored]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in chunk])
        labels = torch.tensor([labels + [IGNORE_INDEX] * (width - len(labels)) for _, labels in chunk])
        with torch.no_grad():
            means = labelled_nll(model, ids.to(device), labels.to(device)).double().cpu()
        counts = (labels[:, 1:] != IGNORE_INDEX).sum(1)
        total += float((means * counts).sum())  # per-row means back to a mean over every digit token
        count += int(counts.sum())
    return total / max(count, 1)
