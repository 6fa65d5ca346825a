"""Runs inside the vLLM venv (see `benchmarks/serving.py`): one batch of requests submitted together, so vLLM's
continuous batching mixes them, with the engine options of the job (e.g. the exact LongRoPE2 plugin's).

```bash
VENV/bin/python benchmarks/serving_vllm_worker.py job.json result.json
```

``job.json``: ``{"model": DIR, "max_model_len": N, "engine": {extra vllm.LLM keyword arguments},
"batches": [[{"name", "prompt_ids", "max_tokens", "logprobs", "prompt_logprobs"}, ...], ...]}``: each batch is
one ``LLM.generate`` call. ``result.json``: per request the generated ids, their logprobs, the top-k per step,
the prompt logprobs (when asked), time to first token and preemptions from vLLM's request metrics, prefix-cache
hits; per batch its
wall time and generated tokens. Imports only vLLM and the standard library.
"""

from __future__ import annotations

import json
import sys
import time


def _logprob_dicts(entries) -> list[dict[str, float]]:
    return [{str(token): float(lp.logprob) for token, lp in (entry or {}).items()} for entry in entries]


def main(job_path: str, result_path: str) -> None:
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    job = json.load(open(job_path))
    started = time.perf_counter()
    llm = LLM(model=job["model"], max_model_len=job["max_model_len"], dtype="float32", enforce_eager=True, seed=0,
              disable_log_stats=False, **job.get("engine", {}))
    load_s = time.perf_counter() - started
    results, batches = [], []
    for batch in job["batches"]:
        prompts = [TokensPrompt(prompt_token_ids=r["prompt_ids"]) for r in batch]
        params = [SamplingParams(temperature=0.0, max_tokens=r["max_tokens"], logprobs=r.get("logprobs", 1),
                                 prompt_logprobs=r.get("prompt_logprobs"), ignore_eos=True) for r in batch]
        began = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - began
        generated = 0
        for request, out in zip(batch, outs, strict=True):
            completion = out.outputs[0]
            ids = list(completion.token_ids)
            generated += len(ids)
            top = _logprob_dicts(completion.logprobs or [])
            metrics = out.metrics
            results.append({
                "name": request["name"],
                "token_ids": ids,
                "token_logprobs": [top[i][str(t)] for i, t in enumerate(ids)],
                "top_logprobs": top,
                "prompt_logprobs": _logprob_dicts(out.prompt_logprobs[1:]) if out.prompt_logprobs else None,
                "ttft_s": getattr(metrics, "first_token_latency", None),
                "preemptions": getattr(metrics, "num_preemptions", None),
                "num_cached_tokens": out.num_cached_tokens,
            })
        batches.append({"seconds": seconds, "requests": len(batch), "generated_tokens": generated})
    json.dump({"vllm_version": vllm.__version__, "load_s": load_s, "results": results, "batches": batches},
              open(result_path, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
