"""Needle-in-a-haystack samples: the LongRoPE2 search objective (paper section 4, App. C template).

```python
>>> from hf_longrope2.data.needles import NeedleSettings, needle_samples
>>> batch = needle_samples(tokenizer, NeedleSettings(dataset="builtin:pydoc", target_length=4096, num_samples=4))
>>> batch.input_ids.shape, (batch.labels != -100).sum(1)     # [4, 4096]; answer tokens per sample
```

Each sample is exactly ``target_length`` tokens: an instruction, a haystack cut from one long document,
one needle ("One of the special magic numbers for {key} is: {number}.") inserted at a depth that varies
across samples, and at the end the retrieval prompt followed by the answer. Labels are -100 everywhere
except the tokens that carry the answer's digits (found from character offsets, so a separate leading-space
token is never scored and a token that merges the space into the first digit is), and the haystack is cut to fit *around* the fixed parts, so the question and
answer are never truncated away (the reference code cuts samples to ``target - 1`` tokens and loses them).

Haystacks come from documents of at least ``target_length`` tokens, one document per sample. Tokenised
samples are cached on disk, keyed by the tokenizer, the dataset's fingerprint and these settings.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass

import torch

from ..losses import IGNORE_INDEX
from ..utils.atomic import atomic_path
from ..utils.environment import cache_dir
from .texts import describe, load_texts, source_fingerprint

TEMPLATE_VERSION = 2  # 2: only the answer's digits are labelled
INSTRUCTION = (
    "A special magic number is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the number afterwards.\n"
)
NEEDLE = " One of the special magic numbers for {key} is: {number}. "
QUESTION = "\nWhat is the special magic number for {key} mentioned in the provided text? " \
    "The special magic number for {key} mentioned in the provided text is:"
ANSWER = " {number}"
ECHO_QUESTION = "\nWhat is the special magic number for {key} mentioned in the provided text? " \
    "One of the special magic numbers for {key} is:"


@dataclass(frozen=True)
class NiahTemplate:
    """The question a needle sample ends with (instruction, needle and answer are shared by every template)."""

    name: str
    question: str
    doc: str


TEMPLATES = {
    "magic": NiahTemplate("magic", QUESTION, "the paper's (LongRoPE2 App. C): the question rewords the needle"),
    "echo": NiahTemplate("echo", ECHO_QUESTION, "RULER-style: the question ends with the needle's own words"),
}


def niah_template(name: str) -> NiahTemplate:
    """The [`NiahTemplate`] called `name`; raises naming the accepted ones."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown NIAH template {name!r}; accepted: {sorted(TEMPLATES)}")
    return TEMPLATES[name]


KEYS = (
    "amber-falcon", "quiet-harbor", "silver-orchid", "northern-lantern", "copper-meadow", "hidden-glacier",
    "velvet-comet", "rapid-willow", "golden-canyon", "misty-island", "crimson-forge", "patient-river",
)


