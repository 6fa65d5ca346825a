"""Cost of mixed-window midtraining: LongRoPE2SFTTrainer vs TRL's SFTTrainer, and training memory, in one run.

    python benchmarks/train_overhead.py            # writes benchmarks/results/train_overhead.{json,md} (~5 min, 2 cores)
    python benchmarks/train_overhead.py --help     # the settings that can be changed (defaults = the recorded run)

Everything runs offline on the CPU in fp32 (``bf16=False``: TRL's configs default to bf16, which on a CPU means
bf16 autocast). The model is a random Llama (4 layers, hidden 256, MLP 1024, 8 heads of 32 dims, untied
embeddings, vocabulary 4,096 with a word-level tokenizer of placeholder tokens, SDPA attention), pre-trained window
128, extended with YaRN factors (``hf_longrope2.factors.yarn``) to the row length by ``hf_longrope2.extend``. The
rows are the package's own: random-token documents (88% of them 16-128 tokens, the rest 129 tokens to 3 rows long,
so about a quarter of the tokens are short-window), packed by ``hf_longrope2.packing.pack_mixed_windows`` into
short rows (document-masked, original RoPE) and long rows (rescaled RoPE), shuffled with a seed, with the columns
``input_ids``, ``labels``, ``seq_lengths`` (``position_ids`` and ``kind`` stay out, as the trainer drops them).

(a) ``throughput_ratio`` = tokens/s(``LongRoPE2SFTTrainer``) / tokens/s(TRL ``SFTTrainer``), new/old, 1.0 = no
    overhead, below 1 = ours is slower. Both train the same rows (rows of 1,024 tokens, batch 1), from the same
    extended weights (the fairest choice: a fresh copy of one extended model for every run, so only the trainer
    differs; the base model would train different rotary code), with the same seed, learning rate and number of
    steps, AdamW, no activation checkpointing, logging every step (the worst case for the per-window loss
    logging). TRL gets ``SFTConfig(padding_free=True, max_length=None, dataset_kwargs={"skip_prepare_dataset":
    True})``: the same padding-free collator and its own fused LM head. A ``TrainerCallback`` stamps
    ``time.perf_counter()`` at ``on_step_begin`` / ``on_step_end``; the first 2 steps of every run are warm-up and
    not counted. Runs alternate A B B A A B (``--repeats`` of each) in this process with 2 torch threads; the
    ratio uses the median over runs of each run's median step time. ``throughput_ratio_step_to_step`` uses the
    time from one ``on_step_end`` to the next instead, which adds the collator, the next batch and the logging.
    Both trainers must log the same losses (same rows, same weights, same loss normalisation).
(b) ``peak_memory_mb``: for ``LongRoPE2SFTTrainer`` at rows of 512 to 4,096 tokens (batch 1, the model extended
    to the row length), with and without activation (gradient) checkpointing, each setting in a fresh subprocess:
    the kernel's high-water mark of resident memory (``VmHWM``), reset with ``/proc/self/clear_refs`` just before
    ``trainer.train()``, minus the resident memory at that moment, over ``--memory-steps`` steps. It covers
    gradients, AdamW state and activations (the weights were resident before). Linux only.
(c) ``lora_memory_ratio`` = peak(LoRA) / peak(full fine-tuning), new/old, below 1 is a saving, measured as in (b)
    at one row length without checkpointing. LoRA as ``hf-longrope2 midtrain --use_peft`` builds it:
    ``hf_longrope2.midtrain.peft_config_for(trl.ModelConfig(use_peft=True, lora_r=8, lora_target_modules=[q, k, v,
    o]))``, which also trains ``embed_tokens`` and ``norm`` in full (``modules_to_save``). Trainable parameter
    counts are recorded: on a model this small the activations dominate, so the saving is small.

The machine's load average is recorded before and after: other work on a 2-core machine skews the timings.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import (they are all inside functions)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULT = Path(__file__).parent / "results" / "train_overhead.json"
PAD, BOS, EOS, UNK = 0, 1, 2, 3
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "hf-longrope2")

MODEL = dict(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_layers=4, heads=8, original=128)
SETTINGS = dict(
    row_length=1024,
    batch_size=1,
    steps=14,
    warmup_steps=2,
    repeats=3,
    threads=2,
    learning_rate=1e-4,
    logging_steps=1,
    seed=0,
    short_doc_probability=0.88,
    memory_rows=[512, 1024, 2048, 4096],
    memory_steps=4,
    lora_row_length=2048,
    lora_r=8,
)


# -- model and rows ------------------------------------------------------------------------------------------------
def word_tokenizer(vocab_size: int) -> Any:
    """A word-level fast tokenizer of placeholder tokens ``t4`` ... (ids 0-3: <pad>, <s>, </s>, <unk>)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>"])}
    vocab |= {f"t{i}": i for i in range(len(vocab), vocab_size)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def build_model(target: int, seed: int) -> Any:
    """The random Llama of the module docstring, extended with YaRN factors from `MODEL["original"]` to `target`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_longrope2 import factors
    from hf_longrope2.extend import extend

    m = MODEL
    config = LlamaConfig(
        vocab_size=m["vocab_size"],
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["num_layers"],
        num_attention_heads=m["heads"],
        num_key_value_heads=m["heads"],
        max_position_embeddings=m["original"],
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    head_dim = m["hidden_size"] // m["heads"]
    theta = config.rope_parameters["rope_theta"]
    long_factor = factors.yarn(head_dim, theta, target / m["original"], m["original"])
    return extend(model, long_factor, max_position_embeddings=target)


def make_rows(row_length: int, n_rows: int, seed: int, short_probability: float) -> tuple[Any, dict]:
    """At least `n_rows` packed rows of random-token documents; returns (dataset, packing summary)."""
    import datasets

    from hf_longrope2.packing import pack_mixed_windows

    window, vocab = MODEL["original"], MODEL["vocab_size"]
    rng = random.Random(seed)
    docs: list[list[int]] = []
    tokens = 0
    while tokens < 1.3 * n_rows * row_length + 2 * row_length:
        short = rng.random() < short_probability
        n = rng.randint(16, window) if short else rng.randint(window + 1, 3 * row_length)
        docs.append([rng.randrange(4, vocab) for _ in range(n - 1)] + [EOS])
        tokens += n
    rows, report = pack_mixed_windows(docs, original_window=window, target_length=row_length, pad_token_id=PAD,
                                      seed=seed)
    if len(rows) < n_rows:
        raise RuntimeError(f"packed only {len(rows)} rows of {row_length} tokens, need {n_rows}")
    random.Random(seed).shuffle(rows)  # as build_mixed_dataset does
    columns = ("input_ids", "labels", "seq_lengths")
    ints = datasets.List(datasets.Value("int64"))
    table = {c: [getattr(r, c) for r in rows] for c in columns}
    dataset = datasets.Dataset.from_dict(table, features=datasets.Features(dict.fromkeys(columns, ints)))
    summary = {"rows": dict(report.rows), "real_tokens": dict(report.real_tokens),
               "padding_tokens": dict(report.padding_tokens), "short_fraction": report.short_fraction}
    return dataset, summary


def training_args(kind: str, output_dir: str, row_length: int, steps: int, checkpointing: bool) -> Any:
    """`LongRoPE2SFTConfig` (kind ``ours``) or TRL's `SFTConfig` (kind ``trl``) with the shared settings."""
    s = SETTINGS
    common = dict(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=s["batch_size"],
        learning_rate=s["learning_rate"],
        lr_scheduler_type="constant",
        logging_steps=s["logging_steps"],
        activation_checkpointing=checkpointing,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        seed=s["seed"],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    if kind == "ours":
        from hf_longrope2.trainer import LongRoPE2SFTConfig

        return LongRoPE2SFTConfig(**common, target_length=row_length)
    from trl import SFTConfig

    return SFTConfig(**common, padding_free=True, max_length=None, dataset_kwargs={"skip_prepare_dataset": True})


def make_trainer(kind: str, model: Any, args: Any, rows: Any, peft_config: Any = None) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begin: list[float] = []
            self.end: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begin.append(time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.end.append(time.perf_counter())

    timer = StepTimer()
    tokenizer = word_tokenizer(MODEL["vocab_size"])
    if kind == "ours":
        from hf_longrope2.trainer import LongRoPE2SFTTrainer as Cls
    else:
        from trl import SFTTrainer as Cls
    trainer = Cls(model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=peft_config,
                  callbacks=[timer])
    return trainer, timer


def _warning_texts(caught: list[warnings.WarningMessage]) -> list[str]:
    return sorted({f"{w.category.__name__}: {str(w.message)[:300]}" for w in caught})


# -- (a) throughput ------------------------------------------------------------------------------------------------
def timed_run(kind: str, state: dict, rows: Any, work: Path, index: int) -> dict:
    import torch

    s = SETTINGS
    model = build_model(s["row_length"], s["seed"])
    model.load_state_dict(state)
    args = training_args(kind, str(work / f"{kind}-{index}"), s["row_length"], s["steps"], checkpointing=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, timer = make_trainer(kind, model, args, rows)
        gc.collect()
        load = os.getloadavg()
        started = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - started
    w = s["warmup_steps"]
    step = [e - b for b, e in zip(timer.begin, timer.end, strict=True)][w:]
    interval = [b - a for a, b in zip(timer.end, timer.end[1:], strict=False)][w:]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = s["row_length"] * s["batch_size"]
    del trainer, model
    gc.collect()
    return {
        "kind": kind,
        "index": index,
        "step_seconds": step,
        "step_to_step_seconds": interval,
        "median_step_seconds": statistics.median(step),
        "median_step_to_step_seconds": statistics.median(interval),
        "tokens_per_second": tokens / statistics.median(step),
        "train_seconds": total,
        "losses": losses,
        "load_average_before": load,
        "torch_threads": torch.get_num_threads(),
        "optimizer": str(args.optim),
        "warnings": _warning_texts(caught),
    }


def throughput(repeats: int, work: Path) -> dict:
    import torch

    s = SETTINGS
    torch.set_num_threads(s["threads"])
    reference = build_model(s["row_length"], s["seed"])
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    del reference
    rows, packing = make_rows(s["row_length"], s["steps"] * s["batch_size"], s["seed"], s["short_doc_probability"])
    order = (["ours", "trl", "trl", "ours"] * repeats)[: 2 * repeats]  # A B B A A B ...: equal counts, drift cancels
    runs: dict[str, list[dict]] = {"ours": [], "trl": []}
    for i, kind in enumerate(order):
        result = timed_run(kind, state, rows, work, i)
        runs[kind].append(result)
        print(f"  {kind:4s} run {i}: median step {result['median_step_seconds']:.3f} s "
              f"({result['tokens_per_second']:.0f} tokens/s)", flush=True)
    summary = {}
    for kind, results in runs.items():
        pooled = [t for r in results for t in r["step_seconds"]]
        summary[kind] = {
            "median_step_seconds": statistics.median(r["median_step_seconds"] for r in results),
            "median_step_to_step_seconds": statistics.median(r["median_step_to_step_seconds"] for r in results),
            "pooled_median_step_seconds": statistics.median(pooled),
            "min_step_seconds": min(pooled),
            "tokens_per_second": s["row_length"] * s["batch_size"]
            / statistics.median(r["median_step_seconds"] for r in results),
            "timed_steps": len(pooled),
            "runs": len(results),
        }
    ours, trl = summary["ours"], summary["trl"]
    losses = {json.dumps(r["losses"]) for rs in runs.values() for r in rs}
    first = {kind: rs[0]["losses"] for kind, rs in runs.items()}
    max_diff = max(abs(a - b) for a, b in zip(first["ours"], first["trl"], strict=True))
    return {
        "throughput_ratio": trl["median_step_seconds"] / ours["median_step_seconds"],
        "throughput_ratio_step_to_step": trl["median_step_to_step_seconds"] / ours["median_step_to_step_seconds"],
        "throughput_ratio_pooled": trl["pooled_median_step_seconds"] / ours["pooled_median_step_seconds"],
        "throughput_ratio_best_step": trl["min_step_seconds"] / ours["min_step_seconds"],
        "same_losses_in_every_run": len(losses) == 1,
        "max_loss_difference_ours_vs_trl": max_diff,
        "summary": summary,
        "order": order,
        "packing": packing,
        "runs": runs,
    }


# -- (b, c) memory -------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_worker(spec: dict) -> dict:
    """One training run of `spec` (row_length, checkpointing, lora, kind) in this process; its peak memory growth."""
    import torch

    s = SETTINGS
    torch.set_num_threads(s["threads"])
    row_length, steps = spec["row_length"], s["memory_steps"]
    model = build_model(row_length, s["seed"])
    rows, packing = make_rows(row_length, steps * s["batch_size"], s["seed"], s["short_doc_probability"])
    peft_config = None
    if spec["lora"]:
        from trl import ModelConfig

        from hf_longrope2.midtrain import peft_config_for

        peft_config = peft_config_for(ModelConfig(use_peft=True, lora_r=s["lora_r"],
                                                  lora_target_modules=list(LORA_TARGETS)))
    with tempfile.TemporaryDirectory(prefix="train_overhead.") as tmp:
        args = training_args(spec["kind"], tmp, row_length, steps, spec["checkpointing"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer, timer = make_trainer(spec["kind"], model, args, rows, peft_config)
            trained = [(n, p.numel()) for n, p in trainer.model.named_parameters() if p.requires_grad]
            gc.collect()
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
            before = _status_kb("VmRSS")
            trainer.train()
            peak = _status_kb("VmHWM")
    trainable = sum(n for _, n in trained)
    full_modules = sorted({n.split(".modules_to_save.")[0] for n, _ in trained if ".modules_to_save." in n})
    step = [e - b for b, e in zip(timer.begin, timer.end, strict=True)][1:]
    return {
        **spec,
        "rss_before_mb": before / 1024,
        "peak_rss_mb": peak / 1024,
        "peak_growth_mb": (peak - before) / 1024,
        "trainable_parameters": trainable,
        "total_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "gradient_and_adamw_mb": 3 * 4 * trainable / 2**20,
        "modules_trained_in_full": full_modules,
        "median_step_seconds_after_first": statistics.median(step) if step else None,
        "steps": steps,
        "packing": packing,
        "warnings": _warning_texts(caught),
    }


def run_worker(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(SETTINGS["threads"])}
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker {spec} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["subprocess_seconds"] = time.perf_counter() - started
    print(f"  {spec}: peak growth {result['peak_growth_mb']:.0f} MB, step "
          f"{result['median_step_seconds_after_first']:.2f} s", flush=True)
    return result


def memory(rows: list[int], lora_row_length: int) -> dict:
    base = {"kind": "ours", "lora": False}
    by_length: dict[str, dict] = {}
    raw = []
    for length in rows:
        for checkpointing in (False, True):
            result = run_worker({**base, "row_length": length, "checkpointing": checkpointing})
            raw.append(result)
            key = "with_checkpointing" if checkpointing else "without_checkpointing"
            by_length.setdefault(str(length), {})[key] = result["peak_growth_mb"]
    full = next((r for r in raw if r["row_length"] == lora_row_length and not r["checkpointing"]), None)
    if full is None:
        full = run_worker({**base, "row_length": lora_row_length, "checkpointing": False})
        raw.append(full)
    lora = run_worker({**base, "lora": True, "row_length": lora_row_length, "checkpointing": False})
    trl = run_worker({"kind": "trl", "lora": False, "row_length": SETTINGS["row_length"], "checkpointing": False})
    ours_same = next(r for r in raw if r["row_length"] == SETTINGS["row_length"] and not r["checkpointing"])
    return {
        "peak_memory_mb": by_length,
        "lora_memory_ratio": lora["peak_growth_mb"] / full["peak_growth_mb"],
        "lora": {key: {"peak_growth_mb": r["peak_growth_mb"], "trainable_parameters": r["trainable_parameters"],
                       "total_parameters": r["total_parameters"], "gradient_and_adamw_mb": r["gradient_and_adamw_mb"],
                       "modules_trained_in_full": r["modules_trained_in_full"]}
                 for key, r in (("lora", lora), ("full", full))},
        "trl_vs_ours_memory_ratio": ours_same["peak_growth_mb"] / trl["peak_growth_mb"],
        "method": "VmHWM after trainer.train() minus VmRSS before it; VmHWM reset via /proc/self/clear_refs (5) "
        "right before train(); one run per fresh subprocess; covers gradients, AdamW state and activations",
        "raw": [*raw, lora, trl],
    }


# -- report --------------------------------------------------------------------------------------------------------
def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem / 2**20, 1), "system": platform.platform(),
            "torch_threads": SETTINGS["threads"]}


def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def markdown(result: dict) -> str:
    t, m = result["throughput"], result["memory"]
    ours, trl = t["summary"]["ours"], t["summary"]["trl"]
    lora, full = m["lora"]["lora"], m["lora"]["full"]
    s = result["settings"]
    lines = [
        "# Training overhead of LongRoPE2SFTTrainer (CPU)",
        "",
        f"Written by `python benchmarks/train_overhead.py` on {result['date']}; {result['machine']['cpu']}, "
        f"{s['threads']} torch threads, fp32. Model: random Llama, {MODEL['num_layers']} layers, hidden "
        f"{MODEL['hidden_size']}, {MODEL['heads']} heads, vocabulary {MODEL['vocab_size']}, window "
        f"{MODEL['original']} extended to the row length. Details and raw timings: `train_overhead.json`.",
        "",
        f"## Throughput (rows of {s['row_length']} tokens, batch {s['batch_size']}, {s['steps']} steps, first "
        f"{s['warmup_steps']} not timed, {s['repeats']} runs each, interleaved)",
        "",
        "| trainer | median step (s) | tokens/s | step to step (s) |",
        "|---|---|---|---|",
        f"| TRL `SFTTrainer` | {trl['median_step_seconds']:.3f} | {trl['tokens_per_second']:.0f} | "
        f"{trl['median_step_to_step_seconds']:.3f} |",
        f"| `LongRoPE2SFTTrainer` | {ours['median_step_seconds']:.3f} | {ours['tokens_per_second']:.0f} | "
        f"{ours['median_step_to_step_seconds']:.3f} |",
        "",
        f"`throughput_ratio` (ours / TRL, tokens/s) = **{t['throughput_ratio']:.3f}** (step to step: "
        f"{t['throughput_ratio_step_to_step']:.3f}); identical losses: {t['same_losses_in_every_run']}.",
        "",
        f"## Peak memory growth of training, `LongRoPE2SFTTrainer`, batch 1, {s['memory_steps']} steps (MB)",
        "",
        "| row tokens | no checkpointing | activation checkpointing |",
        "|---|---|---|",
        *(f"| {length} | {v['without_checkpointing']:.0f} | {v['with_checkpointing']:.0f} |"
          for length, v in m["peak_memory_mb"].items()),
        "",
        f"## LoRA (r={s['lora_r']}, q/k/v/o, embed_tokens + norm in full) vs full fine-tuning, rows of "
        f"{s['lora_row_length']} tokens",
        "",
        "| | peak growth (MB) | trainable parameters | grads + AdamW (MB) |",
        "|---|---|---|---|",
        f"| full | {full['peak_growth_mb']:.0f} | {full['trainable_parameters']:,} | "
        f"{full['gradient_and_adamw_mb']:.0f} |",
        f"| LoRA | {lora['peak_growth_mb']:.0f} | {lora['trainable_parameters']:,} | "
        f"{lora['gradient_and_adamw_mb']:.0f} |",
        "",
        f"`lora_memory_ratio` (LoRA / full) = **{m['lora_memory_ratio']:.3f}**. Memory of ours / TRL at "
        f"{s['row_length']} tokens: {m['trl_vs_ours_memory_ratio']:.3f}.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=SETTINGS["repeats"], help="timed runs of each trainer")
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"], help="steps per timed run (with warm-up)")
    parser.add_argument("--memory-steps", type=int, default=SETTINGS["memory_steps"], help="steps per memory run")
    parser.add_argument("--memory-rows", type=int, nargs="+", default=SETTINGS["memory_rows"], help="row lengths")
    parser.add_argument("--output", type=Path, default=RESULT, help="JSON file; the .md table is written beside it")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    SETTINGS.update(repeats=args.repeats, steps=args.steps, memory_steps=args.memory_steps,
                    memory_rows=args.memory_rows)
    if args.memory_worker:
        result = memory_worker(json.loads(args.memory_worker))
        print(json.dumps(result))
        return result
    import torch

    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="train_overhead.") as tmp:
        print("throughput", flush=True)
        timing = throughput(SETTINGS["repeats"], Path(tmp))
    print("memory", flush=True)
    mem = memory(SETTINGS["memory_rows"], SETTINGS["lora_row_length"])
    result = {
        "throughput_ratio": timing["throughput_ratio"],
        "lora_memory_ratio": mem["lora_memory_ratio"],
        "peak_memory_mb": mem["peak_memory_mb"],
        "definitions": {
            "throughput_ratio": "tokens/s of LongRoPE2SFTTrainer / tokens/s of TRL SFTTrainer (median over runs of "
            "each run's median on_step_begin -> on_step_end time); 1.0 = no overhead, < 1 = ours slower",
            "throughput_ratio_step_to_step": "the same from on_step_end to the next on_step_end (adds collation, "
            "batch fetch and logging)",
            "lora_memory_ratio": "peak training memory growth of LoRA / of full fine-tuning; < 1 = LoRA saves",
            "peak_memory_mb": "MB of resident memory added by trainer.train() at its peak (VmHWM - VmRSS before), "
            "LongRoPE2SFTTrainer, by row length, without / with activation checkpointing",
            "trl_vs_ours_memory_ratio": "peak memory growth of ours / of TRL SFTTrainer on the same rows",
        },
        "trl_model": "the same longrope2-extended weights as ours (a fresh copy per run), so only the trainer differs",
        "throughput": timing,
        "memory": mem,
        "settings": {**SETTINGS, "model": MODEL, "precision": "fp32 (bf16=False)", "optimizer": timing["runs"]["ours"][0]["optimizer"], "attention": "sdpa", "lora_target_modules": LORA_TARGETS},
        "versions": versions(),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "torch_num_threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - started,
    }
    write_json_atomically(args.output, result)
    md = args.output.with_suffix(".md")
    tmp_md = md.with_name(f".{md.name}.tmp{os.getpid()}")
    tmp_md.write_text(markdown(result))
    os.replace(tmp_md, md)
    print(markdown(result))
    print(f"wrote {args.output} and {md} in {result['wall_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
