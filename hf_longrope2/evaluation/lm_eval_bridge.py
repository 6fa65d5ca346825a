"""Standard benchmarks through lm-evaluation-harness' Python API, on model objects already in memory.

```python
>>> from hf_longrope2.evaluation.lm_eval_bridge import run_lm_eval
>>> run_lm_eval(model, tokenizer, ["mmlu", "hellaswag", "gsm8k"], limit=200)
{"mmlu": {"acc": 0.41, "acc_stderr": 0.01}, ...}
```

Needs ``pip install hf-longrope2[eval]`` (lm-eval >= 0.4). The model is wrapped in lm-eval's ``HFLM`` as it
is (same weights, same longrope2 rotary), so short-context tasks measure exactly the model the NIAH and
perplexity numbers describe. lm-eval's RULER tasks (``ruler``, ``niah_single_1``, ...) take their lengths
from ``metadata={"max_seq_lengths": [...]}``, passed through `max_seq_lengths`. ``include_path`` adds a
folder of task YAMLs (local datasets work offline).

lm-eval right-pads loglikelihood batches and calls the model without an attention mask, so at
``batch_size > 1`` a short request would count its padding as part of its document and could cross the
original window. [`padding_aware_hflm`] records each row's length where lm-eval pads the batch and passes the
matching attention mask, from which the model numbers positions per row: every request scores the same at any
batch size.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

import torch


def _require_lm_eval():
    try:
        import lm_eval  # noqa: F401  (the optional extra [eval]: checked only when lm-eval tasks are asked for)
    except ImportError as exc:
        raise ValueError(
            "--lm-eval-tasks needs lm-evaluation-harness: pip install lm-eval (or, in the hf-longrope2 clone: "
            "pip install -e '.[eval]')"
        ) from exc


def check_lm_eval_tasks(tasks: Sequence[str], include_path: str | None = None):
    """Fail now for what would fail only after every NIAH / perplexity cell: lm-eval missing, an unknown task, a
    dataset that cannot be loaded. Builds the tasks (``get_task_dict`` downloads or reads their datasets, then
    cached) and returns the `TaskManager`.

    Raises:
        ValueError: one line naming the problem (install command, close matches, or the task and its error).
    """
    _require_lm_eval()
    from lm_eval.tasks import TaskManager, get_task_dict  # the optional extra [eval]

    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        hints = {t: difflib.get_close_matches(t, manager.all_tasks, n=3) for t in unknown}
        raise ValueError(f"lm-eval does not know the tasks {unknown} (close matches: {hints})")
    for task in tasks:
        try:
            get_task_dict([task], manager)
        except Exception as exc:  # a dataset lm-eval cannot reach or read: any error is this task's
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ValueError(f"lm-eval task {task!r} cannot load its data: {type(exc).__name__}: {first}") from exc
    return manager


def padding_aware_hflm(model, tokenizer, batch_size: int = 1):
    """lm-eval's ``HFLM`` around `model`, with an attention mask on its right-padded loglikelihood batches."""
    _require_lm_eval()
    import lm_eval.models.huggingface as hf_module  # the optional extra [eval]

    class PaddingAwareHFLM(hf_module.HFLM):
        _row_lengths: list[int] | None = None

        def _loglikelihood_tokens(self, *args, **kwargs):
            # lm-eval builds each batch with the module-level `pad_and_concat`; record the rows' lengths there,
            # and put the function back afterwards.
            original = hf_module.pad_and_concat

            def recording(max_length, tensors, padding_side="right"):
                self._row_lengths = [t.shape[-1] for t in tensors]
                return original(max_length, tensors, padding_side=padding_side)

            hf_module.pad_and_concat = recording
            try:
                return super()._loglikelihood_tokens(*args, **kwargs)
            finally:
                hf_module.pad_and_concat = original
                self._row_lengths = None

        def _model_call(self, inps, attn_mask=None, labels=None):
            lengths, self._row_lengths = self._row_lengths, None
            if attn_mask is not None or labels is not None or lengths is None or len(lengths) != inps.shape[0]:
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            mask = torch.arange(inps.shape[1], device=inps.device)[None] < torch.tensor(lengths, device=inps.device)[:, None]
            autocast = torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                      enabled=self.mixed_precision_dtype is not None)
            with torch.no_grad(), autocast:
                return self.model(input_ids=inps, attention_mask=mask.long()).logits

    device = next(model.parameters()).device
    return PaddingAwareHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device))


def run_lm_eval(
    model,
    tokenizer,
    tasks: Sequence[str],
    *,
    limit: int | float | None = None,
    batch_size: int = 1,
    num_fewshot: int | None = None,
    include_path: str | None = None,
    max_seq_lengths: Sequence[int] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Run lm-eval `tasks` on `model` and return ``{task: {metric: value}}`` (numbers only, NaN dropped).

    Raises:
        ValueError: if lm-eval is missing or a task name is unknown to it (the message lists close matches).
    """
    manager = check_lm_eval_tasks(tasks, include_path)
    from lm_eval import simple_evaluate  # the optional extra [eval]

    wrapped = padding_aware_hflm(model, tokenizer, batch_size)
    metadata = {"max_seq_lengths": list(max_seq_lengths)} if max_seq_lengths else None
    output = simple_evaluate(
        model=wrapped,
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=manager,
        log_samples=False,
        bootstrap_iters=0,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        metadata=metadata,
    )
    results = {}
    for task, metrics in output["results"].items():
        numbers = {}
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            numbers[name.replace(",none", "")] = float(value)
        results[task] = numbers
    return results
