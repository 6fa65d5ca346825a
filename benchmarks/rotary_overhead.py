"""Cost of per-document window selection: longrope2 vs the stock rotary module, side by side in one run.

    python benchmarks/rotary_overhead.py            # writes benchmarks/results/rotary_overhead.json

Measures, on the CPU, (a) the rotary module alone and (b) a whole forward pass of a small Llama
(4 layers, hidden 256, 8 heads) at a sequence of 2048 tokens in a packed row of 4 documents, for the
original model and the same weights extended with longrope2. Repetitions are interleaved so drift in
machine load hits both sides equally; the median of each is reported. Ratios are longrope2 / stock.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import hf_longrope2
from hf_longrope2 import factors

if not __package__:  # run as `python benchmarks/rotary_overhead.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, envelope, write_results

SETTINGS = dict(
    hidden_size=256, num_layers=4, heads=8, seq=2048, docs=4, original=512, target=4096, repeats=15, threads=2
)


def _median_times(fns: dict, repeats: int) -> dict:
    for fn in fns.values():  # warm-up
        fn()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> dict:
    started = time.perf_counter()
    s = SETTINGS
    torch.set_num_threads(s["threads"])
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1024,
        hidden_size=s["hidden_size"],
        intermediate_size=4 * s["hidden_size"],
        num_hidden_layers=s["num_layers"],
        num_attention_heads=s["heads"],
        max_position_embeddings=s["original"],
    )
    config._attn_implementation = "sdpa"
    base = LlamaForCausalLM(config).eval()
    ext = LlamaForCausalLM(copy.deepcopy(config)).eval()  # extend() edits its model's config in place
    ext.load_state_dict(base.state_dict())
    head_dim = s["hidden_size"] // s["heads"]
    hf_longrope2.extend(
        ext,
        factors.yarn(head_dim, 1e4, s["target"] / s["original"], s["original"]),
        max_position_embeddings=s["target"],
    )
    doc = s["seq"] // s["docs"]
    position_ids = torch.arange(s["seq"]).remainder(doc)[None]  # 4 documents of 512 tokens each (short)
    position_ids[:, : 2 * doc] = torch.arange(2 * doc)  # first two merged: one long document of 1024
    ids = torch.randint(0, 1024, (1, s["seq"]))
    hidden = torch.zeros(1, s["seq"], s["hidden_size"])

    def forward(model):
        with torch.no_grad():
            model(input_ids=ids, position_ids=position_ids, use_cache=False)

    rotary = _median_times(
        {
            "stock": lambda: base.model.rotary_emb(hidden, position_ids),
            "longrope2": lambda: ext.model.rotary_emb(hidden, position_ids),
        },
        s["repeats"] * 10,
    )
    model = _median_times({"stock": lambda: forward(base), "longrope2": lambda: forward(ext)}, s["repeats"])
    result = {
        "description": "median seconds; ratio = longrope2 / stock (1.0 = no overhead)",
        "rotary_seconds": rotary,
        "rotary_ratio": rotary["longrope2"] / rotary["stock"],
        "forward_seconds": model,
        "forward_ratio": model["longrope2"] / model["stock"],
        "settings": s,
        **envelope(started, "rotary_overhead.py", [], torch_threads=s["threads"]),
    }
    write_results(RESULTS / "rotary_overhead.json", result)
    print(
        json.dumps(
            {k: result[k] for k in ("rotary_seconds", "rotary_ratio", "forward_seconds", "forward_ratio")}, indent=2
        )
    )
    return result


if __name__ == "__main__":
    main()
