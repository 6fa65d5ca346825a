"""Write ``benchmarks/results/smollm2-135m-32k.json`` from the SmolLM2 8k -> 32k evaluation report (GPU run).

```bash
python benchmarks/smollm2_results.py --report smollm2-135m-32k-eval/report.json --device "1x H100 80GB"
```

Keys (issue 7): ``methods`` -> ``original``, ``yarn_midtrain``, ``ntk_midtrain``, ``longrope2`` -> ``niah``
({length: accuracy, mean over depths}) and ``ppl_short`` (perplexity at the 8k window), plus ``settings``,
``versions`` and ``device``; the numbers are copied from the report, nothing is computed here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/smollm2_results.py`: the repository root first, for `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import RESULTS, write_results

METHODS = ("original", "yarn_midtrain", "ntk_midtrain", "longrope2")
OUTPUT = RESULTS / "smollm2-135m-32k.json"


def results_from_report(report: dict, device: str) -> dict:
    missing = [m for m in METHODS if m not in report["models"]]
    if missing:
        raise ValueError(f"the report has no models named {missing}; it has {list(report['models'])}")
    methods = {
        name: {
            "niah": report["models"][name]["niah_mean"],
            "ppl_short": report["models"][name]["short"]["ppl"],
            "retention_pct": report["models"][name]["short"]["retention_pct"],
            "perplexity": {n: v["ppl"] for n, v in report["models"][name]["perplexity"].items()},
            "ruler_mean": report["models"][name].get("ruler_mean", {}),
        }
        for name in METHODS
    }
    return {"methods": methods, "settings": report["settings"], "versions": report["versions"], "device": device,
            "wall_time_s": report["wall_time_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", required=True, help="report.json of recipes/smollm2-135m-32k/evaluate.yaml")
    parser.add_argument("--device", required=True, help="What it ran on, e.g. '1x H100 80GB'")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    result = results_from_report(json.loads(Path(args.report).read_text()), args.device)
    write_results(args.output, result)
    print(json.dumps({m: v["niah"] for m, v in result["methods"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
