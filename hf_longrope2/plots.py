"""PNG figures for search logs and evaluation reports (matplotlib, headless Agg backend).

```python
>>> from hf_longrope2.plots import plot_search_progress, plot_factor_curves
>>> plot_search_progress([41.2, 30.8, 29.9], "search_progress.png")
>>> plot_factor_curves({"longrope2": lf, "yarn": yarn}, "factors.png", critical_dim=20)
```

Every function writes the file atomically (temporary name, then rename) and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .utils.atomic import atomic_path


def _pyplot():
    # start-up: matplotlib takes about a second to import; only runs that draw a figure pay for it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): headless

    return plt


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return Path(path)


def plot_search_progress(best_scores: Sequence[float], path: str | Path, title: str = "LongRoPE2 search") -> Path:
    """Best score (lower is better) after the initial population (iteration 0) and each iteration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(len(best_scores)), best_scores, marker="o")
    ax.set_xlabel("iteration (0 = initial population)")
    ax.set_ylabel("best score (exp mean NLL)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_factor_curves(
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    critical_dim: int | None = None,
    theoretical_critical_dim: int | None = None,
    title: str = "Rescale factor per rotary pair",
) -> Path:
    """Factor vectors against the rotary pair index (log scale), with the critical dimensions marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, label=name, linewidth=2.2 if name == "longrope2" else 1.2)
    if critical_dim is not None:
        ax.axvline(critical_dim, color="k", linestyle="--", linewidth=1, label=f"searched d_rcd = {critical_dim}")
    if theoretical_critical_dim is not None:
        ax.axvline(theoretical_critical_dim, color="grey", linestyle=":", linewidth=1,
                   label=f"theoretical d_tcd = {theoretical_critical_dim}")
    ax.set_yscale("log")
    ax.set_xlabel("rotary pair i")
    ax.set_ylabel("factor lambda_i")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_niah_heatmap(
    grid: Mapping[str, Mapping[str, float]],
    path: str | Path,
    title: str = "Needle in a haystack",
    original_window: int | None = None,
) -> Path:
    """Accuracy heatmap: context length (columns) x needle depth (rows), each cell annotated in percent.

    Args:
        grid: ``{length: {depth: accuracy in 0..1}}`` with string keys, as in ``report.json``.
        original_window: Marks the lengths beyond the pre-training window with a line.
    """
    plt = _pyplot()
    lengths = sorted(grid, key=int)
    depths = sorted({d for row in grid.values() for d in row}, key=float)
    values = np.array([[grid[length].get(d, np.nan) for length in lengths] for d in depths], dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(lengths) + 2.2, 0.5 * len(depths) + 1.8))
    image = ax.imshow(values, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{100 * values[i, j]:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(lengths)), [f"{int(x):,}" for x in lengths], rotation=30)
    ax.set_yticks(range(len(depths)), [f"{100 * float(d):.0f}%" for d in depths])
    if original_window is not None:
        beyond = [j for j, x in enumerate(lengths) if int(x) > original_window]
        if beyond:
            ax.axvline(beyond[0] - 0.5, color="k", linewidth=1.5, linestyle="--")
    ax.set_xlabel("context length (tokens); dashed: beyond the original window")
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="exact-match accuracy")
    return _save(fig, path)


def plot_metric_vs_length(
    series: Mapping[str, Mapping[str, float]],
    path: str | Path,
    ylabel: str,
    title: str,
    log_y: bool = False,
    original_window: int | None = None,
) -> Path:
    """One line per model: ``{model: {length: value}}`` against context length (log2 x axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, points in series.items():
        xs = sorted(points, key=int)
        ax.plot([int(x) for x in xs], [points[x] for x in xs], marker="o", label=name)
    if original_window is not None:
        ax.axvline(original_window, color="grey", linestyle="--", linewidth=1, label="original window")
    ax.set_xscale("log", base=2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_tasks_vs_length(
    tasks: Mapping[str, Mapping[str, Mapping[str, float]]],
    path: str | Path,
    title: str = "RULER-style tasks",
    original_window: int | None = None,
) -> Path:
    """A panel per task, a line per model: ``{task: {model: {length: score}}}``."""
    plt = _pyplot()
    names = list(tasks)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], names, strict=True):
        for model, points in tasks[task].items():
            xs = sorted(points, key=int)
            ax.plot([int(x) for x in xs], [points[x] for x in xs], marker="o", label=model)
        if original_window is not None:
            ax.axvline(original_window, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("tokens")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("score (fraction of answers found)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
