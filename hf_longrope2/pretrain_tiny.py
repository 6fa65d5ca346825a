"""Pretrain the embedded tiny base model (hf_longrope2/tiny/tiny_base) on an offline corpus, reproducibly from a seed.

```bash
python recipes/pretrain_tiny.py --output-dir tiny-base                  # the shipped model: see its README.md
python recipes/pretrain_tiny.py --output-dir tiny-base --resume         # continue an interrupted run
python recipes/pretrain_tiny.py --output-dir /tmp/t --max-steps 10      # smoke run
```

Corpus, tokenizer and training rows: see [`hf_longrope2.tiny.pretraining`]; the recipe's parser is
[`hf_longrope2.cli.VERBS`] (``pretrain-tiny``). After training, the quality gate measures
needle retrieval (the evaluation's NIAH grid, greedy exact match) inside the native window and at 4x and 8x
without any extension, and writes it into the model card and ``pretrain_log.json``. Training state is saved
every ``--save-every`` steps to ``OUTPUT_DIR.pretrain-state/``; the model folder is written at once at the end.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM

from . import factors
from .data.texts import load_texts
from .evaluation.niah import haystack_stream, niah_grid, score_niah
from .evaluation.perplexity import tokenize_documents
from .tiny.pretraining import (
    RecallRows,
    TinyModelSettings,
    cosine_lr,
    tiny_llama_config,
    train_tokenizer,
    weighted_lm_loss,
)
from .utils.arguments import OutputArguments, flag_name, require_fields
from .utils.atomic import atomic_path, write_json_atomically
from .utils.environment import versions
from .utils.run_folder import RunFolder


@dataclass
class PretrainConfig(OutputArguments, TinyModelSettings):
    """The tiny base and how it is pretrained (every field a flag of ``recipes/pretrain_tiny.py``)."""

    corpus: list[str] = field(
        default_factory=lambda: ["builtin:stdlib", "builtin:pydoc"], metadata={"help": "Text sources (corpus specs)"}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the weights, the tokenizer corpus order and every row"})
    max_steps: int = field(default=4000, metadata={"help": "Optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "Rows (of one window) per step"})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate"})
    warmup_steps: int = field(default=60, metadata={"help": "Linear warm-up steps, then cosine to 10%% of the peak"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    recall_fraction: float = field(
        default=0.8, metadata={"help": "Share of rows that are not plain text: repeats, snippets, needle samples"}
    )
    answer_weight: float = field(default=10.0, metadata={"help": "Loss weight of answer tokens in recall rows"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (fixed, for reproducible sums)"})
    save_every: int = field(default=250, metadata={"help": "Steps between training-state saves"})
    gate_needles: int = field(default=10, metadata={"help": "Needles per (length, depth) cell of the quality gate"})
    gate_scales: list[float] = field(
        default_factory=lambda: [0.75, 1.0, 4.0, 8.0], metadata={"help": "Quality-gate lengths as multiples of the window"}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from OUTPUT_DIR.pretrain-state"})

    def __post_init__(self) -> None:
        require_fields(self, "output_dir")
        for key in ("max_steps", "batch_size", "threads", "save_every", "gate_needles"):
            if getattr(self, key) < 1:
                raise ValueError(f"{flag_name(key)} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.recall_fraction <= 1.0:
            raise ValueError(f"--recall-fraction must be in [0, 1], got {self.recall_fraction}")


def quality_gate(
    model, tokenizer, texts: Sequence[str], window: int, needles: int, seed: int, scales: Sequence[float]
) -> dict:
    """NIAH accuracy per length (mean over 5 depths) at `scales` x `window`, original RoPE."""
    lengths = [round(s * window) for s in scales]
    docs = tokenize_documents(tokenizer, texts)
    stream = haystack_stream(docs, tokenizer("\n\n", add_special_tokens=False)["input_ids"], max(lengths), seed)
    depths = [0.0, 0.25, 0.5, 0.75, 1.0]
    grid = niah_grid(tokenizer, stream, lengths, depths, needles, seed=seed + 1)
    accuracy = score_niah(model, tokenizer, grid.values(), batch_size=10)
    return {
        "lengths": lengths,
        "depths": depths,
        "needles_per_cell": needles,
        "haystack": "builtin:pydoc",
        "accuracy": {str(n): sum(accuracy[(n, d)] for d in depths) / len(depths) for n in lengths},
        "cells": {f"{n}/{d}": accuracy[(n, d)] for n in lengths for d in depths},
    }


def card_text(args: PretrainConfig, log: dict, num_params: int) -> str:
    gate = log["quality_gate"]
    rows = "\n".join(f"| {int(n):,} | {n_over(n, args.window)} | {100 * a:.0f}% |" for n, a in gate["accuracy"].items())
    return f"""---
library_name: transformers
pipeline_tag: text-generation
license: apache-2.0
tags:
- tiny
- longrope2
- hf-longrope2
---

# hf-longrope2 tiny base

A {num_params / 1e6:.2f}M-parameter Llama with the original RoPE and a {args.window}-token window, pretrained by
`recipes/pretrain_tiny.py` (seed {args.seed}) on text every Python installation carries: the standard library's
sources and its pydoc documentation, plus synthetic rows that teach copying and recall: repeated pieces, key-to-value
snippets and the needle template of `hf_longrope2.data.needles` (random keys, 7-digit numbers). It exists so the LongRoPE2 pipeline (search,
midtraining, evaluation) can run, and show context extension working or failing, on a laptop CPU with no hub.
It is not a useful language model.

