"""A Markdown report of a training run: FID / KID by epoch against the identity baseline.

    python -m cut_translation.report runs/cut/catdog-64

Reads the run folder's ``eval.jsonl``, ``summary.json`` and ``config.json`` and prints a table
(epoch 0 is the identity baseline: untranslated held-out A images against held-out B), the best
and last epochs, the wall-clock time and the newest sample grid, and draws ``fid.png`` (FID and
KID against the epoch, the identity baseline as a dashed line) in the run folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core_ssl.logger import read_jsonl
from core_ssl.plotting import pyplot, save_figure

__all__ = ["run_report", "plot_fid", "main"]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {path.parent} a finished cut_translation.train run folder?")
    return json.loads(path.read_text())


def _eval_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "eval.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a cut_translation.train run folder?")
    return read_jsonl(path)


def plot_fid(run_dir: str | Path) -> Path:
    """``run_dir/fid.png``: FID and KID of the held-out translations by epoch, each with the
    identity baseline (epoch 0) as a dashed line, so one sees at a glance whether and when the
    translations came closer to domain B than the untranslated inputs are."""
    run_dir = Path(run_dir)
    rows = _eval_rows(run_dir)
    baseline = next((r for r in rows if r["epoch"] == 0), None)
    trained = [r for r in rows if r["epoch"] > 0]
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label, scale in ((axes[0], "fid", "FID", 1.0), (axes[1], "kid", "KID (x 1000)", 1000.0)):
        if trained:
            ax.plot([r["epoch"] for r in trained], [scale * r[key] for r in trained], marker="o", label="translated A")
        if baseline is not None:
            ax.axhline(scale * baseline[key], color="grey", linestyle="--", label="identity baseline (untranslated A)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{label} against held-out B")
        ax.set_title(f"{label} (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, run_dir / "fid.png")


def run_report(run_dir: str | Path) -> str:
    """The Markdown report of the run in ``run_dir``."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    config = _read_json(run_dir / "config.json")
    rows = _eval_rows(run_dir)
    best_epoch = (summary.get("best") or {}).get("epoch")
    lines = [
        f"Run `{run_dir.name}`: {config['mode']} on `{config['data']}` at {config['size']} px, "
        f"{summary['epochs']} epochs ({summary['steps']} steps), "
        f"wall-clock {summary['wall_clock_seconds'] / 3600:.2f} h.",
        "",
        "| epoch | FID | KID (x 1000) | images |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        label = "0 (identity baseline)" if row["epoch"] == 0 else str(row["epoch"])
        if row["epoch"] == best_epoch:
            label += " (best)"
        lines.append(f"| {label} | {row['fid']:.1f} | {1000 * row['kid']:.1f} ± {1000 * row['kid_std']:.1f} "
                     f"| {row['images']} |")
    samples = sorted((run_dir / "samples").glob("epoch_*.png"))
    if samples:
        lines += ["", f"Newest sample grid (rows: A, G(A), B, G(B)): `{samples[-1].relative_to(run_dir.parent)}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__)
        return ""
    text = run_report(args[0])
    text += f"\n\nFID / KID by epoch: `{plot_fid(args[0])}`"
    print(text)
    return text


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
