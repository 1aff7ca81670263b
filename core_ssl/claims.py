"""A paper's comparative claim ("X is better than Y on measure M") judged on per-seed results.

The claim is read off Welch's 95% interval of the difference of the two groups' means
(:func:`core_ssl.stats.difference_interval`), oriented so that a positive difference is the
claimed direction (``better - worse``, or ``worse - better`` for a measure where lower is
better, such as FID): **holds** when the whole interval is above 0, **fails** when it is below
(the other one is better here), **not resolved** when it contains 0 (the seeds cannot tell them
apart). Used by the vision table and the CUT report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core_ssl.stats import difference_interval, verdict

__all__ = ["Claim", "judge_claim", "claims_markdown"]


@dataclass(frozen=True)
class Claim:
    """``better`` scores better than ``worse`` on ``measure`` (lower is better when
    ``lower_is_better``), as ``source`` reports."""

    better: str
    worse: str
    source: str
    measure: str | None = None
    lower_is_better: bool = False


def judge_claim(claim: Claim, better: Sequence[float], worse: Sequence[float], measure: str | None = None,
                better_label: str | None = None, worse_label: str | None = None) -> dict:
    """The record of one claim from the per-seed values of its two groups (two or more each):
    both means, the oriented difference with its Welch interval, and the verdict."""
    better, worse = np.asarray(better, dtype=np.float64), np.asarray(worse, dtype=np.float64)
    sign = -1.0 if claim.lower_is_better else 1.0
    difference = difference_interval(sign * better, sign * worse)
    return {"better": claim.better, "worse": claim.worse, "source": claim.source,
            "measure": measure or claim.measure, "lower_is_better": claim.lower_is_better,
            "better_label": better_label or claim.better, "worse_label": worse_label or claim.worse,
            "better_mean": float(better.mean()), "worse_mean": float(worse.mean()),
            "seeds": [len(better), len(worse)], "difference": difference.as_dict(), "verdict": verdict(difference)}


def claims_markdown(records: Sequence[dict], title: str, digits: int = 4) -> str:
    """A markdown table of :func:`judge_claim` records under ``title``; the difference column
    is oriented as the claim (positive = in the claimed direction)."""
    lines = [title, "", "| claim | measure | source | means | difference in the claimed direction "
             "[95% Welch interval] | here |", "| --- | --- | --- | --- | --- | --- |"]
    for r in records:
        d = r["difference"]
        measure = f"{r['measure']} ({'lower' if r['lower_is_better'] else 'higher'} is better)"
        lines.append(f"| {r['better_label']} > {r['worse_label']} | {measure} | {r['source']} | "
                     f"{r['better_mean']:.{digits}f} vs {r['worse_mean']:.{digits}f} | "
                     f"{d['point']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}] | "
                     f"**{r['verdict']}** |")
    return "\n".join(lines) + "\n"
