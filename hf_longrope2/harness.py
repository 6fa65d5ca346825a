"""Standard benchmarks through lm-evaluation-harness' Python API, on model objects already in memory.

```python
>>> from hf_longrope2.harness import run_lm_eval
>>> run_lm_eval(model, tokenizer, ["mmlu", "hellaswag", "gsm8k"], limit=200)
{"mmlu": {"acc": 0.41, "acc_stderr": 0.01}, ...}
```

Needs ``pip install hf-longrope2[eval]`` (lm-eval >= 0.4). The model is wrapped in lm-eval's ``HFLM`` as it
is (same weights, same longrope2 rotary), so short-context tasks measure exactly the model the NIAH and
perplexity numbers describe. lm-eval's RULER tasks (``ruler``, ``niah_single_1``, ...) take their lengths
from ``metadata={"max_seq_lengths": [...]}``, passed through `max_seq_lengths`. ``include_path`` adds a
folder of task YAMLs (local datasets work offline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _require_lm_eval():
    try:
        import lm_eval  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "--lm-eval-tasks needs lm-evaluation-harness: pip install 'hf-longrope2[eval]' (or pip install lm-eval)"
        ) from exc


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
    _require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        import difflib

        hints = {t: difflib.get_close_matches(t, manager.all_tasks, n=3) for t in unknown}
        raise ValueError(f"lm-eval does not know the tasks {unknown} (close matches: {hints})")
    device = next(model.parameters()).device
    wrapped = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device))
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
