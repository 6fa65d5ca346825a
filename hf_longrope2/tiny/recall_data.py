"""Midtraining documents with long-range dependencies: the miniature analogue of the paper's long natural documents.

```python
>>> from hf_longrope2.tiny.recall_data import RecallCorpusSettings, write_recall_corpus
>>> files = write_recall_corpus(tokenizer, "data", RecallCorpusSettings(target_length=2048, window=256))
>>> files   # {"long": "data/long.jsonl", "short": "data/short.jsonl"}: pre-tokenised `input_ids` sources
```

A real long document (a book, a repository) has tokens whose prediction needs something thousands of tokens
back; the tiny base's own corpus (Python's sources) rarely does, so midtraining on it teaches the extended
positions nothing about retrieval. Each **long document** here is ``target_length`` tokens (every other one a
random length between the window and that) of the base's own pretraining text (the training slices of
``builtin:stdlib`` and ``builtin:pydoc``) interleaved with recall structure that spans the whole document:

- **records**: lines ``kelomari-47: 1234567`` stating a 7-digit value for a key, mostly in the first half;
- **lookups**: the same ``kelomari-47:`` again, later, followed by its value. Lookups prefer the records that
  are furthest back, so distances reach most of the document (the packer's long rows keep positions
  continuous, so all of them use the rescaled RoPE);
- **echoes**: a span of earlier text written again far later (copying at a distance).

**Short documents** (the original window, counting the EOS the packer appends) replay the base's own pretraining rows
([`hf_longrope2.tiny.pretraining.RecallRows`]: plain text, repeats and key-to-value snippets over the same text):
document-masked short-window rows with the original RoPE, the miniature analogue of the paper's short data
(Fineweb-Edu, drawn from what the base was trained on). With short documents drawn from the long generator instead,
the demo's midtrained model kept only 53% of its 1x retrieval.

**Held out** of every document, long and short, so that the evaluation measures position handling and text the base
saw in pretraining but midtraining never did: the evaluation's needle template ("special magic number"; the replayed
rows' needle episodes become snippets), its key vocabulary (adjective-noun pairs: keys here are syllables,
``kelomari-47``) and the held-out slices of both sources (``builtin:pydoc:heldout``, ``builtin:stdlib:heldout``),
where the evaluation's haystacks, perplexity and retention windows come from. Lookups use the record's own line
format. The documents are a pure function of the seed and the tokenizer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..data.texts import load_texts
from ..utils.atomic import save_atomically
from .pretraining import RecallRows

SYLLABLES = ("ka", "lo", "mi", "re", "tu", "so", "na", "vi", "ge", "po", "du", "fa", "zi", "be", "ru", "xo")
TEMPLATE_VERSION = 2  # 2: train slices of both sources; short rows without the needle template or its keys


@dataclass(frozen=True)
class RecallCorpusSettings:
    """What defines a recall corpus (see the module docstring)."""

    target_length: int = field(metadata={"help": "Tokens per long document (the midtraining row length)"})
    window: int = field(metadata={"help": "The original window: short documents are at most this long"})
    long_documents: int = field(default=400, metadata={"help": "Number of long documents"})
    short_documents: int = field(default=2000, metadata={"help": "Number of short documents"})
    record_share: float = field(default=0.6, metadata={"help": "Share of a long document's pieces that are "
                                                                "records, lookups and echoes (the rest is text)"})
    seed: int = field(default=0, metadata={"help": "Seed of every document"})
    text_source: str = field(
        default="builtin:stdlib:train+builtin:pydoc:train",
        metadata={"help": "Text of every document, sources joined by '+' (never the evaluation's held-out slices)"},
    )

    def __post_init__(self) -> None:
        if self.window < 32:
            raise ValueError(f"window must be >= 32 tokens, got {self.window}")
        if self.target_length <= self.window:
            raise ValueError(f"target_length ({self.target_length}) must exceed the window ({self.window})")
        if self.long_documents < 1 or self.short_documents < 0:
            raise ValueError("long_documents must be >= 1 and short_documents >= 0, got "
                             f"{self.long_documents} and {self.short_documents}")
        if not 0.0 < self.record_share < 1.0:
            raise ValueError(f"record_share must be in (0, 1), got {self.record_share}")


def syllable_key(rng: random.Random) -> str:
    """A key of 3-4 syllables and a 2-digit suffix (``kelomari-47``): no word of the evaluation's keys."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4))) + f"-{rng.randint(10, 99)}"