- architecture: {args.num_hidden_layers} layers, hidden {args.hidden_size}, MLP {args.intermediate_size}, {args.num_attention_heads} heads ({args.num_key_value_heads} KV heads), head_dim {args.hidden_size // args.num_attention_heads}, rope_theta {args.rope_theta:g}, tied embeddings
- RoPE geometry: {geometry(args)}
- tokenizer: byte-level BPE, {log['vocab_size']} tokens, trained on the same corpus, one token per digit
- training: {args.max_steps} steps x {args.batch_size} rows x {args.window} tokens = {log['tokens']:,} tokens, AdamW peak lr {args.learning_rate}, {int(100 * args.recall_fraction)}% of rows repeats / key-value snippets / needle samples, answer weight {args.answer_weight}
- wall time: {log['wall_time_s'] / 60:.1f} min, {log['device']}; final loss {log['final_loss']:.3f}
- note: the evaluation's default haystack (pydoc) is part of the pretraining text; the needles never are

## Quality gate (measured after training)

Needle-in-a-haystack exact-match accuracy, greedy decoding, {gate['needles_per_cell']} needles x {len(gate['depths'])} depths per
length, haystack `{gate['haystack']}`, original RoPE (no extension):

| context (tokens) | x window | accuracy |
|---|---|---|
{rows}

Required: >= 90% inside the window, near 0% at 4-8x (the problem context extension has to solve).

## Use

```python
from hf_longrope2.tiny.base import tiny_base_path
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(tiny_base_path())
```
"""


def geometry(args: PretrainConfig) -> str:
    """The critical-dimension arithmetic of the LongRoPE2 paper for this base (its card states it)."""
    head_dim = args.hidden_size // args.num_attention_heads
    half = head_dim // 2
    critical = factors.critical_dimension(head_dim, args.rope_theta, args.window)
    ten = factors.ten_period_dimension(head_dim, args.rope_theta, args.window)
    exact = half * math.log(args.window / (2 * math.pi)) / math.log(args.rope_theta)
    return (f"{half} rotary pairs; theoretical critical dimension d_tcd = ceil({half} * log_{args.rope_theta:g}"
            f"({args.window} / 2 pi)) = ceil({exact:.2f}) = {critical}, {100 * critical / half:.0f}% of the pairs "
            f"(SmolLM2-135M: 20 of 32, LLaMA3-8B: 35 of 64); 10-period bound d10_tcd = {ten}, so the d_rcd search "
            f"range is [{ten}, {critical}]")


def n_over(length: str, window: int) -> str:
    return f"{int(length) / window:g}x"


def run(config: PretrainConfig) -> dict:
    """Pretrain the tiny base as `config` says and write it to ``config.output_dir``; returns the quality gate's
    accuracy, the final loss and the training time (what the recipe prints)."""
    args, folder = config, RunFolder(config.output_dir, "pretrain")
    folder.begin(overwrite=args.overwrite, resume=args.resume)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    texts = [t for source in args.corpus for t in load_texts(source)]
    tokenizer = train_tokenizer(texts, args.vocab_size)
    eos = [tokenizer.eos_token_id]
    stream = [i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids + eos]
    rows = RecallRows(tokenizer, stream, args.window, args.seed, args.recall_fraction, args.answer_weight)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(tiny_llama_config(args, tokenizer))
    model.config._attn_implementation = "sdpa"
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate, betas=(0.9, 0.95),
    )
    step, losses, answer_losses, elapsed_before = 0, [], [], 0.0
    if args.resume:
        state = torch.load(folder.state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, losses, answer_losses = state["step"], state["losses"], state["answer_losses"]
        elapsed_before = state["elapsed"]
    model.train()
    bar = tqdm(total=args.max_steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)
    train_started = time.perf_counter()
    while step < args.max_steps:
        batch = [rows.row(step, i) for i in range(args.batch_size)]
        ids = torch.tensor([b[0] for b in batch])
        weights = torch.tensor([b[1] for b in batch])
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.max_steps, args.learning_rate, args.warmup_steps)
        loss, answer_nll = weighted_lm_loss(model(input_ids=ids, use_cache=False).logits, ids, weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        answer_losses.append(None if answer_nll is None else round(answer_nll, 4))
        step += 1
        bar.update(1)
        recent = [a for a in answer_losses[-20:] if a is not None]
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}",
                        answer=f"{sum(recent) / max(1, len(recent)):.3f}")
        if step % args.save_every == 0 and step < args.max_steps:
            folder.state_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder.state_file) as tmp:
                elapsed = elapsed_before + time.perf_counter() - train_started
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                            "losses": losses, "answer_losses": answer_losses, "elapsed": elapsed}, tmp)
    bar.close()
    train_time = elapsed_before + time.perf_counter() - train_started
    model.eval()
    with torch.no_grad():
        gate = quality_gate(model, tokenizer, load_texts("builtin:pydoc"), args.window, args.gate_needles, args.seed,
                            args.gate_scales)
    log = {
        "settings": asdict(args),
        "versions": versions(),
        "device": f"cpu ({torch.get_num_threads()} threads)",
        "vocab_size": len(tokenizer),
        "tokens": args.max_steps * args.batch_size * args.window,
        "corpus_tokens": len(stream),
        "train_time_s": round(train_time, 1),
        "wall_time_s": round(elapsed_before + time.perf_counter() - started, 1),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "losses": losses,
        "answer_losses": answer_losses,
        "quality_gate": gate,
    }
    num_params = sum(p.numel() for p in model.parameters())

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomically(tmp / "pretrain_log.json", log)
        (tmp / "README.md").write_text(card_text(args, log, num_params))

    folder.publish(write, overwrite=args.overwrite)
    return {"accuracy": gate["accuracy"], "final_loss": log["final_loss"], "train_time_s": log["train_time_s"]}


def pretrain(config: PretrainConfig) -> None:
    """``recipes/pretrain_tiny.py``: [`run`], then its summary as one JSON line."""
    print(json.dumps(run(config)))
