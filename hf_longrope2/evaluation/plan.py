"""The samples every model of an evaluation is scored on, and how one model is scored on them, cell by cell.

```python
>>> from hf_longrope2.evaluation.plan import EvalPlan
>>> plan = EvalPlan.build(tokenizer, texts, args, original_window=4096)   # samples, built once
>>> plan.run(model, tokenizer, finished={}, record=lambda key, value: print(key, value), args=args)
niah/4096/0.0 1.0
...
```

A *cell* is the unit of progress and of resumption: one NIAH (template, length, depth) cell, one answer-NLL
(template, length) cell, one perplexity length, the short-window perplexity of each retention source, one RULER
(task, length) cell, or the lm-eval run. Cell keys are strings (``niah/8192/0.5`` and ``niah_nll/8192`` for the
first template, ``niah:echo/8192/0.5`` and ``niah_nll:echo/8192`` for another, ``ppl/8192``, ``short`` and
``short:builtin:stdlib:heldout``, ``ruler/common_words/8192``, ``lm_eval``) and every result is plain JSON, so
a finished cell survives in the state file. NIAH rows of one length are batched across
depths (all prompts of a length have one width in practice, so a batch needs no padding). A NIAH or RULER
cell of length ``L`` holds prompts whose greedy answer ends within ``L`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .lm_eval_bridge import run_lm_eval
from .niah import NiahCell, answer_nll, greedy_continuations, haystack_stream, niah_grid, score_niah
from .perplexity import long_documents, perplexity, short_windows, tokenize_documents, window_nll
from .ruler import ruler_samples, string_match_all


def _suffix(name: str | None) -> str:
    return "" if name is None else f":{name}"


def niah_key(length: int, depth: float, template: str | None = None) -> str:
    """``niah/L/d`` for the first template (None), ``niah:T/L/d`` for template T."""
    return f"niah{_suffix(template)}/{length}/{float(depth)}"


def nll_key(length: int, template: str | None = None) -> str:
    """``niah_nll/L`` for the first template (None), ``niah_nll:T/L`` for template T."""
    return f"niah_nll{_suffix(template)}/{length}"


def short_key(source: str | None = None) -> str:
    """``short`` for the perplexity documents, ``short:SOURCE`` for a retention source."""
    return f"short{_suffix(source)}"


@dataclass
class EvalPlan:
    """Everything measured, as samples: built once, shared by every model.

    `niah` holds one grid per template, the first template's first; keys of later templates carry its name.
    """

    original_window: int
    lengths: list[int]
    niah: dict[str, dict[tuple[int, float], NiahCell]]
    ppl: dict[int, torch.Tensor]
    short: torch.Tensor
    ruler: dict[tuple[str, int], list]
    lm_eval_tasks: list[str]
    niah_nll: bool = False
    retention: dict[str, torch.Tensor] = field(default_factory=dict)  # more short-window sources by name

    @property
    def templates(self) -> list[str]:
        return list(self.niah)

    def key_template(self, template: str) -> str | None:
        """The name a template's cell keys carry: None for the first (``niah/...``), else the template."""
        return None if template == self.templates[0] else template

    @property
    def cells_per_model(self) -> int:
        grids = sum(len(grid) for grid in self.niah.values())
        nll = len(self.templates) * len(self.lengths) if self.niah_nll else 0
        return (grids + nll + len(self.ppl) + 1 + len(self.retention) + len(self.ruler)
                + (1 if self.lm_eval_tasks else 0))

    @classmethod
    def build(
        cls, tokenizer, texts: Sequence[str], args, original_window: int, ppl_texts: Sequence[str] | None = None,
        retention_texts: dict[str, Sequence[str]] | None = None,
    ) -> EvalPlan:
        """Tokenise `texts` and build every sample `args` (an [`EvalConfig`]) asks for.

        `ppl_texts` (default: `texts`) supply the perplexity documents and the short windows; each of
        `retention_texts` (name -> documents) its own short windows.

        Raises:
            ValueError: when the documents cannot supply a cell (before any model is loaded).
        """
        lengths = list(args.lengths) or [original_window * k for k in (1, 2, 4, 8)]
        documents = tokenize_documents(tokenizer, texts)
        separator = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
        stream = haystack_stream(documents, separator, max(lengths), seed=args.seed)
        niah = {t: niah_grid(tokenizer, stream, lengths, args.depths, args.needles_per_cell, seed=args.seed, template=t)
                for t in args.niah_templates}
        ppl_documents = documents if ppl_texts is None else tokenize_documents(tokenizer, ppl_texts)
        ppl = {
            length: long_documents(ppl_documents, length, args.ppl_documents, seed=args.seed)
            for length in (list(args.ppl_lengths) or lengths)
        }
        short = short_windows(ppl_documents, original_window, args.short_windows, seed=args.seed)
        retention = {name: short_windows(tokenize_documents(tokenizer, docs), original_window, args.short_windows,
                                         seed=args.seed)
                     for name, docs in (retention_texts or {}).items()}
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
        return cls(original_window, lengths, niah, ppl, short, ruler, list(args.lm_eval_tasks),
                   args.niah_nll, retention)

    def run(
        self, model, tokenizer, finished: dict, record: Callable[[str, object], None], args
    ) -> None:
        """Score `model` on every cell not in `finished`, calling ``record(key, result)`` as each one finishes."""
        self._run_niah(model, tokenizer, finished, record, args.batch_size)
        for length, docs in self.ppl.items():
            if f"ppl/{length}" not in finished:
                record(f"ppl/{length}", perplexity(window_nll(model, docs, args.batch_size)))
        for source, windows in [(None, self.short), *self.retention.items()]:
            if short_key(source) not in finished:
                result = perplexity(window_nll(model, windows, args.batch_size))
                record(short_key(source), {"length": self.original_window, **result})
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
        for template, grid in self.niah.items():
            name = self.key_template(template)
            for length in self.lengths:  # one length at a time: its rows batch together across depths
                cells = [c for (n, d), c in grid.items() if n == length and niah_key(n, d, name) not in finished]
                score_niah(model, tokenizer, cells, batch_size,
                           on_cell=lambda cell, accuracy, name=name: record(niah_key(cell.length, cell.depth, name),
                                                                            accuracy))
                if self.niah_nll and nll_key(length, name) not in finished:
                    cells = [c for (n, _), c in grid.items() if n == length]
                    record(nll_key(length, name), answer_nll(model, cells, batch_size))

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
