"""A Markdown report of one or more training runs: every evaluation measure by epoch.

    python -m cut_translation.report runs/cut/catdog-64                      # one run
    python -m cut_translation.report runs/cut/cifar-cut runs/cut/cifar-fastcut runs/cut/cifar-gan-only

For each run folder it reads ``eval.jsonl``, ``summary.json`` and ``config.json`` and prints a
table by epoch (epoch 0 is the identity baseline: untranslated held-out A images): FID, its
paired gain over the identity, KID, the domain-B share and the content correlation, each with
its 95% interval, the other ends of the scales (real-B share, unrelated-image content), the
best and last epochs, the wall-clock time and the newest sample grid; and it draws
``metrics.png`` in the run folder (each measure against the epoch, intervals shaded, baselines
dashed). With several runs it adds a comparison table of their last evaluations, and when
run folders are named ``<arm>-s<seed>`` (``scripts/cut_compare.sh``) and an arm has two seeds or
more, a table over seeds: per arm the mean of the last evaluations and its 95% Student-t
interval over seeds (:func:`core_ssl.stats.t_interval`), so the spread between trainings, not
only between held-out images, enters the comparison; the paper's claims judged by Welch's
interval over seeds (:mod:`cut_translation.claims`); and ``arms.png`` beside the runs (or
``--plot``): each arm's mean curve over seeds with its 95% t band; and ``samples.png``: the same
held-out A images translated by each arm (one seed, each run's newest sample grid). Runs logged before the
intervals existed (``kid_std`` only) are shown with what they have.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core_ssl.cli import run_command
from core_ssl.config import build_parser, parse_config
from core_ssl.logger import read_jsonl
from core_ssl.plotting import pyplot, save_figure
from core_ssl.claims import claims_markdown
from core_ssl.stats import format_seed_summary, seed_summary
from cut_translation.claims import judge_arms
from cut_translation.intervals import EXCLUDES_MARK, EXCLUDES_NOTE, interval_text

__all__ = ["run_report", "compare_runs", "compare_arms", "compare_claims", "last_evaluations", "arm_curves",
           "plot_arms", "compare_samples", "plot_metrics", "main"]

# (key, column title, scale) of the measures in the table and the plot.
MEASURES = (
    ("fid", "FID", 1.0),
    ("fid_gain", "FID gain over identity", 1.0),
    ("kid", "KID x 1000", 1000.0),
    ("domain_share", "domain-B share", 1.0),
    ("content", "content (edge corr.)", 1.0),
)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {path.parent} a cut_translation.train run folder?")
    return json.loads(path.read_text())


def _eval_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "eval.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a cut_translation.train run folder?")
    return read_jsonl(path)


def _cell(row: dict, key: str, scale: float = 1.0, digits: int = 2) -> str:
    """``point [low, high]`` (or ``point ± std`` for old KID rows, or ``-`` when absent)."""
    if key not in row:
        return "-"
    point = scale * row[key]
    if f"{key}_low" in row:
        return interval_text(point, scale * row[f"{key}_low"], scale * row[f"{key}_high"], digits)
    if f"{key}_std" in row:
        return f"{point:.{digits}f} ± {scale * row[f'{key}_std']:.{digits}f}"
    return f"{point:.{digits}f}"


def _digits(key: str) -> int:
    return 1 if key in ("fid", "fid_gain", "kid") else 3


def plot_metrics(run_dir: str | Path) -> Path:
    """``run_dir/metrics.png``: each logged measure of the held-out translations by epoch, its
    interval shaded; the identity baseline (epoch 0) dashed, and for the domain-B share and the
    content the other end of the scale (real B images; unrelated images) dotted."""
    run_dir = Path(run_dir)
    rows = _eval_rows(run_dir)
    baseline = next((r for r in rows if r["epoch"] == 0), None)
    trained = [r for r in rows if r["epoch"] > 0]
    present = [m for m in MEASURES if any(m[0] in r for r in rows)]
    fig, axes = pyplot().subplots(1, len(present), figsize=(4.2 * len(present), 3.6), squeeze=False)
    for ax, (key, label, scale) in zip(axes[0], present):
        points = [r for r in trained if key in r]
        if points:
            epochs = [r["epoch"] for r in points]
            ax.plot(epochs, [scale * r[key] for r in points], marker="o", label="translated A")
            if all(f"{key}_low" in r for r in points):
                ax.fill_between(epochs, [scale * r[f"{key}_low"] for r in points],
                                [scale * r[f"{key}_high"] for r in points], alpha=0.25, label="95% interval")
        if baseline is not None and key in baseline:
            ax.axhline(scale * baseline[key], color="grey", linestyle="--", label="identity (untranslated A)")
        other = {"domain_share": ("domain_share_real_b", "real B images"),
                 "content": ("content_unrelated", "unrelated B image")}.get(key)
        if baseline is not None and other is not None and other[0] in baseline:
            ax.axhline(scale * baseline[other[0]], color="black", linestyle=":", label=other[1])
        if key == "fid_gain":
            ax.axhline(0.0, color="grey", linestyle="--", label="no gain")
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, run_dir / "metrics.png")


def _excludes_note(lines: list[str]) -> list[str]:
    """The footnote for table cells whose interval excludes its point (FID's basic interval)."""
    return ["", EXCLUDES_NOTE + "."] if any(EXCLUDES_MARK in line for line in lines) else []


def _header(keys: list[tuple[str, str, float]], first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(label for _, label, _ in keys) + " | images |",
            "| --- " * (len(keys) + 2) + "|"]


def run_report(run_dir: str | Path) -> str:
    """The Markdown report of the run in ``run_dir``."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json")
    rows = _eval_rows(run_dir)
    finished = (run_dir / "summary.json").is_file()
    summary = _read_json(run_dir / "summary.json") if finished else {}
    best_epoch = (summary.get("best") or {}).get("epoch")
    keys = [m for m in MEASURES if any(m[0] in r for r in rows)]
    lambda_nce = config.get("lambda_nce")
    length = (f"{summary['epochs']} epochs ({summary['steps']} steps), wall-clock "
              f"{summary['wall_clock_seconds'] / 3600:.2f} h" if finished else
              f"in progress (no summary.json yet), evaluated up to epoch {max(r['epoch'] for r in rows)}")
    lines = [
        f"Run `{run_dir.name}`: {config['mode']}{'' if lambda_nce is None else f' (lambda_NCE {lambda_nce:g})'} "
        f"on `{config['data']}` at {config['size']} px, {length}. Intervals: 95% bootstrap over the held-out images; "
        "FID's (and its gain's) is the basic interval, corrected for FID's small-sample bias, so it is one for the "
        "distributions' FID and can lie below the point (the biased FID of these n images).",
        "",
        *_header(keys, "epoch"),
    ]
    for row in rows:
        label = "0 (identity baseline)" if row["epoch"] == 0 else str(row["epoch"])
        if row["epoch"] == best_epoch:
            label += " (best FID)"
        cells = [_cell(row, key, scale, _digits(key)) for key, _, scale in keys]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {row.get('images', '-')} |")
    lines += _excludes_note(lines)
    baseline = next((r for r in rows if r["epoch"] == 0), {})
    ends = []
    if "domain_share_real_b" in baseline:
        ends.append(f"domain-B share of real held-out B images (ceiling) {_cell(baseline, 'domain_share_real_b', 1, 3)}"
                    f", classifier balanced accuracy {baseline['classifier_accuracy']:.3f}")
    if "content_unrelated" in baseline:
        ends.append(f"content of an unrelated B image (floor) {_cell(baseline, 'content_unrelated', 1, 3)}")
    if ends:
        lines += ["", "Other ends of the scales: " + "; ".join(ends) + "."]
    samples = sorted((run_dir / "samples").glob("epoch_*.png"))
    if samples:
        lines += ["", f"Newest sample grid (rows: A, G(A), B, G(B)): `{samples[-1].relative_to(run_dir.parent)}`"]
    return "\n".join(lines)


def compare_runs(run_dirs: list[str | Path]) -> str:
    """A Markdown table of the last evaluation of each run (same held-out images when the runs
    share data, size, hold-out and seed), with the identity baseline of the first run."""
    rows, names = [], []
    for run_dir in map(Path, run_dirs):
        config = _read_json(run_dir / "config.json")
        evaluations = _eval_rows(run_dir)
        if not rows:
            identity = next((r for r in evaluations if r["epoch"] == 0), None)
            if identity is not None:
                rows.append(identity)
                names.append("identity (untranslated A)")
        last = [r for r in evaluations if r["epoch"] > 0]
        if last:
            lambda_nce = config.get("lambda_nce")
            rows.append(last[-1])
            names.append(f"`{run_dir.name}` ({config['mode']}"
                         f"{'' if lambda_nce is None else f', lambda_NCE {lambda_nce:g}'}, epoch {last[-1]['epoch']})")
    keys = [m for m in MEASURES if any(m[0] in r for r in rows)]
    lines = _header(keys, "model")
    for name, row in zip(names, rows):
        cells = [_cell(row, key, scale, _digits(key)) for key, _, scale in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row.get('images', '-')} |")
    return "\n".join(lines + _excludes_note(lines))


SEEDED_RUN = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)$")


def group_by_arm(run_dirs: list[str | Path]) -> dict[str, list[Path]]:
    """Run folders named ``<arm>-s<seed>`` grouped by arm (others are left out), in the given order."""
    arms: dict[str, list[Path]] = {}
    for run_dir in map(Path, run_dirs):
        match = SEEDED_RUN.match(run_dir.name)
        if match:
            arms.setdefault(match["arm"], []).append(run_dir)
    return arms


def last_evaluations(run_dirs: list[str | Path], finished_only: bool = False
                     ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """For runs named ``<arm>-s<seed>``: the identity baseline per seed (the first epoch-0
    evaluation among the seed's runs, which share its held-out images) and, per arm, each
    run's last evaluation after training; ``finished_only`` leaves out runs still training
    (no ``summary.json``)."""
    lasts: dict[str, list[dict]] = {}
    identities: dict[str, dict] = {}
    for arm, runs in group_by_arm(run_dirs).items():
        for run_dir in runs:
            if finished_only and not (run_dir / "summary.json").is_file():
                continue
            evaluations = _eval_rows(run_dir)
            identity = next((r for r in evaluations if r["epoch"] == 0), None)
            if identity is not None:
                identities.setdefault(SEEDED_RUN.match(run_dir.name)["seed"], identity)
            trained = [r for r in evaluations if r["epoch"] > 0]
            if trained:
                lasts.setdefault(arm, []).append(trained[-1])
    return identities, lasts


def compare_claims(run_dirs: list[str | Path]) -> str:
    """The CUT paper's claims (:mod:`cut_translation.claims`) judged on the last evaluations
    of the finished runs, over seeds; empty when no claim has two seeds on both sides."""
    identities, lasts = last_evaluations(run_dirs, finished_only=True)
    judged = judge_arms({"identity": list(identities.values()), **lasts})
    if not judged:
        return ""
    return claims_markdown(judged, "The paper's claims (last evaluations of the finished runs, over seeds):", digits=3)


def compare_arms(run_dirs: list[str | Path]) -> str:
    """A Markdown table over seeds: per arm (runs named ``<arm>-s<seed>``), the number of seeds,
    the epoch of the last evaluations and, per measure, the mean over seeds of each run's last
    evaluation with its 95% Student-t interval (the bare mean for one seed), plus the identity
    baseline (epoch 0): the arms of one seed share its held-out images, so each seed's identity
    is the first of its runs' epoch-0 evaluations, and the row is over seeds like the others.
    Empty when no run is so named."""
    identities, lasts = last_evaluations(run_dirs)
    if not identities and not lasts:
        return ""
    rows = ([("identity (untranslated A)", list(identities.values()))] if identities else []) + list(lasts.items())
    keys = [m for m in MEASURES if any(m[0] in r for _, group in rows for r in group)]
    lines = [f"| arm | seeds | epoch | " + " | ".join(label for _, label, _ in keys) + " |",
             "| --- " * (len(keys) + 3) + "|"]
    for name, group in rows:
        epochs = sorted({r["epoch"] for r in group})
        cells = []
        for key, _, scale in keys:
            values = [scale * r[key] for r in group if key in r]
            cells.append(format_seed_summary(seed_summary(values), _digits(key)) if values else "-")
        lines.append(f"| {name} | {len(group)} | {', '.join(map(str, epochs))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def arm_curves(runs: list[Path], key: str, scale: float = 1.0) -> list[tuple[int, float, float | None, float | None]]:
    """``(epoch, mean, low, high)`` over the arm's seeds at every epoch > 0 that all its runs
    evaluated: the mean of ``scale * key`` and its 95% Student-t interval (None with one seed)."""
    by_epoch: dict[int, list[float]] = {}
    for run_dir in runs:
        for row in _eval_rows(run_dir):
            if row["epoch"] > 0 and key in row:
                by_epoch.setdefault(row["epoch"], []).append(scale * row[key])
    curve = []
    for epoch in sorted(by_epoch):
        if len(by_epoch[epoch]) < len(runs):
            continue  # a run still in progress: keep the curve over the same seeds
        summary = seed_summary(by_epoch[epoch])
        curve.append((epoch, summary["mean"], summary["low"], summary["high"]))
    return curve


def plot_arms(run_dirs: list[str | Path], path: str | Path) -> Path | None:
    """``path``: per measure, each arm's mean over seeds by epoch with its 95% t band (runs
    named ``<arm>-s<seed>``), the identity baseline (mean over the runs' epoch 0) dashed and,
    for the domain-B share, real B images dotted. None when no run is so named."""
    arms = group_by_arm(run_dirs)
    if not arms:
        return None
    rows = [r for runs in arms.values() for run_dir in runs for r in _eval_rows(run_dir)]
    identity = [r for r in rows if r["epoch"] == 0]
    present = [m for m in MEASURES if any(m[0] in r for r in rows if r["epoch"] > 0)]
    fig, axes = pyplot().subplots(1, len(present), figsize=(4.2 * len(present), 3.6), squeeze=False)
    for ax, (key, label, scale) in zip(axes[0], present):
        for arm, runs in arms.items():
            curve = arm_curves(runs, key, scale)
            if not curve:
                continue
            epochs = [c[0] for c in curve]
            line, = ax.plot(epochs, [c[1] for c in curve], marker="o", label=f"{arm} ({len(runs)} seeds)")
            if all(c[2] is not None for c in curve):
                ax.fill_between(epochs, [c[2] for c in curve], [c[3] for c in curve], color=line.get_color(), alpha=0.2)
        baseline = [scale * r[key] for r in identity if key in r]
        if baseline:
            ax.axhline(float(np.mean(baseline)), color="grey", linestyle="--", label="identity (untranslated A)")
        real_b = [scale * r["domain_share_real_b"] for r in identity if "domain_share_real_b" in r]
        if key == "domain_share" and real_b:
            ax.axhline(float(np.mean(real_b)), color="black", linestyle=":", label="real B images")
        if key == "fid_gain":
            ax.axhline(0.0, color="grey", linestyle="--")
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("mean over seeds, 95% t interval shaded", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _grid_rows(path: Path, size: int) -> list:
    """The four image rows (A, G(A), B, G(B)) of a sample grid written with 2-pixel padding."""
    from PIL import Image

    with Image.open(path) as grid:
        grid = grid.convert("RGB")
        rows = (grid.height - 2) // (size + 2)
        if grid.height != 2 + rows * (size + 2) or rows != 4:
            raise ValueError(f"{path} is not a 4-row sample grid of {size} px images")
        return [grid.crop((0, r * (size + 2), grid.width, (r + 1) * (size + 2) + 2)) for r in range(rows)]


def compare_samples(run_dirs: list[str | Path], path: str | Path, seed: int | None = None, scale: int = 2) -> Path | None:
    """``path``: the held-out A images of one seed (the smallest that every arm ran, or
    ``seed``) and, below them, each arm's translation of them (its newest sample grid), labelled
    and enlarged ``scale`` times. None when no run is named ``<arm>-s<seed>`` or has samples."""
    from PIL import Image, ImageDraw

    arms = group_by_arm(run_dirs)
    seeds_of = {arm: {int(SEEDED_RUN.match(r.name)["seed"]): r for r in runs} for arm, runs in arms.items()}
    common = set.intersection(*(set(s) for s in seeds_of.values())) if seeds_of else set()
    if not common or (seed is not None and seed not in common):
        return None
    seed = min(common) if seed is None else seed
    rows, labels = [], []
    for arm, runs in seeds_of.items():
        run = runs[seed]
        grids = sorted((run / "samples").glob("epoch_*.png"))
        if not grids:
            continue
        size = int(_read_json(run / "config.json")["size"])
        grid_rows = _grid_rows(grids[-1], size)
        if not rows:
            rows.append(grid_rows[0])
            labels.append("input A")
        rows.append(grid_rows[1])
        labels.append(f"{arm} ({grids[-1].stem.replace('_', ' ')})")
    if not rows:
        return None
    margin = 150
    width, height = rows[0].width, sum(r.height for r in rows)
    canvas = Image.new("RGB", (margin + width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for row, label in zip(rows, labels):
        canvas.paste(row, (margin, y))
        draw.text((4, y + row.height // 2 - 5), label, fill="black")
        y += row.height
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


@dataclass
class ReportConfig:
    """Reports of CUT runs: each run's evaluations, and with several runs their comparison."""

    runs: list[Path] = field(default_factory=list, metadata={
        "help": "run folders written by cut_translation.train", "positional": True, "nargs": "*", "metavar": "RUN"})
    plot: Path | None = field(default=None, metadata={
        "help": "curves over seeds per arm (runs named <arm>-s<seed>); None = arms.png beside the runs",
        "nonempty": True})


def main(argv: list[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_config(ReportConfig, argv, prog="python -m cut_translation.report")
    if not options.runs:  # no run: say what the command does
        build_parser(ReportConfig, prog="python -m cut_translation.report").print_help()
        return ""
    options.runs = [str(run) for run in options.runs]
    absent = [run for run in options.runs if not Path(run).exists()]
    if absent:
        raise FileNotFoundError(f"{absent[0]} does not exist: give the run folders written by cut_translation.train")
    args = [run for run in options.runs if Path(run).is_dir()]
    for path in sorted(set(options.runs) - set(args)):  # e.g. a shared feature cache caught by a glob
        print(f"note: skipping {path}: not a folder (runs are folders)", file=sys.stderr)
    if not args:
        raise FileNotFoundError(f"none of {options.runs} is a run folder: give the folders written by "
                                "cut_translation.train")
    parts = []
    for run_dir in args:
        parts.append(run_report(run_dir) + f"\n\nMeasures by epoch: `{plot_metrics(run_dir)}`")
    if len(args) > 1:
        parts.append("Last evaluation of each run:\n\n" + compare_runs(args))
        arms = group_by_arm(args)
        if any(len(runs) > 1 for runs in arms.values()):
            parts.append("Over seeds (mean of each run's last evaluation, 95% t interval over seeds):\n\n"
                         + compare_arms(args))
            claims = compare_claims(args)
            if claims:
                parts.append(claims)
            plot = plot_arms(args, options.plot or Path(args[0]).parent / "arms.png")
            parts.append(f"Curves over seeds: `{plot}`")
            samples = compare_samples(args, Path(plot).parent / "samples.png")
            if samples is not None:
                parts.append(f"The same held-out images translated by each arm: `{samples}`")
    text = "\n\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    run_command(main)
