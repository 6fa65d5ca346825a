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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    from .atomic import atomic_path

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
