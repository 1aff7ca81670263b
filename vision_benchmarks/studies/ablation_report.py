"""Tables and plots of :mod:`vision_benchmarks.ablate`: per setting the mean linear top-1 over
seeds with its 95% Student-t interval (:func:`core_ssl.stats.t_interval`, two seeds or more),
a Markdown table shaped like the paper's figure, and the figure itself:

- ``augmentations.png``: heat map of the linear top-1 (percent), rows = first transformation,
  columns = second, the diagonal a single transformation (SimCLR Figure 5); the table adds
  the row average, as the paper's last column;
- ``head.png``: linear top-1 against the projection output size for the linear and the MLP
  head, the no-head value as a horizontal line (Figure 8);
- ``batch.png``: bars of linear top-1 per training length, one bar per batch size (Figure 9).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core_ssl.claims import claims_markdown
from core_ssl.plotting import pyplot, save_figure
from core_ssl.run import write_json
from core_ssl.stats import t_interval

ABLATIONS = {
    "augmentations": "SimCLR Figure 5: linear top-1 for pairs of transformations making the views",
    "head": "SimCLR Figure 8: projection head none / linear / MLP across output sizes",
    "batch": "SimCLR Figure 9: batch size x training epochs",
}
_PER_SEED = ("seed", "linear_top1", "knn_top1", "l2", "steps", "epochs_trained", "train_minutes", "run")


def summarize(records: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """One row per cell in ``order``: its parameters, the seeds, and for the linear and kNN
    top-1 the mean, the per-seed values and the 95% t interval (``None`` with one seed)."""
    rows = []
    for key in order:
        cells = [r for r in records if r["cell"] == key]
        if not cells:
            continue
        row = {k: v for k, v in cells[0].items() if k not in _PER_SEED}
        row["seeds"] = [c["seed"] for c in cells]
        for metric in ("linear_top1", "knn_top1"):
            values = np.array([c[metric] for c in cells], dtype=float)
            interval = t_interval(values) if len(values) > 1 else None
            row.update({metric: float(values.mean()), f"{metric}_seeds": values.tolist(),
                        f"{metric}_low": None if interval is None else interval.low,
                        f"{metric}_high": None if interval is None else interval.high})
        row["epochs_trained"] = float(np.mean([c["epochs_trained"] for c in cells]))
        rows.append(row)
    return rows


def _percent(row: dict[str, Any] | None) -> str:
    return "" if row is None else f"{100 * row['linear_top1']:.1f}"


def _with_interval(row: dict[str, Any]) -> str:
    if row["linear_top1_low"] is None:
        return f"{100 * row['linear_top1']:.1f}"
    return f"{100 * row['linear_top1']:.1f} [{100 * row['linear_top1_low']:.1f}, {100 * row['linear_top1_high']:.1f}]"


def augmentation_matrix(rows: list[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
    """(transformations, M) with M[i, j] the mean linear top-1 of first = i, second = j (NaN if absent)."""
    names: list[str] = []
    for row in rows:
        for name in (row["first"], row["second"]):
            if name not in names:
                names.append(name)
    matrix = np.full((len(names), len(names)), np.nan)
    for row in rows:
        matrix[names.index(row["first"]), names.index(row["second"])] = row["linear_top1"]
    return names, matrix


def markdown(result: dict[str, Any]) -> str:
    """The figure as a table (top-1 in percent), then every cell with its interval and seeds."""
    rows, ablation = result["rows"], result["ablation"]
    seeds = result["settings"]["seeds"]
    settings = result["settings"]
    flags = " ".join(settings.get("pretrain_flags") or [])
    scaling = (f", learning rate scaled from batch 256 by {settings['lr_scaling']}"
               if ablation == "batch" and "lr_scaling" in settings else "")
    lines = [f"{ABLATIONS[ablation]}. SimCLR, `{settings.get('preset', 'cpu')}` preset"
             + (f", pre-training flags `{flags}`" if flags else "") + f", {result['budget']}{scaling}; "
             f"linear probe top-1 (%) on frozen features, mean over seeds {seeds}.", ""]
    if ablation == "augmentations":
        names, matrix = augmentation_matrix(rows)
        lines += ["| 1st \\ 2nd | " + " | ".join(names) + " | average |", "| --- |" + " ---: |" * (len(names) + 1)]
        for i, name in enumerate(names):
            cells = ["" if np.isnan(v) else f"{100 * v:.1f}" for v in matrix[i]]
            average = np.nanmean(matrix[i]) if not np.all(np.isnan(matrix[i])) else np.nan
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {'' if np.isnan(average) else f'{100 * average:.1f}'} |")
    elif ablation == "head":
        dims = sorted({r["dim"] for r in rows if r["dim"] is not None})
        lines += ["| head | " + " | ".join(f"d = {d}" for d in dims) + " |", "| --- |" + " ---: |" * len(dims)]
        for head in ("linear", "mlp"):
            by_dim = {r["dim"]: r for r in rows if r["head"] == head}
            if by_dim:
                lines.append(f"| {head} | " + " | ".join(_percent(by_dim.get(d)) for d in dims) + " |")
        lines += [line for r in rows if r["head"] == "none"
                  for line in ("", f"No head (the loss on the encoder's features): {_percent(r)}")]
    else:
        epochs = sorted({r["epochs"] for r in rows})
        lines += ["| batch \\ epochs | " + " | ".join(str(e) for e in epochs) + " |", "| --- |" + " ---: |" * len(epochs)]
        for batch in sorted({r["batch_size"] for r in rows}):
            by_epochs = {r["epochs"]: r for r in rows if r["batch_size"] == batch}
            lines.append(f"| {batch} | " + " | ".join(_percent(by_epochs.get(e)) for e in epochs) + " |")
    lines += ["", "| cell | linear top-1 (%) [95% t interval] | kNN top-1 (%) | per seed (linear, %) |",
              "| --- | --- | ---: | --- |"]
    for row in rows:
        per_seed = ", ".join(f"{100 * v:.1f}" for v in row["linear_top1_seeds"])
        lines.append(f"| {row['cell']} | {_with_interval(row)} | {100 * row['knn_top1']:.1f} | {per_seed} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path:
    """The ablation's figure (see the module docstring) as a PNG."""
    plt = pyplot()
    rows, ablation = result["rows"], result["ablation"]
    if ablation == "augmentations":
        names, matrix = augmentation_matrix(rows)
        fig, ax = plt.subplots(figsize=(max(5.0, 1.6 + 0.8 * len(names)), max(4.0, 1.2 + 0.75 * len(names))))
        image = ax.imshow(100 * matrix, cmap="viridis")
        for i in range(len(names)):
            for j in range(len(names)):
                if not np.isnan(matrix[i, j]):
                    ax.text(j, i, f"{100 * matrix[i, j]:.1f}", ha="center", va="center", color="white", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("2nd transformation")
        ax.set_ylabel("1st transformation")
        fig.colorbar(image, ax=ax, label="linear top-1 (%)")
    elif ablation == "head":
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for head in ("linear", "mlp"):
            points = sorted((r["dim"], r) for r in rows if r["head"] == head)
            if points:
                ax.errorbar([d for d, _ in points], [100 * r["linear_top1"] for _, r in points],
                            yerr=_half_widths([r for _, r in points]), marker="o", capsize=3, label=head)
        for row in rows:
            if row["head"] == "none":
                ax.axhline(100 * row["linear_top1"], color="grey", linestyle="--", label="none")
        dims = sorted({r["dim"] for r in rows if r["dim"] is not None})
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("projection output size")
        ax.set_ylabel("linear top-1 (%)")
        ax.legend()
    else:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        epochs = sorted({r["epochs"] for r in rows})
        batches = sorted({r["batch_size"] for r in rows})
        width = 0.8 / len(batches)
        for k, batch in enumerate(batches):
            chosen = [next((r for r in rows if r["batch_size"] == batch and r["epochs"] == e), None) for e in epochs]
            present = [(i, r) for i, r in enumerate(chosen) if r is not None]
            ax.bar([i + (k - (len(batches) - 1) / 2) * width for i, _ in present],
                   [100 * r["linear_top1"] for _, r in present], width, yerr=_half_widths([r for _, r in present]),
                   capsize=2, label=f"batch {batch}")
        ax.set_xticks(range(len(epochs)), [str(e) for e in epochs])
        ax.set_xlabel("training epochs")
        ax.set_ylabel("linear top-1 (%)")
        ax.legend(fontsize=7)
    ax.set_title(f"SimCLR, {ablation}\n{result['budget']}, seeds {result['settings']['seeds']}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _half_widths(rows: list[dict[str, Any]]) -> list[float] | None:
    """Error bars: half the 95% interval of each row (none when a row has one seed)."""
    if any(r["linear_top1_low"] is None for r in rows):
        return None
    return [100 * (r["linear_top1_high"] - r["linear_top1_low"]) / 2 for r in rows]


def claims_table(result: dict[str, Any]) -> str:
    """The judged claims of the result (none yet: a line saying what they need)."""
    title = (f"The paper's conclusions here (linear top-1, {result['budget']}; Welch's 95% interval of the "
             f"difference of seed means):")
    if not result.get("claims"):
        return title + "\n\nNone can be judged yet: each claim needs both its cells with two seeds or more.\n"
    return claims_markdown(result["claims"], title)


def write_report(result: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` (the table, then the claims), ``claims.md`` and
    ``<ablation>.png`` in ``out``; prints the table."""
    write_json(out / "results.json", result)
    claims = claims_table(result)
    (out / "claims.md").write_text(claims)
    table = markdown(result) + "\n" + claims
    (out / "results.md").write_text(table)
    plot(result, out / f"{result['ablation']}.png")
    print(table)
