"""Runs inside the vLLM venv (see `benchmarks/serving.py`): greedy generation and logprobs with `vllm.LLM`.

```bash
VENV/bin/python benchmarks/serving_vllm_worker.py job.json result.json
```

``job.json``: ``{"model": DIR, "max_model_len": N, "requests": [{"name", "prompt_ids", "max_tokens",
"logprobs", "prompt_logprobs"}]}``. ``result.json``: per request the generated token ids, their logprobs, the
top-k logprobs per step, the prompt logprobs (when asked), and the engine's wall time. Imports only vLLM and
the standard library: the exported folder needs no hf-longrope2 code.
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
    llm = LLM(model=job["model"], max_model_len=job["max_model_len"], dtype="float32", enforce_eager=True,
              seed=0, max_num_seqs=1)
    load_s = time.perf_counter() - started
    rotary = type(llm.llm_engine.model_config).__name__  # the engine's view of the model (for the log)
    results = []
    for request in job["requests"]:
        params = SamplingParams(temperature=0.0, max_tokens=request["max_tokens"], logprobs=request["logprobs"],
                                prompt_logprobs=request.get("prompt_logprobs"), ignore_eos=True)
        began = time.perf_counter()
        out = llm.generate([TokensPrompt(prompt_token_ids=request["prompt_ids"])], params, use_tqdm=False)[0]
        seconds = time.perf_counter() - began
        completion = out.outputs[0]
        ids = list(completion.token_ids)
        top = _logprob_dicts(completion.logprobs or [])
        results.append({
            "name": request["name"],
            "token_ids": ids,
            "token_logprobs": [top[i][str(t)] for i, t in enumerate(ids)],
            "top_logprobs": top,
            "prompt_logprobs": _logprob_dicts(out.prompt_logprobs[1:]) if out.prompt_logprobs else None,
            "seconds": seconds,
            "tokens_per_s": len(ids) / seconds if seconds > 0 else None,
        })
    json.dump({"vllm_version": vllm.__version__, "load_s": load_s, "config": rotary, "results": results},
              open(result_path, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
