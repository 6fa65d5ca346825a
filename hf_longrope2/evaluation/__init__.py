"""``hf-longrope2 eval``: NIAH grid, perplexity vs length, short-window retention, RULER-style tasks, lm-eval.

```
hf-longrope2 eval --model base-folder --model extended-folder --lengths 4096 8192 16384 32768 --output-dir report
accelerate launch recipes/evaluate.py --config recipes/smollm2-135m-32k/evaluate.yaml      # same main
```

Every model is scored on the same samples: a needle-in-a-haystack grid (lengths x depths, several needles per
cell, greedy answers, exact match; ``niah.py``), perplexity at each length on long documents and at the first
model's original window (``perplexity.py``; retention is reported against the first model, so list the base
model first), the offline RULER-style tasks (``ruler.py``) and, with lm-eval installed, chosen lm-eval tasks on
the same model objects (``lm_eval_bridge.py``). Without ``--dataset`` the haystack and documents are the Python
documentation shipped with every Python (``builtin:pydoc``), so it runs with no hub.

- ``config.py``: [`EvalConfig`], every setting with its help string, checked once;
- ``plan.py``: the samples, built once and shared by every model, and the cells they are scored in;
- ``report.py``: ``report.json``, ``report.md`` and the PNGs;
- ``runner.py``: [`run`]: every model, cell by cell, resumable.
"""

from .config import EvalConfig
from .runner import run

__all__ = ["EvalConfig", "run"]