class RecallDocuments:
    """Seeded long and short recall documents as token ids (``document(kind, index)`` is a pure function)."""

    def __init__(self, tokenizer, text_ids: Sequence[int], settings: RecallCorpusSettings) -> None:
        self.tok, self.text, self.settings = tokenizer, text_ids, settings
        if len(text_ids) < 4 * settings.target_length:
            raise ValueError(f"the filler text has {len(text_ids)} tokens; needs at least {4 * settings.target_length}")
        self.newline = self._encode("\n")
        # short documents replay the base's own pretraining rows, without the evaluation's template and keys
        self._short = RecallRows(tokenizer, text_ids, settings.window, settings.seed + 1_000_003, recall_fraction=0.8,
                                 key=syllable_key, episodes=False)

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _text(self, rng: random.Random, n: int) -> list[int]:
        start = rng.randrange(0, len(self.text) - n)
        return list(self.text[start : start + n])

    def _fill(self, rng: random.Random, length: int, share: float) -> list[int]:
        """Text with records, lookups and echoes, cut to exactly `length` tokens (the BOS token first).

        A lookup names a record at least a quarter of the document back (the oldest half of those it may use),
        each record is looked up at most twice, lookups grow more likely towards the end of the document, and
        records are only stated in its first 60%.
        """
        ids = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        records: list[list] = []  # [position, key line, value tokens, lookups so far]
        taken: set[str] = set()
        min_gap = max(16, length // 4)
        while len(ids) < length:
            if rng.random() >= share:
                ids += self._text(rng, rng.randint(8, 40))
                continue
            eligible = [r for r in records if len(ids) - r[0] >= min_gap and r[3] < 2]
            if eligible and rng.random() < 2 * len(ids) / length:
                record = rng.choice(eligible[: max(1, len(eligible) // 2)])  # records are in position order
                record[3] += 1
                ids += record[1] + record[2]
            elif len(ids) > length // 2 and (rng.random() < 0.1 or len(ids) > 0.6 * length):
                # echoes, and no new records in the last 40%: what comes late refers to what came early
                start = rng.randrange(0, len(ids) // 2)
                ids += ids[start : start + rng.randint(16, 48)]
            else:
                key = syllable_key(rng)
                while key in taken:
                    key = syllable_key(rng)
                taken.add(key)
                head = self.newline + self._encode(f"{key}:")
                value = self._encode(f" {rng.randint(1_000_000, 9_999_999)}") + self.newline
                records.append([len(ids), head, value, 0])
                ids += head + value
        return ids[:length]

    def document(self, kind: str, index: int) -> list[int]:
        """Even-numbered long documents have exactly ``target_length`` tokens, odd ones ``window + 1`` to
        ``target_length``; short ones ``window - 1`` tokens (the window with the EOS the packer appends)."""
        rng = random.Random(f"{self.settings.seed}-{kind}-{index}")
        if kind == "long":
            # half of them fill a whole row; the others are shorter (but longer than the window), so the model also
            # meets the long RoPE on documents that have just crossed the window, as generation does
            length = self.settings.target_length if index % 2 == 0 else rng.randint(self.settings.window + 1,
                                                                                    self.settings.target_length)
            return self._fill(rng, length, self.settings.record_share)
        if kind == "short":  # window - 1 tokens: with the EOS the packer appends, exactly the window
            return self._short.row(index, 0)[0][: self.settings.window - 1]
        raise ValueError(f"kind must be 'long' or 'short', got {kind!r}")


def write_recall_corpus(tokenizer, output_dir: str | Path, settings: RecallCorpusSettings,
                        overwrite: bool = False) -> dict[str, Path]:
    """Write ``long.jsonl`` and ``short.jsonl`` (pre-tokenised ``input_ids``; name them in a midtraining mixture
    with ``tokenized: true``) and ``settings.json`` into `output_dir`, atomically. Returns the two paths."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    texts = [t for source in settings.text_source.split("+") for t in load_texts(source)]
    text = [i for t in texts for i in tokenizer(t, add_special_tokens=False)["input_ids"] + eos]
    docs = RecallDocuments(tokenizer, text, settings)

    def write(tmp: Path) -> None:
        for kind, count in (("long", settings.long_documents), ("short", settings.short_documents)):
            with open(tmp / f"{kind}.jsonl", "w") as f:
                for i in tqdm(range(count), desc=f"recall documents ({kind})", unit="doc", leave=False):
                    f.write(json.dumps({"input_ids": docs.document(kind, i)}) + "\n")
        (tmp / "settings.json").write_text(json.dumps({**asdict(settings), "template": TEMPLATE_VERSION}, indent=2))

    out = save_atomically(output_dir, write, overwrite=overwrite)
    return {"long": Path(out) / "long.jsonl", "short": Path(out) / "short.jsonl"}
