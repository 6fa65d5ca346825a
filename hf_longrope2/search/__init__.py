"""``hf-longrope2 search``: needle-driven evolutionary search of the LongRoPE2 rescale factors (paper sections 2-4).

```bash
hf-longrope2 search --model HuggingFaceTB/SmolLM2-135M --target-length 32768 --output-dir smollm2-32k
accelerate launch recipes/search.py --config recipes/smollm2-135m-32k/search.yaml   # one replica per process
```

```python
>>> from hf_longrope2.search import SearchConfig, run
>>> run(SearchConfig(model="HuggingFaceTB/SmolLM2-135M", target_length=32768, output_dir="smollm2-32k"))
```

- ``config.py``: [`SearchConfig`], every setting with its help string, checked once;
- ``space.py``: the candidates ``(d_rcd, tail)``, mutation and crossover;
- ``scoring.py``: needle-driven perplexity of one candidate, with exact early rejection;
- ``evolution.py``: the elitist loop and its resumable state;
- ``runner.py``: [`run`]: model, samples, the loop, and the output folder.

Evaluation is lean: only answer positions reach the output head, ``use_cache=False``, a candidate seen before
is never re-scored, and a candidate whose partial NLL sum already exceeds the current ``k``-th best total is
stopped early. The state is saved atomically after every step; ``--resume`` continues a killed search to the
same result. The output folder is a complete extended model with ``search_log.json``, ``search_progress.png``
and ``factors.png``.
"""

from .config import SearchConfig
from .runner import run

__all__ = ["SearchConfig", "run"]
