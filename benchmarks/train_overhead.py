"""Cost of mixed-window midtraining: LongRoPE2SFTTrainer vs TRL's SFTTrainer, and training memory, in one run.

    python benchmarks/train_overhead.py          # writes benchmarks/results/train_overhead.{json,md} (~5 min, 2 cores)
    python benchmarks/train_overhead.py --help   # the settings that can be changed (defaults = the recorded run)

Everything runs offline on the CPU in fp32 (``bf16=False``: TRL's configs default to bf16, which on a CPU means
bf16 autocast). The model is a random Llama (4 layers, hidden 256, MLP 1024, 8 heads of 32 dims, untied
embeddings, vocabulary 4,096 with a word-level tokenizer of placeholder tokens, SDPA attention), pre-trained window
128, extended with YaRN factors (``hf_longrope2.factors.yarn``) to the row length by ``hf_longrope2.extend``. The
rows are the package's own: random-token documents (88% of them 16-128 tokens, the rest 129 tokens to 3 rows long,
so about a quarter of the tokens are short-window), packed by the planner and row writer of ``build_mixed_dataset`` into
short rows (document-masked, original RoPE) and long rows (rescaled RoPE), shuffled with a seed, with the columns
``input_ids``, ``labels``, ``seq_lengths`` (``position_ids`` and ``kind`` stay out, as the trainer drops them).

(a) ``throughput_ratio`` = tokens/s(``LongRoPE2SFTTrainer``) / tokens/s(TRL ``SFTTrainer``), new/old, 1.0 = no
    overhead, below 1 = ours is slower. Both train the same rows (rows of 1,024 tokens, batch 1, read in order),
    from the same extended weights (the fairest choice: a fresh copy of one extended model for every run, so only
    the trainer differs; the base model would run different rotary code), with the same seed, learning rate and
    number of steps, AdamW, no activation checkpointing, logging every step (the worst case for the per-window
    loss logging). TRL gets ``SFTConfig(padding_free=True, max_length=None, dataset_kwargs={"skip_prepare_dataset":
    True})``: the same padding-free collator and its own fused LM head. A ``TrainerCallback`` stamps
    ``time.perf_counter()`` at ``on_step_begin`` / ``on_step_end``; the first 2 steps of every run are warm-up and
    not counted. Step times on this 2-core VM drift by 10-20% from run to run (and other work on the machine comes
    and goes), more than the effect looked for, so the two trainers run in *lockstep*: both ``train()`` loops in
    one process, each in its own thread, handing a turn to each other at every ``on_step_end``, so that exactly one
    computes at any time and step k of one is timed right next to step k of the other (2 torch threads each,
    ``--repeats`` lockstep runs, alternating which goes first). ``throughput_ratio`` uses the median over runs
    of each run's median step time; ``throughput_ratio_paired_steps`` the median of per-step ratios;
    ``throughput_ratio_turns`` the whole turn of each trainer (adds the collator, the next batch and the
    logging). As a cross-check, ``throughput_ratio_whole_runs`` times whole ``train()`` runs one at a time,
    alternating A B B A. Both trainers must log the same losses (same rows, weights and loss normalisation).
(b) ``peak_memory_mb``: for ``LongRoPE2SFTTrainer`` at rows of 512 to 4,096 tokens (batch 1, the model extended
    to the row length), with and without activation (gradient) checkpointing, each setting in a fresh subprocess:
    the kernel's high-water mark of resident memory (``VmHWM``), reset with ``/proc/self/clear_refs`` just before
    ``trainer.train()``, minus the resident memory at that moment, over ``--memory-steps`` steps (the second one
    has the AdamW state); the median of ``--memory-repeats`` processes. It covers gradients, AdamW state and
    activations (the weights were resident before). The workers run with ``MALLOC_MMAP_THRESHOLD_=131072``: glibc
    then hands every freed tensor of 128 KiB or more back to the OS at once, so the high-water mark follows the
    live tensors and repeats within a few MB; with glibc's default (dynamic) threshold, freed blocks of up to
    32 MiB stay in the heap and the same run reads 10-40% higher, differently from one process to the next. The
    step times of these runs pay for the extra page faults; they are no throughput measure. TRL's ``SFTTrainer``
    is measured the same way at 1,024 tokens (``memory_ratio_ours_vs_trl``). Linux only.
(c) ``lora_memory_ratio`` = peak(LoRA) / peak(full fine-tuning), new/old, below 1 is a saving, measured as in (b)
    at one row length without checkpointing. LoRA as ``hf-longrope2 midtrain --use_peft`` builds it:
    ``hf_longrope2.midtrain.peft_config_for(trl.ModelConfig(use_peft=True, lora_r=8, lora_target_modules=[q, k, v,
    o]))``, which also trains ``embed_tokens`` and ``norm`` in full (``modules_to_save``). Trainable parameter
    counts are recorded: on a model this small the activations dominate, so the saving is small. TRL's default
    ``lora_dropout`` (0.05) keeps a dropped-out copy of each adapted layer's input for the backward pass, so LoRA
    is also measured with ``lora_dropout=0`` (``lora_memory_ratio_without_dropout``).

The machine's load average is recorded before and after: other work on a 2-core machine skews the timings.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import (they are all inside functions)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if not __package__:  # run as `python benchmarks/train_overhead.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, envelope, peak_rss, run_in_fresh_process, write_results

RESULT = RESULTS / "train_overhead.json"
PAD, BOS, EOS, UNK = 0, 1, 2, 3
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "hf-longrope2")

MODEL = dict(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_layers=4, heads=8, original=128)
SETTINGS = dict(
    row_length=1024,
    batch_size=1,
    steps=17,
    warmup_steps=2,
    repeats=4,
    whole_run_repeats=2,
    threads=2,
    learning_rate=1e-4,
    logging_steps=1,
    seed=0,
    short_doc_probability=0.88,
    memory_rows=[512, 1024, 2048, 4096],
    memory_steps=2,
    memory_repeats=2,
    malloc_mmap_threshold=131072,
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
    from hf_longrope2.extension import extend

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
    import numpy as np

    from hf_longrope2.data.mixture import TOKENIZED_COLUMN
    from hf_longrope2.data.packing import materialise_plan
    from hf_longrope2.data.packing_plan import plan

    window, vocab = MODEL["original"], MODEL["vocab_size"]
    rng = random.Random(seed)
    docs: list[list[int]] = []
    tokens = 0
    while tokens < 1.3 * n_rows * row_length + 2 * row_length:
        short = rng.random() < short_probability
        n = rng.randint(16, window) if short else rng.randint(window + 1, 3 * row_length)
        docs.append([rng.randrange(4, vocab) for _ in range(n - 1)] + [EOS])
        tokens += n
    # the planner and row writer of build_mixed_dataset, on in-memory documents of one source
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    rows, report, _ = plan(["documents"], np.zeros(len(docs), np.int32), np.arange(len(docs)), lengths,
                           original_window=window, target_length=row_length, max_document_tokens=None,
                           short_fraction=None, seed=seed, dropped=())
    if len(rows) < n_rows:
        raise RuntimeError(f"packed only {len(rows)} rows of {row_length} tokens, need {n_rows}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)  # as build_mixed_dataset does
    rows = rows.take(order)
    ints = datasets.List(datasets.Value("int64"))
    tokens = datasets.Dataset.from_dict({TOKENIZED_COLUMN: docs}, features=datasets.Features({TOKENIZED_COLUMN: ints}))
    dataset = materialise_plan(rows, {"documents": tokens}, pad_token_id=PAD)
    dataset = dataset.select_columns(["input_ids", "labels", "seq_lengths"])
    used = [rows.kind(r) for r in range(n_rows)]  # sequential sampling: these are the rows trained on, in this order
    summary = {"rows": dict(report.rows), "real_tokens": dict(report.real_tokens),
               "padding_tokens": dict(report.padding_tokens), "short_fraction": report.short_fraction,
               "trained_rows_in_order": used}
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
        train_sampling_strategy="sequential",  # rows come shuffled (seeded) from the packer; no shared global RNG
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
        from hf_longrope2.midtrain.trainer import LongRoPE2SFTConfig

        return LongRoPE2SFTConfig(**common, target_length=row_length)
    from trl import SFTConfig

    return SFTConfig(**common, padding_free=True, max_length=None, dataset_kwargs={"skip_prepare_dataset": True})


class Turns:
    """Lets several trainers, each in its own thread, run one optimizer step at a time, in turn."""

    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.cond = threading.Condition()
        self.turn: str | None = None
        self.arrived: set[str] = set()
        self.finished: set[str] = set()
        self.failed = False

    def _next(self, kind: str) -> str | None:
        i = self.order.index(kind)
        later = [k for k in self.order[i + 1:] + self.order[: i + 1] if k not in self.finished]
        return later[0] if later else None

    def _wait(self, kind: str) -> None:
        if not self.cond.wait_for(lambda: self.turn == kind or self.failed, timeout=900):
            raise TimeoutError(f"{kind} waited 900 s for its turn")
        if self.failed:
            raise RuntimeError("the other trainer failed")

    def start(self, kind: str) -> None:
        """At `on_train_begin`: wait until every trainer is set up; the first in `order` goes first."""
        with self.cond:
            self.arrived.add(kind)
            if self.arrived == set(self.order):
                self.turn = self.order[0]
                self.cond.notify_all()
            self._wait(kind)

    def pass_on(self, kind: str, wait: bool = True) -> None:
        with self.cond:
            if not wait:
                self.finished.add(kind)
            self.turn = self._next(kind) if wait else self._next(kind) or kind
            self.cond.notify_all()
            if wait and self.turn != kind:
                self._wait(kind)

    def fail(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()


def make_trainer(kind: str, model: Any, args: Any, rows: Any, peft_config: Any = None,
                 turns: Turns | None = None) -> tuple[Any, Any]:
    """The trainer of `kind` (``ours`` / ``trl``) and a callback holding its step times (and taking `turns`)."""
    from transformers import PrinterCallback, TrainerCallback

    class StepTimer(TrainerCallback):
        """perf_counter at every step's begin and end, and when the thread got its turn back (lockstep)."""

        def __init__(self) -> None:
            self.begin: list[float] = []
            self.end: list[float] = []
            self.resumed: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if turns is not None:
                turns.start(kind)
            self.resumed.append(time.perf_counter())

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begin.append(time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.end.append(time.perf_counter())
            if turns is not None:
                turns.pass_on(kind)
            self.resumed.append(time.perf_counter())

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if turns is not None:
                turns.pass_on(kind, wait=False)

    timer = StepTimer()
    tokenizer = word_tokenizer(MODEL["vocab_size"])
    if kind == "ours":
        from hf_longrope2.midtrain.trainer import LongRoPE2SFTTrainer as Cls
    else:
        from trl import SFTTrainer as Cls
    trainer = Cls(model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=peft_config,
                  callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # the same for both trainers; keeps the output to one line per run
    return trainer, timer


def _warning_texts(caught: list[warnings.WarningMessage]) -> list[str]:
    return sorted({f"{w.category.__name__}: {str(w.message)[:300]}" for w in caught})


# -- (a) throughput ------------------------------------------------------------------------------------------------
def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine since boot, CPU seconds of this process and its children)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


def _other_cpu(start: tuple[float, float]) -> float:
    """CPU seconds other processes used since `start` (load that skews the timing; ~0 on a quiet machine)."""
    busy, own = _cpu_seconds()
    return round(busy - start[0] - (own - start[1]), 2)


def _step_times(timer: Any, warmup: int) -> dict:
    """Per-step seconds: begin -> end, and the whole turn (from getting the thread back, or the previous step's end,
    to this step's end: adds the collator, the next batch and the logging)."""
    step = [e - b for b, e in zip(timer.begin, timer.end, strict=True)]
    turn = [e - r for r, e in zip(timer.resumed, timer.end, strict=False)]
    return {"step_seconds": step[warmup:], "turn_seconds": turn[warmup:]}


def _run_summary(kind: str, index: int, times: dict, trainer: Any, caught: list) -> dict:
    import torch

    s = SETTINGS
    return {
        "kind": kind,
        "index": index,
        **times,
        "median_step_seconds": statistics.median(times["step_seconds"]),
        "median_turn_seconds": statistics.median(times["turn_seconds"]),
        "tokens_per_second": s["row_length"] * s["batch_size"] / statistics.median(times["step_seconds"]),
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "torch_threads": torch.get_num_threads(),
        "optimizer": getattr(trainer.args.optim, "value", str(trainer.args.optim)),
        "warnings": _warning_texts(caught),
    }


def lockstep_run(state: dict, rows: Any, work: Path, index: int, order: list[str]) -> dict[str, dict]:
    """Both trainers' `train()` in two threads taking turns step by step (`order[0]` first): paired steps."""
    import torch

    s = SETTINGS
    turns = Turns(order)
    trainers, timers, errors = {}, {}, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for kind in order:
            model = build_model(s["row_length"], s["seed"])
            model.load_state_dict(state)
            args = training_args(kind, str(work / f"{kind}-{index}"), s["row_length"], s["steps"], False)
            trainers[kind], timers[kind] = make_trainer(kind, model, args, rows, turns=turns)

        def train(kind: str) -> None:
            torch.set_num_threads(s["threads"])
            try:
                trainers[kind].train()
            except BaseException as error:  # noqa: B036 - re-raised in the main thread
                errors.append(error)
                turns.fail()

        gc.collect()
        load, cpu = os.getloadavg(), _cpu_seconds()
        threads = [threading.Thread(target=train, args=(kind,), name=f"train-{kind}") for kind in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    out = {}
    for kind in order:
        out[kind] = _run_summary(kind, index, _step_times(timers[kind], s["warmup_steps"]), trainers[kind], caught)
        out[kind]["load_average_before"] = load
        out[kind]["other_processes_cpu_seconds"] = _other_cpu(cpu)
        out[kind]["went_first"] = kind == order[0]
    return out


def whole_run(kind: str, state: dict, rows: Any, work: Path, index: int) -> dict:
    """One trainer's whole `train()` on its own (the runs alternate A B B A ...)."""
    s = SETTINGS
    model = build_model(s["row_length"], s["seed"])
    model.load_state_dict(state)
    args = training_args(kind, str(work / f"whole-{kind}-{index}"), s["row_length"], s["steps"], False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, timer = make_trainer(kind, model, args, rows)
        gc.collect()
        load, cpu = os.getloadavg(), _cpu_seconds()
        trainer.train()
        other = _other_cpu(cpu)
    times = _step_times(timer, s["warmup_steps"])
    # on its own, a step's turn starts at the previous step's end
    times["turn_seconds"] = [b - a for a, b in zip(timer.end, timer.end[1:], strict=False)][s["warmup_steps"]:]
    return {**_run_summary(kind, index, times, trainer, caught), "load_average_before": load,
            "other_processes_cpu_seconds": other}


def _summarise(runs: dict[str, list[dict]]) -> dict:
    s = SETTINGS
    summary = {}
    for kind, results in runs.items():
        pooled = [t for r in results for t in r["step_seconds"]]
        median = statistics.median(r["median_step_seconds"] for r in results)
        summary[kind] = {
            "median_step_seconds": median,
            "median_turn_seconds": statistics.median(r["median_turn_seconds"] for r in results),
            "pooled_median_step_seconds": statistics.median(pooled),
            "min_step_seconds": min(pooled),
            "tokens_per_second": s["row_length"] * s["batch_size"] / median,
            "timed_steps": len(pooled),
            "runs": len(results),
        }
    return summary


def throughput(repeats: int, work: Path) -> dict:
    import torch

    s = SETTINGS
    torch.set_num_threads(s["threads"])
    reference = build_model(s["row_length"], s["seed"])
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    del reference
    rows, packing = make_rows(s["row_length"], s["steps"] * s["batch_size"], s["seed"], s["short_doc_probability"])
    lockstep: dict[str, list[dict]] = {"ours": [], "trl": []}
    paired: list[float] = []
    for i in range(repeats):
        order = ["ours", "trl"] if i % 2 == 0 else ["trl", "ours"]
        result = lockstep_run(state, rows, work, i, order)
        for kind, r in result.items():
            lockstep[kind].append(r)
        paired += [t / o for t, o in zip(result["trl"]["step_seconds"], result["ours"]["step_seconds"], strict=True)]
        print(f"  lockstep {i} ({order[0]} first): median step ours {result['ours']['median_step_seconds']:.3f} s, "
              f"TRL {result['trl']['median_step_seconds']:.3f} s; other processes used "
              f"{result['ours']['other_processes_cpu_seconds']:.1f} CPU s", flush=True)
    whole: dict[str, list[dict]] = {"ours": [], "trl": []}
    for i, kind in enumerate((["ours", "trl", "trl", "ours"] * s["whole_run_repeats"])[: 2 * s["whole_run_repeats"]]):
        result = whole_run(kind, state, rows, work, i)  # A B B A: drift cancels
        whole[kind].append(result)
        print(f"  whole run {i} {kind}: median step {result['median_step_seconds']:.3f} s; other processes used "
              f"{result['other_processes_cpu_seconds']:.1f} CPU s", flush=True)
    lock, alone = _summarise(lockstep), _summarise(whole)
    losses = {json.dumps(r["losses"]) for rs in (*lockstep.values(), *whole.values()) for r in rs}
    return {
        "throughput_ratio": lock["trl"]["median_step_seconds"] / lock["ours"]["median_step_seconds"],
        "throughput_ratio_paired_steps": statistics.median(paired),
        "paired_step_ratio_quartiles": statistics.quantiles(paired, n=4),
        "throughput_ratio_per_lockstep_run": [t["median_step_seconds"] / o["median_step_seconds"]
                                              for o, t in zip(lockstep["ours"], lockstep["trl"], strict=True)],
        "throughput_ratio_turns": lock["trl"]["median_turn_seconds"] / lock["ours"]["median_turn_seconds"],
        "throughput_ratio_whole_runs": alone["trl"]["median_step_seconds"] / alone["ours"]["median_step_seconds"],
        "throughput_ratio_whole_runs_step_to_step": alone["trl"]["median_turn_seconds"]
        / alone["ours"]["median_turn_seconds"],
        "same_losses_in_every_run": len(losses) == 1,
        "losses": json.loads(next(iter(losses))) if len(losses) == 1 else sorted(losses),
        "lockstep": lock,
        "whole_runs": alone,
        "packing": packing,
        "raw": {"lockstep": lockstep, "whole_runs": whole, "paired_step_ratios": paired},
    }


# -- (b, c) memory -------------------------------------------------------------------------------------------------
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

        from hf_longrope2.midtrain.runner import peft_config_for

        extra = {"lora_dropout": spec["lora_dropout"]} if "lora_dropout" in spec else {}
        peft_config = peft_config_for(ModelConfig(use_peft=True, lora_r=s["lora_r"],
                                                  lora_target_modules=list(LORA_TARGETS), **extra))
    with tempfile.TemporaryDirectory(prefix="train_overhead.") as tmp:
        args = training_args(spec["kind"], tmp, row_length, steps, spec["checkpointing"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer, timer = make_trainer(spec["kind"], model, args, rows, peft_config)
            trained = [(n, p.numel()) for n, p in trainer.model.named_parameters() if p.requires_grad]
            with peak_rss() as memory:
                trainer.train()
    trainable = sum(n for _, n in trained)
    full_modules = sorted({n.split(".modules_to_save.")[0] for n, _ in trained if ".modules_to_save." in n})
    step = [e - b for b, e in zip(timer.begin, timer.end, strict=True)][1:]
    return {
        **spec,
        **memory,
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
    """`memory_worker(spec)` in a fresh interpreter, `SETTINGS["memory_repeats"]` times; the median peak counts."""
    args = ["--memory-steps", str(SETTINGS["memory_steps"]), "--memory-worker", json.dumps(spec)]
    # a fixed mmap threshold (which also turns off glibc's dynamic one) returns freed tensors to the OS at once, so
    # the resident high-water mark follows the live tensors and repeats within a few MB (not 10-30% apart)
    env = {**os.environ, "OMP_NUM_THREADS": str(SETTINGS["threads"]),
           "MALLOC_MMAP_THRESHOLD_": str(SETTINGS["malloc_mmap_threshold"])}
    runs = []
    for _ in range(SETTINGS["memory_repeats"]):
        started, cpu = time.perf_counter(), _cpu_seconds()
        result = run_in_fresh_process(Path(__file__).resolve(), args, env, f"memory worker {spec}")
        runs.append({**result, "subprocess_seconds": time.perf_counter() - started,
                     "other_processes_cpu_seconds": _other_cpu(cpu)})
    peaks = [r["peak_growth_mb"] for r in runs]
    result = {**runs[0], "peak_growth_mb": statistics.median(peaks), "peak_growth_mb_runs": peaks,
              **{k: [r[k] for r in runs] for k in ("subprocess_seconds", "other_processes_cpu_seconds")}}
    print(f"  {spec}: peak growth {' / '.join(f'{p:.0f}' for p in peaks)} MB, step "
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

    def plain_run(length: int) -> dict:
        found = next((r for r in raw if r["row_length"] == length and not r["checkpointing"]), None)
        if found is None:
            found = run_worker({**base, "row_length": length, "checkpointing": False})
            raw.append(found)
        return found

    full = plain_run(lora_row_length)
    lora = run_worker({**base, "lora": True, "row_length": lora_row_length, "checkpointing": False})
    lora_no_dropout = run_worker({**base, "lora": True, "lora_dropout": 0.0, "row_length": lora_row_length,
                                  "checkpointing": False})
    ours_same = plain_run(SETTINGS["row_length"])
    trl = run_worker({"kind": "trl", "lora": False, "row_length": SETTINGS["row_length"], "checkpointing": False})
    keys = ("peak_growth_mb", "peak_growth_mb_runs", "trainable_parameters", "total_parameters",
            "gradient_and_adamw_mb", "modules_trained_in_full", "median_step_seconds_after_first")
    return {
        "peak_memory_mb": by_length,
        "lora_memory_ratio": lora["peak_growth_mb"] / full["peak_growth_mb"],
        "lora_memory_ratio_without_dropout": lora_no_dropout["peak_growth_mb"] / full["peak_growth_mb"],
        "lora": {name: {k: r[k] for k in keys}
                 for name, r in (("full", full), ("lora", lora), ("lora_without_dropout", lora_no_dropout))},
        "memory_ratio_ours_vs_trl": ours_same["peak_growth_mb"] / trl["peak_growth_mb"],
        "trl_peak_growth_mb": trl["peak_growth_mb"],
        "method": "VmHWM after trainer.train() minus VmRSS before it; VmHWM reset via /proc/self/clear_refs (5) "
        "right before train(); each run in a fresh subprocess with MALLOC_MMAP_THRESHOLD_=131072, median of "
        "memory_repeats runs; covers gradients, AdamW state and activations",
        "raw": [*raw, lora, lora_no_dropout, trl],
    }


# -- report --------------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    t, m = result["throughput"], result["memory"]
    lock, alone = t["lockstep"], t["whole_runs"]
    lora, full, nodrop = m["lora"]["lora"], m["lora"]["full"], m["lora"]["lora_without_dropout"]
    s = result["settings"]
    trained = t["packing"]["trained_rows_in_order"]

    def row(name: str, kind: str) -> str:
        return (f"| {name} | {lock[kind]['median_step_seconds']:.3f} | {lock[kind]['tokens_per_second']:.0f} | "
                f"{lock[kind]['median_turn_seconds']:.3f} | {alone[kind]['median_step_seconds']:.3f} |")

    lines = [
        "# Training overhead of LongRoPE2SFTTrainer (CPU)",
        "",
        f"Written by `python benchmarks/train_overhead.py` on {result['date']} in {result['wall_time_s']:.0f} s; "
        f"{result['machine']['cpu']}, {s['threads']} torch threads, fp32. Model: random Llama, {MODEL['num_layers']} "
        f"layers, hidden {MODEL['hidden_size']}, {MODEL['heads']} heads, vocabulary {MODEL['vocab_size']}, window "
        f"{MODEL['original']} extended (YaRN factors) to the row length. Method, settings, versions and raw timings: "
        "`train_overhead.json` and the script's docstring.",
        "",
        f"## Throughput: rows of {s['row_length']} tokens, batch {s['batch_size']}, {s['steps']} steps per run "
        f"(first {s['warmup_steps']} not timed), same rows and weights",
        "",
        f"Rows trained, in order: {trained.count('short')} short-window, {trained.count('long')} long-window "
        f"({t['packing']['short_fraction']:.0%} of the packed tokens are short-window). "
        f"Lockstep: both trainers' `train()` take turns step by step ({s['repeats']} runs); whole runs: one trainer "
        f"at a time, A B B A ({s['whole_run_repeats']} runs each). Medians over runs of each run's median.",
        "",
        "| trainer | step, lockstep (s) | tokens/s | turn incl. logging (s) | step, whole runs (s) |",
        "|---|---|---|---|---|",
        row("TRL `SFTTrainer`", "trl"),
        row("`LongRoPE2SFTTrainer`", "ours"),
        "",
        f"`throughput_ratio` (ours / TRL, tokens/s, lockstep) = **{t['throughput_ratio']:.3f}** (per run: "
        f"{', '.join(f'{r:.3f}' for r in t['throughput_ratio_per_lockstep_run'])}); median of paired step ratios "
        f"{t['throughput_ratio_paired_steps']:.3f} (quartiles "
        f"{', '.join(f'{q:.3f}' for q in t['paired_step_ratio_quartiles'])}); with logging "
        f"{t['throughput_ratio_turns']:.3f}; whole runs {t['throughput_ratio_whole_runs']:.3f}. Identical losses "
        f"in every run: {t['same_losses_in_every_run']}.",
        "",
        f"## Peak memory growth of training (MB): `LongRoPE2SFTTrainer`, batch 1, {s['memory_steps']} steps",
        "",
        "| row tokens | no checkpointing | activation checkpointing |",
        "|---|---|---|",
        *(f"| {length} | {v['without_checkpointing']:.0f} | {v['with_checkpointing']:.0f} |"
          for length, v in m["peak_memory_mb"].items()),
        "",
        f"TRL `SFTTrainer` at {s['row_length']} tokens: {m['trl_peak_growth_mb']:.0f} MB (ours / TRL "
        f"{m['memory_ratio_ours_vs_trl']:.3f}).",
        "",
        f"## LoRA (r={s['lora_r']}, q/k/v/o, embeddings and norms in full) vs full fine-tuning, rows of "
        f"{s['lora_row_length']} tokens",
        "",
        "| | peak growth (MB) | trainable parameters | grads + AdamW (MB) |",
        "|---|---|---|---|",
        f"| full | {full['peak_growth_mb']:.0f} | {full['trainable_parameters']:,} | "
        f"{full['gradient_and_adamw_mb']:.0f} |",
        f"| LoRA (TRL default dropout 0.05) | {lora['peak_growth_mb']:.0f} | {lora['trainable_parameters']:,} | "
        f"{lora['gradient_and_adamw_mb']:.0f} |",
        f"| LoRA, dropout 0 | {nodrop['peak_growth_mb']:.0f} | {nodrop['trainable_parameters']:,} | "
        f"{nodrop['gradient_and_adamw_mb']:.0f} |",
        "",
        f"`lora_memory_ratio` (LoRA / full) = **{m['lora_memory_ratio']:.3f}** (dropout 0: "
        f"{m['lora_memory_ratio_without_dropout']:.3f}). Peaks: medians of {s['memory_repeats']} fresh processes "
        f"with `MALLOC_MMAP_THRESHOLD_={s['malloc_mmap_threshold']}` (so that the resident peak follows the live "
        "tensors; glibc's default reads 10-40% higher and varies between processes).",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=SETTINGS["repeats"], help="lockstep runs (both trainers)")
    parser.add_argument("--whole-run-repeats", type=int, default=SETTINGS["whole_run_repeats"],
                        help="whole train() runs of each trainer, one at a time")
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"], help="steps per timed run (with warm-up)")
    parser.add_argument("--memory-steps", type=int, default=SETTINGS["memory_steps"], help="steps per memory run")
    parser.add_argument("--memory-repeats", type=int, default=SETTINGS["memory_repeats"],
                        help="fresh processes per memory setting (median)")
    parser.add_argument("--memory-rows", type=int, nargs="+", default=SETTINGS["memory_rows"], help="row lengths")
    parser.add_argument("--output", type=Path, default=RESULT, help="JSON file; the .md table is written beside it")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    SETTINGS.update(repeats=args.repeats, whole_run_repeats=args.whole_run_repeats, steps=args.steps,
                    memory_steps=args.memory_steps, memory_repeats=args.memory_repeats, memory_rows=args.memory_rows)
    if args.memory_worker:
        result = memory_worker(json.loads(args.memory_worker))
        print(json.dumps(result))
        return result
    import torch

    started = time.perf_counter()
    load_before, cpu_start = os.getloadavg(), _cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="train_overhead.") as tmp:
        print("throughput", flush=True)
        timing = throughput(SETTINGS["repeats"], Path(tmp))
    print("memory", flush=True)
    mem = memory(SETTINGS["memory_rows"], SETTINGS["lora_row_length"])
    result = {
        "throughput_ratio": timing["throughput_ratio"],
        "lora_memory_ratio": mem["lora_memory_ratio"],
        "peak_memory_mb": mem["peak_memory_mb"],
        "throughput_ratio_paired_steps": timing["throughput_ratio_paired_steps"],
        "throughput_ratio_whole_runs": timing["throughput_ratio_whole_runs"],
        "lora_memory_ratio_without_dropout": mem["lora_memory_ratio_without_dropout"],
        "memory_ratio_ours_vs_trl": mem["memory_ratio_ours_vs_trl"],
        "definitions": {
            "throughput_ratio": "tokens/s of LongRoPE2SFTTrainer / tokens/s of TRL SFTTrainer = TRL / ours of the "
            "median over lockstep runs of each run's median on_step_begin -> on_step_end time; 1.0 = no overhead, "
            "< 1 = ours slower",
            "throughput_ratio_paired_steps": "median over every timed step of TRL time / ours time for the same row "
            "in the same lockstep run",
            "throughput_ratio_turns": "as throughput_ratio, with the whole turn of each trainer (adds the collator, "
            "the next batch and the logging)",
            "throughput_ratio_whole_runs": "as throughput_ratio, from whole train() runs one at a time (A B B A)",
            "lora_memory_ratio": "peak training memory growth of LoRA / of full fine-tuning; < 1 = LoRA saves",
            "lora_memory_ratio_without_dropout": "the same with lora_dropout=0 instead of TRL's default 0.05",
            "peak_memory_mb": "MB of resident memory added by trainer.train() at its peak (VmHWM - VmRSS before), "
            "LongRoPE2SFTTrainer, by row length, without / with activation checkpointing",
            "memory_ratio_ours_vs_trl": "peak memory growth of ours / of TRL SFTTrainer on the same rows",
            "other_processes_cpu_seconds": "CPU seconds the rest of the machine used during a run (/proc/stat busy "
            "time minus this process's); well above 0 means other work skewed that run",
        },
        "trl_model": "the same longrope2-extended weights as ours (a fresh copy per run), so only the trainer differs",
        "throughput": timing,
        "memory": mem,
        "settings": {
            **SETTINGS,
            "model": MODEL,
            "precision": "fp32 (bf16=False)",
            "optimizer": timing["raw"]["lockstep"]["ours"][0]["optimizer"],
            "lr_scheduler": "constant",
            "sampling": "sequential (rows shuffled with the seed when packed)",
            "attention": "sdpa",
            "lora_target_modules": LORA_TARGETS,
        },
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "other_processes_cpu_seconds": _other_cpu(cpu_start),
        "torch_num_threads": torch.get_num_threads(),
        **envelope(started, "train_overhead.py", argv, packages=PACKAGES, torch_threads=SETTINGS["threads"]),
    }
    write_results(args.output, result, markdown(result))
    print(markdown(result))
    print(f"wrote {args.output} and {args.output.with_suffix('.md')} in {result['wall_time_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
