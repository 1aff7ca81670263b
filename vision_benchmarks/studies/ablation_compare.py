"""Two runs of one ablation compared cell by cell (e.g. Figure 9's grid under two optimisers).

    python -m vision_benchmarks.studies.ablation_compare results/ablate_e2/batch results/ablate_e2/batch-lars \\
        --labels "AdamW, sqrt scaling" "LARS, linear scaling" --out results/ablate_e2/batch-lars/compare.md

Reads the ``results.json`` that :mod:`vision_benchmarks.ablate` wrote into each folder. For
every cell both have with two seeds or more: the mean linear top-1 of each, and Welch's 95%
interval of the difference of seed means, second minus first
(:func:`core_ssl.stats.difference_interval`), read as the claim "the second is better"
(:func:`core_ssl.stats.verdict`: holds, fails, or not resolved). Cells in one folder only are
listed as such.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core_ssl.stats import difference_interval, verdict


def seed_values(folder: Path, metric: str = "linear_top1") -> dict[str, list[float]]:
    """``{cell: [value per seed, in seed order]}`` from the folder's ``results.json``."""
    path = folder / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give a folder `python -m vision_benchmarks.ablate` wrote "
                                "(or rebuild its report with --report-only)")
    values: dict[str, list[tuple[int, float]]] = {}
    for record in json.loads(path.read_text())["cells"]:
        values.setdefault(record["cell"], []).append((record["seed"], float(record[metric])))
    return {cell: [v for _, v in sorted(pairs)] for cell, pairs in values.items()}


def compare(first: Path, second: Path, metric: str = "linear_top1") -> list[dict[str, Any]]:
    """One row per cell of either folder (the first's order, then the second's own cells)."""
    a, b = seed_values(first, metric), seed_values(second, metric)
    rows = []
    for cell in [*a, *(c for c in b if c not in a)]:
        row: dict[str, Any] = {"cell": cell, "first": a.get(cell), "second": b.get(cell)}
        if row["first"] and row["second"] and len(row["first"]) > 1 and len(row["second"]) > 1:
            interval = difference_interval(np.array(row["second"]), np.array(row["first"]))
            row.update(difference=interval.point, low=interval.low, high=interval.high, verdict=verdict(interval))
        rows.append(row)
    return rows


def _mean(values: list[float] | None) -> str:
    return "-" if not values else f"{100 * float(np.mean(values)):.1f} ({len(values)})"


def markdown(rows: list[dict[str, Any]], labels: Sequence[str]) -> str:
    first, second = labels
    lines = [f"Linear top-1 (%), mean over seeds (number of seeds); difference = {second} minus {first}, "
             "Welch's 95% interval; verdict of \"the second is better\".", "",
             f"| cell | {first} | {second} | difference [95%] | verdict |", "| --- | ---: | ---: | --- | --- |"]
    for row in rows:
        diff = ("-" if "difference" not in row else
                f"{100 * row['difference']:+.1f} [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]")
        lines.append(f"| {row['cell']} | {_mean(row['first'])} | {_mean(row['second'])} | {diff} | "
                     f"{row.get('verdict', 'needs two seeds in both')} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m vision_benchmarks.studies.ablation_compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="folder of the first ablation run (its results.json)")
    parser.add_argument("second", type=Path, help="folder of the second, compared against the first")
    parser.add_argument("--labels", nargs=2, default=None, metavar=("FIRST", "SECOND"),
                        help="names of the two in the table (default: the folder names)")
    parser.add_argument("--metric", choices=["linear_top1", "knn_top1"], default="linear_top1")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (default: print it)")
    args = parser.parse_args(argv)
    for folder in (args.first, args.second):
        if not (folder / "results.json").is_file():
            parser.error(f"{folder} holds no results.json: give a folder `python -m vision_benchmarks.ablate` wrote")
    rows = compare(args.first, args.second, args.metric)
    table = markdown(rows, args.labels or [args.first.name, args.second.name])
    if args.out is None:
        print(table, end="")
    else:
        args.out.write_text(table)
        print(args.out)
    return rows


if __name__ == "__main__":
    main()
