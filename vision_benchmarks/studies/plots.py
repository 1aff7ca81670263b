"""Plots of the methods' results table (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from core_ssl.plotting import pyplot, save_figure


def plot_results_bars(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Grouped bar chart of linear-probe and kNN top-1 per method (``rows``: dicts with
    ``label``, ``linear_top1``, ``knn_top1`` and, optionally, ``<key>_low`` / ``<key>_high``
    interval ends drawn as error bars)."""
    labels = [r["label"] for r in rows]
    positions = range(len(rows))
    fig, ax = pyplot().subplots(figsize=(max(6, 0.8 * len(rows) + 2), 4))
    width = 0.4
    for offset, key, name in ((-width / 2, "linear_top1", "linear probe"), (width / 2, "knn_top1", "kNN (k=200)")):
        values = [r[key] or 0 for r in rows]
        errors = [[v - (r.get(f"{key}_low") if r.get(f"{key}_low") is not None else v) for v, r in zip(values, rows)],
                  [(r.get(f"{key}_high") if r.get(f"{key}_high") is not None else v) - v for v, r in zip(values, rows)]]
        ax.bar([p + offset for p in positions], values, width, yerr=errors, capsize=3, label=name)
    ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(labels, rotation=35, ha="right")
    ax.set_ylabel("CIFAR-10 test top-1")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
