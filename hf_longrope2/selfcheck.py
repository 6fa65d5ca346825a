"""``hf-longrope2 check``: measure that the longrope2 rope type behaves as specified, on every architecture.

For a tiny random model of each supported ``model_type`` (32-token native window, extended to 128):

1. short documents: max |logit difference| vs the unmodified model (must be exactly 0);
2. long documents: vs transformers' own ``longrope`` with the same long factors and attention factor;
3. a packed row [long, short, long] vs each document run alone;
4. greedy cached ``generate()`` across the window boundary vs a no-cache recompute (tokens and logits);
5. ``save_pretrained`` then reload in a fresh interpreter where ``hf_longrope2`` cannot be imported,
   with ``trust_remote_code=True`` (logits must be identical).

Prints a table, writes ``check.json`` to ``--output-dir`` when given, and exits non-zero on any failure.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .tiny.models import (
    MODEL_TYPES,
    ORIGINAL,
    VOCAB,
    extended_pair,
    greedy_generate,
    load_in_isolation,
    longrope_reference,
)
from .utils.atomic import write_json_atomically
from .utils.environment import __version__, transformers_bars_off

TOLERANCES = {"short": 0.0, "long_vs_longrope": 1e-5, "packed": 2e-5, "generate": 1e-4, "reload": 0.0}


@dataclass
class CheckConfig:
    """Which architectures to check (see the module docstring)."""

    model_types: list[str] = field(
        default_factory=lambda: list(MODEL_TYPES), metadata={"help": "Architectures to check"}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Write check.json here"})
    seed: int = field(default=0, metadata={"help": "Seed of the random tiny models and inputs"})

    def __post_init__(self) -> None:
        unknown = [m for m in self.model_types if m not in MODEL_TYPES]
        if unknown:
            raise ValueError(f"--model-types {unknown} not supported; choose from {MODEL_TYPES}")


def _logits(model, ids, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False, **kwargs).logits


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def check_architecture(model_type: str, workdir: Path, seed: int = 0) -> dict:
    """Measured differences for one architecture (see the module docstring)."""
    torch.manual_seed(seed)
    base, ext = extended_pair(model_type, seed)
    out: dict = {}
    short = torch.randint(3, VOCAB, (2, ORIGINAL))
    out["short"] = _diff(_logits(base, short), _logits(ext, short))
    long = torch.randint(3, VOCAB, (2, 3 * ORIGINAL))
    out["long_vs_longrope"] = _diff(_logits(ext, long), _logits(longrope_reference(model_type, ext), long))
    out["long_vs_unextended"] = _diff(_logits(ext, long), _logits(base, long))
    lengths = [ORIGINAL + 13, ORIGINAL - 7, 2 * ORIGINAL + 3]
    docs = [torch.randint(3, VOCAB, (1, n)) for n in lengths]
    packed = _logits(ext, torch.cat(docs, 1), position_ids=torch.cat([torch.arange(n) for n in lengths])[None])
    alone = torch.cat([_logits(ext, d) for d in docs], 1)
    out["packed"] = _diff(packed, alone)
    prompt = torch.randint(3, VOCAB, (1, ORIGINAL - 4))
    runs = [greedy_generate(ext, prompt, use_cache) for use_cache in (True, False)]
    out["generate_same_tokens"] = bool(torch.equal(runs[0][0], runs[1][0]))
    out["generate"] = _diff(runs[0][1], runs[1][1])
    folder = workdir / model_type
    ext.save_pretrained(folder)
    torch.save(long, workdir / f"{model_type}-ids.pt")
    out["_reference"] = _logits(ext, long)
    return out


def check_reloads(results: dict, workdir: Path) -> None:
    """Reload every saved folder in one fresh interpreter without hf_longrope2 and fill in ``reload`` and ``ok``."""
    jobs = [
        {
            "dir": str(workdir / m),
            "trust_remote_code": True,
            "inputs": str(workdir / f"{m}-ids.pt"),
            "output": str(workdir / f"{m}-out.pt"),
        }
        for m in results
    ]
    load_in_isolation(jobs, workdir)
    for model_type, out in results.items():
        reloaded = torch.load(workdir / f"{model_type}-out.pt")
        out["reload"] = _diff(reloaded["logits"], out.pop("_reference"))
        out["reload_class"] = reloaded["class"]
        out["ok"] = out["generate_same_tokens"] and all(out[k] <= tol for k, tol in TOLERANCES.items())


def run(config: CheckConfig) -> dict:
    """Check every architecture of `config`, print the table, write ``check.json`` when asked; returns the results
    (``results[model_type]["ok"]`` says whether it passed)."""
    args = config
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="hf-longrope2-check-") as tmp, transformers_bars_off():
        for model_type in tqdm(args.model_types, desc="checking architectures", unit="arch"):
            results[model_type] = check_architecture(model_type, Path(tmp), args.seed)
        check_reloads(results, Path(tmp))
    header = f"{'model_type':<12} {'short':>8} {'long-vs-longrope':>17} {'long-vs-base':>13} {'packed':>9} {'generate':>9} {'reload':>8}  ok"
    print(header)
    print("-" * len(header))
    for model_type, r in results.items():
        gen = f"{r['generate']:.1e}" + ("" if r["generate_same_tokens"] else "!")
        print(
            f"{model_type:<12} {r['short']:>8.1e} {r['long_vs_longrope']:>17.1e} {r['long_vs_unextended']:>13.2f} "
            f"{r['packed']:>9.1e} {gen:>9} {r['reload']:>8.1e}  {'yes' if r['ok'] else 'NO'}"
        )
    elapsed = time.perf_counter() - start
    failed = [m for m, r in results.items() if not r["ok"]]
    print(f"\nmax |logit difference| per check; tolerances {TOLERANCES}; {elapsed:.1f} s")
    print("all checks passed" if not failed else f"FAILED: {failed}")
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        report = {
            "version": __version__,
            "torch": torch.__version__,
            "tolerances": TOLERANCES,
            "seconds": elapsed,
            "results": results,
        }
        write_json_atomically(out / "check.json", report, indent=2)
    return results


def check(config: CheckConfig) -> int:
    """``hf-longrope2 check``: [`run`], with exit status 1 when any architecture failed a check."""
    results = run(config)
    return 0 if all(r["ok"] for r in results.values()) else 1