@dataclass(frozen=True)
class NeedleSettings:
    """What defines a needle set; every field is part of the cache key."""

    dataset: str
    target_length: int
    num_samples: int
    split: str = "validation"
    text_column: str = "text"
    dataset_config: str | None = None
    seed: int = 0
    max_depth: float = 0.5
    objective: str = "needle"

    def __post_init__(self) -> None:
        if self.target_length < 16:
            raise ValueError(f"target_length must be >= 16 tokens, got {self.target_length}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if not 0.0 <= self.max_depth < 1.0:
            raise ValueError(f"max_depth must be in [0, 1), got {self.max_depth}")
        if self.objective not in ("needle", "ppl"):
            raise ValueError(f"objective must be 'needle' or 'ppl', got {self.objective!r}")


@dataclass
class NeedleBatch:
    """Samples as tensors plus what each one hides (for logs and exact-match checks)."""

    input_ids: torch.Tensor  # [num_samples, target_length]
    labels: torch.Tensor  # same shape, IGNORE_INDEX except the scored tokens
    depths: list[float]
    keys: list[str]
    answers: list[str]


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition (fast tokenizers) or its name, class and vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        text = json.dumps([type(tokenizer).__name__, tokenizer.name_or_path, sorted(tokenizer.get_vocab().items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def number_token_mask(tokenizer, text: str, start: int, end: int) -> tuple[list[int], list[bool]]:
    """Encode `text`; mark the tokens whose characters overlap ``text[start:end]`` (the number).

    Fast tokenizers give character offsets; for others the span of each token is found by decoding growing
    prefixes. A token that merges a space into the first digit (`` 1``) overlaps the number and is marked; a
    token that is only the space is not.
    """
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = encoded["offset_mapping"]
        ids = encoded["input_ids"]
    else:
        ids = _encode(tokenizer, text)
        ends = [len(tokenizer.decode(ids[: i + 1])) for i in range(len(ids))]
        spans = list(zip([0, *ends[:-1]], ends, strict=True))
    return ids, [a < end and b > start for a, b in spans]


def build_needle_sample(
    tokenizer, haystack: list[int], target_length: int, depth: float, key: str, number: str, template: str = "magic"
) -> tuple[list[int], list[int]]:
    """One sample of exactly `target_length` tokens from `haystack` token ids (at least as many as needed).

    `template` names the question ([`TEMPLATES`]); the search always uses ``"magic"``, the paper's.

    Returns:
        `(input_ids, labels)` with labels -100 except the tokens of the answer's digits, which end the sample.
    """
    head = ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + _encode(tokenizer, INSTRUCTION)
    needle = _encode(tokenizer, NEEDLE.format(key=key, number=number))
    question = _encode(tokenizer, niah_template(template).question.format(key=key))
    answer_text = ANSWER.format(number=number)
    at_number = answer_text.index(number)
    answer, is_digit = number_token_mask(tokenizer, answer_text, at_number, at_number + len(number))
    budget = target_length - len(head) - len(needle) - len(question) - len(answer)
    if budget < 1:
        raise ValueError(
            f"target_length {target_length} leaves no room for a haystack: the instruction, needle, question and "
            f"answer take {target_length - budget} tokens with this tokenizer"
        )
    if len(haystack) < budget:
        raise ValueError(f"haystack has {len(haystack)} tokens, needs {budget}")
    at = round(depth * budget)
    ids = head + haystack[:at] + needle + haystack[at:budget] + question + answer
    labels = [IGNORE_INDEX] * (len(ids) - len(answer)) + [t if d else IGNORE_INDEX for t, d in zip(answer, is_digit, strict=True)]
    return ids, labels


def haystack_chars(target_length: int) -> int:
    """Characters of a document read for samples of `target_length` tokens: far more than any tokenizer needs
    (64 per token, at least 1 Mi), so normal documents are whole, while one huge line costs bounded memory."""
    return max(2**20, 64 * target_length)


def _build(tokenizer, settings: NeedleSettings) -> NeedleBatch:
    target = settings.target_length
    texts = load_texts(settings.dataset, split=settings.split, text_column=settings.text_column,
                       config_name=settings.dataset_config, max_chars=haystack_chars(target))
    # A cheap upper bound first (a token covers at least one character for these tokenizers), then exact counts.
    tokenised = [_encode(tokenizer, t) for t in texts if len(t) >= target // 8]
    long_enough = [ids for ids in tokenised if len(ids) >= target]
    if len(long_enough) < settings.num_samples:
        raise ValueError(
            f"only {len(long_enough)} of {len(texts)} documents in {describe(settings.dataset, settings.split, settings.text_column)} "
            f"have at least {target} tokens; {settings.num_samples} samples need {settings.num_samples}. Use longer "
            f"documents, a smaller --num-samples or a smaller --target-length"
        )
    rng = random.Random(settings.seed)
    chosen = sorted(rng.sample(range(len(long_enough)), settings.num_samples))
    n = settings.num_samples
    rows, label_rows, depths, keys, answers = [], [], [], [], []
    for j, doc in enumerate(chosen):
        tokens = long_enough[doc]
        depth = settings.max_depth * j / max(1, n - 1)
        key = KEYS[j % len(KEYS)] if n <= len(KEYS) else f"{KEYS[j % len(KEYS)]}-{j}"
        number = str(rng.randint(1_000_000, 9_999_999))
        start = rng.randint(0, len(tokens) - target)
        if settings.objective == "ppl":
            ids = tokens[start : start + target]
            labels = list(ids)
            labels[0] = IGNORE_INDEX
            key, number, depth = "", "", 0.0
        else:
            ids, labels = build_needle_sample(tokenizer, tokens[start:], target, depth, key, number)
        rows.append(ids)
        label_rows.append(labels)
        depths.append(depth)
        keys.append(key)
        answers.append(number)
    return NeedleBatch(torch.tensor(rows), torch.tensor(label_rows), depths, keys, answers)


def needle_samples(tokenizer, settings: NeedleSettings, use_cache: bool = True) -> NeedleBatch:
    """Build (or load from the on-disk cache) the samples `settings` describe.

    With ``settings.objective == "ppl"`` the samples are plain haystack windows scored on every token (the
    paper's perplexity-objective ablation); otherwise needle samples scored on the answer only.
    """
    key_data = {
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "source": source_fingerprint(
            settings.dataset, split=settings.split, text_column=settings.text_column, config_name=settings.dataset_config
        ),
        "settings": asdict(settings),
        "template": TEMPLATE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / "needles" / f"{digest}.pt"
    if use_cache and path.exists():
        data = torch.load(path, weights_only=True)
        return NeedleBatch(data["input_ids"], data["labels"], data["depths"], data["keys"], data["answers"])
    batch = _build(tokenizer, settings)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(asdict(batch), tmp)
    return batch
