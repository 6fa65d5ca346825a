"""The samples every model of an evaluation is scored on, and how one model is scored on them, cell by cell.

```python
>>> from hf_longrope2.evaluation.plan import EvalPlan
>>> plan = EvalPlan.build(tokenizer, texts, args, original_window=4096)   # samples, built once
>>> plan.run(model, tokenizer, finished={}, record=lambda key, value: print(key, value), args=args)
niah/4096/0.0 1.0
...
```

A *cell* is the unit of progress and of resumption: one NIAH (length, depth) cell, one perplexity length, the
short-window perplexity, one RULER (task, length) cell, or the lm-eval run. Cell keys are strings
(``niah/8192/0.5``, ``ppl/8192``, ``short``, ``ruler/common_words/8192``, ``lm_eval``) and every result is
plain JSON, so a finished cell survives in the state file. NIAH rows of one length are batched across
depths (all prompts of a length have one width in practice, so a batch needs no padding). A NIAH or RULER
cell of length ``L`` holds prompts whose greedy answer ends within ``L`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .lm_eval_bridge import run_lm_eval
from .niah import NiahCell, greedy_continuations, haystack_stream, niah_grid, score_niah
from .perplexity import long_documents, perplexity, short_windows, tokenize_documents, window_nll
from .ruler import ruler_samples, string_match_all


def niah_key(length: int, depth: float) -> str:
    return f"niah/{length}/{float(depth)}"


@dataclass
class EvalPlan:
    """Everything measured, as samples: built once, shared by every model."""

    original_window: int
    lengths: list[int]
    niah: dict[tuple[int, float], NiahCell]
    ppl: dict[int, torch.Tensor]
    short: torch.Tensor
    ruler: dict[tuple[str, int], list]
    lm_eval_tasks: list[str]

    @property
    def cells_per_model(self) -> int:
        return len(self.niah) + len(self.ppl) + 1 + len(self.ruler) + (1 if self.lm_eval_tasks else 0)

    @classmethod
    def build(
        cls, tokenizer, texts: Sequence[str], args, original_window: int, ppl_texts: Sequence[str] | None = None
    ) -> EvalPlan:
        """Tokenise `texts` and build every sample `args` (an [`EvalArguments`]) asks for.

        `ppl_texts` (default: `texts`) supply the perplexity documents and the short windows.

        Raises:
            ValueError: when the documents cannot supply a cell (before any model is loaded).
        """
        lengths = list(args.lengths) or [original_window * k for k in (1, 2, 4, 8)]
        documents = tokenize_documents(tokenizer, texts)
        separator = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
        stream = haystack_stream(documents, separator, max(lengths), seed=args.seed)
        niah = niah_grid(tokenizer, stream, lengths, args.depths, args.needles_per_cell, seed=args.seed)
        ppl_documents = documents if ppl_texts is None else tokenize_documents(tokenizer, ppl_texts)
        ppl = {
            length: long_documents(ppl_documents, length, args.ppl_documents, seed=args.seed)
            for length in (list(args.ppl_lengths) or lengths)
        }
        short = short_windows(ppl_documents, original_window, args.short_windows, seed=args.seed)
        ruler = {}
        for task in args.ruler_tasks:
            for length in list(args.ruler_lengths) or lengths:
                # prompt + generated tokens fit in `length`, like a NIAH sample with its answer
                reserve = 0
                for _ in range(4):
                    samples = ruler_samples(tokenizer, task, length - reserve, args.ruler_samples, texts, seed=args.seed)
                    needed = max(s.max_new_tokens for s in samples)
                    if needed <= reserve:
                        break
                    reserve = needed
                ruler[(task, length)] = samples
        return cls(original_window, lengths, niah, ppl, short, ruler, list(args.lm_eval_tasks))

    def run(
        self, model, tokenizer, finished: dict, record: Callable[[str, object], None], args
    ) -> None:
        """Score `model` on every cell not in `finished`, calling ``record(key, result)`` as each one finishes."""
        self._run_niah(model, tokenizer, finished, record, args.batch_size)
        for length, docs in self.ppl.items():
            if f"ppl/{length}" not in finished:
                record(f"ppl/{length}", perplexity(window_nll(model, docs, args.batch_size)))
        if "short" not in finished:
            result = perplexity(window_nll(model, self.short, args.batch_size))
            record("short", {"length": self.original_window, **result})
        for (task, length), samples in self.ruler.items():
            key = f"ruler/{task}/{length}"
            if key not in finished:
                record(key, self._ruler_score(model, tokenizer, samples, args.batch_size))
        if self.lm_eval_tasks and "lm_eval" not in finished:
            record(
                "lm_eval",
                run_lm_eval(
                    model,
                    tokenizer,
                    self.lm_eval_tasks,
                    limit=args.lm_eval_limit,
                    batch_size=args.batch_size,
                    num_fewshot=args.lm_eval_num_fewshot,
                    include_path=args.lm_eval_include_path,
                    max_seq_lengths=args.lm_eval_max_seq_lengths or None,
                    seed=args.seed,
                ),
            )

    def _run_niah(self, model, tokenizer, finished: dict, record, batch_size: int) -> None:
        for length in self.lengths:  # one length at a time: its rows batch together across depths
            cells = [c for (n, _), c in self.niah.items() if n == length and niah_key(n, c.depth) not in finished]
            score_niah(model, tokenizer, cells, batch_size,
                       on_cell=lambda cell, accuracy: record(niah_key(cell.length, cell.depth), accuracy))

    @staticmethod
    def _ruler_score(model, tokenizer, samples: list, batch_size: int) -> float:
        scores = []
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            prompts = torch.tensor([s.input_ids for s in chunk])
            outputs = greedy_continuations(model, prompts, max(s.max_new_tokens for s in chunk))
            for sample, out in zip(chunk, outputs, strict=True):
                scores.append(string_match_all(tokenizer.decode(out, skip_special_tokens=True), sample.answers))
        return sum(scores) / len(scores)
