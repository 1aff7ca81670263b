"""The table of :mod:`vision_benchmarks.semisup`: per arm and label fraction the mean test
top-1 over seeds with its 95% Student-t interval, and whether the paper's ordering holds.

The SimCLRv2 paper's ordering at 1% and 10% of the labels is supervised from scratch < SimCLR
fine-tuned < SimCLRv2 fine-tuned < SimCLRv2 distilled. The arms that play these roles here are
the scratch arm, the first fine-tuned run pre-trained with ``simclr``, the first with
``simclrv2``, and the first distilled ``simclrv2`` run; the check uses those present. It is
stated twice: by the means, and step by step by the paired 95% t interval of the per-seed
differences (every arm of a seed uses the same labelled images, so the seeds pair them):
``above`` when the interval lies above 0, ``below`` when under it, ``unresolved`` otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core_ssl.run import write_json
from core_ssl.stats import t_interval

PAPER_ROLES = ("supervised", "SimCLR", "SimCLRv2", "SimCLRv2 distilled")


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    if len(values) < 2:
        return None, None
    interval = t_interval(values)
    return interval.low, interval.high


def paper_chain(arms: Sequence[Any]) -> list[tuple[str, str]]:
    """(role, arm key) for the roles of :data:`PAPER_ROLES` that some arm plays, in order."""
    candidates = {"supervised": [a for a in arms if a.kind == "scratch"],
                  "SimCLR": [a for a in arms if a.kind == "finetune" and a.method == "simclr"],
                  "SimCLRv2": [a for a in arms if a.kind == "finetune" and a.method == "simclrv2"],
                  "SimCLRv2 distilled": [a for a in arms if a.kind == "distill" and a.method == "simclrv2"]}
    return [(role, candidates[role][0].key) for role in PAPER_ROLES if candidates[role]]


def ordering(records: list[dict[str, Any]], chain: list[tuple[str, str]], fraction: float) -> dict[str, Any]:
    """The paper's ordering at one fraction: by the means, and per consecutive step by the
    paired t interval of the per-seed differences (later arm minus earlier)."""
    top1 = {key: {r["seed"]: r["top1"] for r in records if r["arm"] == key and r["fraction"] == fraction}
            for _, key in chain}
    chain = [(role, key) for role, key in chain if top1[key]]
    means = [float(np.mean(list(top1[key].values()))) for _, key in chain]
    steps = []
    for (role_a, a), (role_b, b) in zip(chain, chain[1:]):
        seeds = sorted(set(top1[a]) & set(top1[b]))
        differences = np.array([top1[b][s] - top1[a][s] for s in seeds])
        low, high = _interval(differences)
        verdict = "unresolved" if low is None or low <= 0 <= high else ("above" if low > 0 else "below")
        steps.append({"lower": role_a, "higher": role_b, "mean_difference": float(differences.mean()),
                      "low": low, "high": high, "seeds": seeds, "verdict": verdict})
    return {"fraction": fraction, "roles": [role for role, _ in chain], "means": means,
            "holds_by_mean": len(chain) > 1 and all(x < y for x, y in zip(means, means[1:])),
            "steps": steps}


def summarize(records: list[dict[str, Any]], arms: Sequence[Any], fractions: Sequence[float],
              settings: dict[str, Any]) -> dict[str, Any]:
    """``{"settings", "rows", "ordering", "cells"}``: a row per (arm, fraction) with the mean
    top-1, its 95% t interval (None with one seed) and the per-seed values."""
    rows = []
    for arm in arms:
        for fraction in fractions:
            cells = sorted((r for r in records if r["arm"] == arm.key and r["fraction"] == fraction),
                           key=lambda r: r["seed"])
            if not cells:
                continue
            values = np.array([c["top1"] for c in cells], dtype=float)
            low, high = _interval(values)
            rows.append({"arm": arm.key, "kind": arm.kind, "method": arm.method, "fraction": fraction,
                         "top1": float(values.mean()), "low": low, "high": high, "seeds": [c["seed"] for c in cells],
                         "top1_seeds": values.tolist(), "labelled_images": cells[0]["labelled_images"],
                         "epochs": cells[0]["epochs"]})
    chain = paper_chain(arms)
    return {"settings": settings, "rows": rows, "ordering": [ordering(records, chain, f) for f in fractions],
            "cells": records}


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    if row["low"] is None:
        return f"{100 * row['top1']:.1f}"
    return f"{100 * row['top1']:.1f} [{100 * row['low']:.1f}, {100 * row['high']:.1f}]"


def _ordering_line(check: dict[str, Any]) -> str:
    names = " < ".join(check["roles"])
    if len(check["roles"]) < 2:
        return f"- {100 * check['fraction']:g}% of the labels: fewer than two of the paper's arms ran."
    verdicts = "; ".join(f"{s['higher']} - {s['lower']}: {100 * s['mean_difference']:+.1f} points, {s['verdict']}"
                         + ("" if s["low"] is None else f" [{100 * s['low']:+.1f}, {100 * s['high']:+.1f}]")
                         for s in check["steps"])
    holds = "holds" if check["holds_by_mean"] else "does not hold"
    return f"- {100 * check['fraction']:g}% of the labels: the ordering {names} {holds} by the means ({verdicts})."


def markdown(result: dict[str, Any]) -> str:
    """Top-1 (%) per arm and fraction, the per-seed values, and the ordering statement."""
    settings = result["settings"]
    fractions = settings["fractions"]
    rows = result["rows"]
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    lookup = {(r["arm"], r["fraction"]): r for r in rows}
    lines = [f"{settings['dataset']} test top-1 (%) with a class-balanced share of the labels; mean over seeds "
             f"{settings['seeds']} [95% t interval]. The labelled subsets are the index files in `labels/`. "
             "Every seed of a pre-trained arm starts from the same pre-trained network (one pre-training run "
             "per method), so the intervals cover the labelled subsets and the fine-tuning, not pre-training.",
             "",
             "| arm | " + " | ".join(f"{100 * f:g}% labels" for f in fractions) + " |",
             "| --- |" + " --- |" * len(fractions)]
    for arm in arms:
        lines.append(f"| {arm} | " + " | ".join(_cell(lookup.get((arm, f))) for f in fractions) + " |")
    lines += ["", "| arm | fraction | labelled images | epochs | per seed (%) |", "| --- | ---: | ---: | ---: | --- |"]
    for row in rows:
        lines.append(f"| {row['arm']} | {row['fraction']:g} | {row['labelled_images']} | {row['epochs']} | "
                     + ", ".join(f"{100 * v:.1f}" for v in row["top1_seeds"]) + " |")
    lines += ["", "The paper's ordering (supervised < SimCLR < SimCLRv2 < SimCLRv2 distilled) at this scale:"]
    lines += [_ordering_line(check) for check in result["ordering"]]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out: Path) -> None:
    """``results.json`` and ``results.md`` in ``out``; prints the table."""
    write_json(out / "results.json", result)
    table = markdown(result)
    (out / "results.md").write_text(table)
    print(table)
