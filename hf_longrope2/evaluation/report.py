"""Evaluation reports: ``report.json`` (every number), ``report.md`` (tables) and the PNGs, from finished cells.

```python
>>> from hf_longrope2.evaluation.report import write_report, summary_table
>>> write_report(report, "eval-out")          # report.json, report.md, niah_<model>.png, niah.png, ...
>>> print(summary_table(report))
```

``report.json`` keys: ``settings``, ``versions``, ``wall_time_s``, ``original_window`` (of the first model),
``files`` and ``models`` -> name -> ``path``, ``original_window``, ``max_position_embeddings``, ``rope_type``,
``niah`` ({length: {depth: accuracy}}), ``niah_mean`` ({length: accuracy}), ``perplexity`` ({length: {ppl,
ppl_last, tokens, documents}}), ``short`` ({length, ppl, ppl_last, tokens, documents, retention_pct}),
``ruler`` ({task: {length: score}}), ``ruler_mean`` ({length: score}), ``niah_by_template`` ({template:
{length: accuracy}}, every template, the first's equal to ``niah_mean``), ``retention`` ({source: the ``short``
fields}, the perplexity documents first, then each ``--retention-datasets`` source) and, when run,
``answer_nll`` ({template: {length: mean NLL per answer digit token}}) and ``lm_eval``. Lengths and depths are JSON
object keys, so strings.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

from ..plots import plot_metric_vs_length, plot_niah_heatmap, plot_tasks_vs_length
from ..utils.atomic import write_json_atomically, write_text_atomically
from ..utils.environment import __version__, versions
from .plan import niah_key, nll_key, short_key

REPORT_KEYS = ("settings", "versions", "wall_time_s", "original_window", "models", "files")
MODEL_KEYS = ("path", "original_window", "max_position_embeddings", "rope_type", "niah", "niah_mean", "perplexity",
              "short", "ruler", "ruler_mean", "niah_by_template", "retention")


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def assemble(args, plan, models: dict, cells: dict, wall_time_s: float) -> dict:
    """The report dict from per-model finished `cells` (see the module docstring for the layout)."""
    out_models = {}
    sources = [args.ppl_dataset or args.dataset, *plan.retention]
    base_short: dict[str, float] = {}
    for name, meta in models.items():
        done = cells[name]
        by_template: dict[str, dict[str, dict[str, float]]] = {}
        for template, grid in plan.niah.items():
            for length, depth in grid:
                by_template.setdefault(template, {}).setdefault(str(length), {})[str(float(depth))] = \
                    done[niah_key(length, depth, plan.key_template(template))]
        niah = by_template[plan.templates[0]]
        ruler: dict[str, dict[str, float]] = {}
        for task, length in plan.ruler:
            ruler.setdefault(task, {})[str(length)] = done[f"ruler/{task}/{length}"]
        ruler_lengths = sorted({length for _, length in plan.ruler})
        retention = {}
        for source, key in zip(sources, [short_key(None), *map(short_key, plan.retention)], strict=True):
            retention[source] = dict(done[key])
            base_short.setdefault(source, retention[source]["ppl"])
            retention[source]["retention_pct"] = 100.0 * base_short[source] / retention[source]["ppl"]
        short = retention[sources[0]]
        entry = {
            **meta,
            "niah": niah,
            "niah_mean": {length: _mean(row.values()) for length, row in niah.items()},
            "perplexity": {str(length): done[f"ppl/{length}"] for length in plan.ppl},
            "short": short,
            "ruler": ruler,
            "ruler_mean": {str(n): _mean(ruler[t][str(n)] for t in ruler) for n in ruler_lengths},
            "niah_by_template": {t: {n: _mean(row.values()) for n, row in grid.items()} for t, grid in by_template.items()},
            "retention": retention,
        }
        if plan.niah_nll:
            entry["answer_nll"] = {t: {str(n): done[nll_key(n, plan.key_template(t))] for n in plan.lengths}
                                   for t in plan.templates}
        if "lm_eval" in done:
            entry["lm_eval"] = done["lm_eval"]
        out_models[name] = entry
    settings = {k: v for k, v in asdict(args).items() if k not in ("overwrite", "resume")}
    settings["lengths"] = plan.lengths
    return {
        "settings": settings,
        "versions": {**versions(), "hf-longrope2": __version__},
        "wall_time_s": round(wall_time_s, 2),
        "original_window": plan.original_window,
        "models": out_models,
        "files": {},
    }


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.0f}%" if pct else f"{value:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _by_length(report: dict, section: str, value, pct: bool = False) -> str:
    lengths = sorted({n for m in report["models"].values() for n in m.get(section, {})}, key=int)
    rows = [[name] + [_fmt(value(m[section][n]) if n in m.get(section, {}) else None, pct) for n in lengths]
            for name, m in report["models"].items()]
    return _table(["model"] + [f"{int(n):,}" for n in lengths], rows)


def summary_table(report: dict) -> str:
    """Mean NIAH accuracy per length, short-window perplexity and retention, one row per model."""
    lengths = sorted({n for m in report["models"].values() for n in m["niah_mean"]}, key=int)
    more = [s for s in next(iter(report["models"].values())).get("retention", {})][1:]
    header = (["model"] + [f"NIAH@{int(n):,}" for n in lengths] + ["ppl@short", "retention"]
              + [f"retention {s}" for s in more])
    rows = []
    for name, m in report["models"].items():
        rows.append([name] + [_fmt(m["niah_mean"].get(n), pct=True) for n in lengths]
                    + [_fmt(m["short"]["ppl"]), f"{m['short']['retention_pct']:.1f}%"]
                    + [f"{m['retention'][s]['retention_pct']:.1f}%" for s in more])
    return _table(header, rows)


def report_markdown(report: dict) -> str:
    """``report.md``: summary, NIAH, perplexity, retention, RULER and lm-eval tables, the figures, settings."""
    s, files = report["settings"], report["files"]
    window = report["original_window"]
    parts = [
        "# Long-context evaluation",
        "",
        f"Original window (first model): {window:,} tokens. Haystack: `{s['dataset']}`; perplexity documents: "
        f"`{s.get('ppl_dataset') or s['dataset']}`. "
        f"{s['needles_per_cell']} needles per NIAH cell, depths {s['depths']}. Wall time {report['wall_time_s']:.1f} s.",
        "",
        "## Summary",
        "",
        summary_table(report),
        "",
        "## Needle in a haystack (exact-match accuracy, mean over depths)",
        "",
    ]
    templates = list(next(iter(report["models"].values())).get("niah_by_template", {}))
    for template in templates:
        sub = {"models": {n: {"t": m["niah_by_template"][template]} for n, m in report["models"].items()}}
        parts += [f"### template `{template}`", "", _by_length(sub, "t", lambda v: v, pct=True), ""]
    if any("answer_nll" in m for m in report["models"].values()):
        parts += ["## Answer NLL (mean per answer digit token, teacher-forced; lower is better)", "",
                  "Exact match is 0 or 1 per sample; the NLL shows how close a model comes when it misses.", ""]
        for template in templates:
            sub = {"models": {n: {"t": m.get("answer_nll", {}).get(template, {})} for n, m in report["models"].items()}}
            parts += [f"### template `{template}`", "", _by_length(sub, "t", lambda v: v), ""]
    parts += [f"![NIAH {name}]({f})" for name, f in files.get("niah_heatmaps", {}).items()]
    if "niah" in files:
        parts += ["", f"![NIAH accuracy vs length]({files['niah']})"]
    parts += [
        "",
        "## Perplexity vs length",
        "",
        "First L tokens of each document, NLL averaged over every position (`ppl`):",
        "",
        _by_length(report, "perplexity", lambda v: v["ppl"]),
        "",
        "Last quarter of positions only (`ppl_last`, the tokens with the most context):",
        "",
        _by_length(report, "perplexity", lambda v: v["ppl_last"]),
        "",
    ]
    if "perplexity" in files:
        parts += [f"![perplexity vs length]({files['perplexity']})", ""]
    first = next(iter(report["models"]))
    sources = list(report["models"][first].get("retention") or {"": None})
    short_rows = []
    for name, m in report["models"].items():
        for source in sources:
            r = m["retention"][source] if source else m["short"]
            short_rows.append([name, f"`{source}`" if source else "-", f"{r['length']:,}", _fmt(r["ppl"]),
                               f"{r['retention_pct']:.1f}%"])
    parts += [
        "## Short-window retention",
        "",
        f"Perplexity on {s['short_windows']} windows of the original length from each source; retention = 100 x "
        f"ppl({first}) / ppl(model) on the same windows.",
        "",
        _table(["model", "source", "window", "ppl", "retention"], short_rows),
        "",
    ]
    tasks = sorted({t for m in report["models"].values() for t in m.get("ruler", {})})
    if tasks:
        parts += ["## RULER-style synthetic tasks (fraction of answers found)", ""]
        for task in tasks:
            sub = {"models": {n: {"r": m["ruler"].get(task, {})} for n, m in report["models"].items()}}
            parts += [f"### {task}", "", _by_length(sub, "r", lambda v: v, pct=True), ""]
        parts += ["### mean over tasks", "", _by_length(report, "ruler_mean", lambda v: v, pct=True), ""]
        if "ruler" in files:
            parts += [f"![RULER tasks]({files['ruler']})", ""]
    with_lm_eval = {n: m["lm_eval"] for n, m in report["models"].items() if m.get("lm_eval")}
    if with_lm_eval:
        metrics = sorted({(t, k) for r in with_lm_eval.values() for t, ms in r.items() for k in ms
                          if not k.endswith("_stderr") and k != "sample_len"})
        rows = [[name] + [_fmt(r.get(t, {}).get(k)) for t, k in metrics] for name, r in with_lm_eval.items()]
        parts += ["## lm-eval", "", _table(["model"] + [f"{t} {k}" for t, k in metrics], rows), ""]
    parts += ["## Models", ""]
    parts += [
        f"- **{name}**: `{m['path']}`, rope `{m['rope_type']}`, window {m['original_window']:,} -> "
        f"{m['max_position_embeddings']:,}"
        for name, m in report["models"].items()
    ]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    parts += ["", "## Settings", "", "```", *(f"{k}: {v}" for k, v in s.items()), "```", "", f"Versions: {versions}", ""]
    return "\n".join(parts)


def write_report(report: dict, folder: str | Path) -> dict:
    """Write the PNGs, then ``report.json`` and ``report.md`` (listing them) into `folder`; returns ``files``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    window = report["original_window"]
    models = report["models"]
    files: dict = {"niah_heatmaps": {}}
    for name, m in models.items():
        path = f"niah_{_slug(name)}.png"
        plot_niah_heatmap(m["niah"], folder / path, title=f"NIAH: {name}", original_window=m["original_window"])
        files["niah_heatmaps"][name] = path
    plot_metric_vs_length({n: m["niah_mean"] for n, m in models.items()}, folder / "niah.png",
                          "exact-match accuracy", "Needle in a haystack (mean over depths)", original_window=window)
    files["niah"] = "niah.png"
    plot_metric_vs_length({n: {k: v["ppl"] for k, v in m["perplexity"].items()} for n, m in models.items()},
                          folder / "perplexity.png", "perplexity", "Perplexity vs length", log_y=True,
                          original_window=window)
    files["perplexity"] = "perplexity.png"
    tasks = sorted({t for m in models.values() for t in m["ruler"]})
    if tasks:
        plot_tasks_vs_length({t: {n: m["ruler"].get(t, {}) for n, m in models.items()} for t in tasks},
                             folder / "ruler.png", original_window=window)
        files["ruler"] = "ruler.png"
    report["files"] = files
    write_text_atomically(folder / "report.md", report_markdown(report))
    write_json_atomically(folder / "report.json", report)
    return files
