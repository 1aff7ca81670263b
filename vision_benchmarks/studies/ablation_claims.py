"""SimCLR's ablation conclusions (Chen et al. 2020, Section 3-5), judged on an ablation's cells.

Each conclusion becomes claims "cell X scores higher than cell Y" on the linear top-1, judged by
Welch's 95% interval of the difference of their seed means (:func:`core_ssl.claims.judge_claim`):
**holds** when the interval is above 0, **fails** when below, **not resolved** when it contains 0.
Only claims whose cells were run, with two seeds or more each, are judged.

- ``augmentations`` (Figure 5, "no single transformation suffices; crop + colour stands out"):
  crop+color > crop, crop+color > color (the composition beats each of its parts), and
  crop+color > crop+blur (colour, not just any second transformation, is what crop needs).
- ``head`` (Figure 8, "a non-linear projection is better than a linear one (+3%), and much better
  than none (>10%)"): at every output size d, mlp-d > linear-d, linear-d > none and mlp-d > none.
- ``batch`` (Figure 9, "bigger batches help, most when training is short; longer training
  helps"): at the shortest training, the largest batch > the smallest; for every batch size, the
  longest training > the shortest; and the interaction, the largest-minus-smallest batch gap at
  the shortest training > the same gap at the longest, by :func:`core_ssl.stats.contrast_interval`
  with weights (1, -1, -1, 1).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from core_ssl.claims import Claim, judge_claim
from core_ssl.stats import contrast_interval, verdict

__all__ = ["ablation_claims", "judge_ablation"]

FIGURE5 = "Figure 5: composing crop and colour"
FIGURE8 = "Figure 8: non-linear > linear (+3%) > none (>10%)"
FIGURE9 = "Figure 9: larger batches and longer training help"
METRIC = "linear_top1"


def _seeds(records: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """cell key -> its per-seed linear top-1, in seed order."""
    by_cell: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        by_cell.setdefault(record["cell"], []).append((record["seed"], record[METRIC]))
    return {key: [value for _, value in sorted(values)] for key, values in by_cell.items()}


def _grid(records: Sequence[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """The batch ablation's batch sizes and training lengths present in ``records``, sorted."""
    return sorted({r["batch_size"] for r in records}), sorted({r["epochs"] for r in records})


def ablation_claims(ablation: str, records: Sequence[dict[str, Any]]) -> list[Claim]:
    """The pairwise claims of the ablation over the cells present in ``records``."""
    present = {r["cell"] for r in records}
    if ablation == "augmentations":
        claims = [Claim("crop+color", "crop", FIGURE5), Claim("crop+color", "color", FIGURE5),
                  Claim("crop+color", "crop+blur", FIGURE5)]
    elif ablation == "head":
        dims = sorted({r["dim"] for r in records if r.get("dim") is not None})
        claims = [claim for d in dims for claim in (Claim(f"mlp-{d}", f"linear-{d}", FIGURE8),
                                                    Claim(f"linear-{d}", "none", FIGURE8),
                                                    Claim(f"mlp-{d}", "none", FIGURE8))]
    elif ablation == "batch":
        batches, epochs = _grid(records)
        claims = []
        if len(batches) > 1:
            claims.append(Claim(f"b{batches[-1]}-e{epochs[0]}", f"b{batches[0]}-e{epochs[0]}", FIGURE9))
        if len(epochs) > 1:
            claims += [Claim(f"b{b}-e{epochs[-1]}", f"b{b}-e{epochs[0]}", FIGURE9) for b in batches]
    else:
        raise ValueError(f"unknown ablation {ablation!r}")
    return [c for c in claims if c.better in present and c.worse in present]


def _gap_shrinks(records: Sequence[dict[str, Any]], seeds: dict[str, list[float]]) -> dict[str, Any] | None:
    """The batch-size gap at the shortest training exceeds the gap at the longest (Figure 9)."""
    batches, epochs = _grid(records)
    if len(batches) < 2 or len(epochs) < 2:
        return None
    large, small = batches[-1], batches[0]
    short, long = epochs[0], epochs[-1]
    keys = [f"b{large}-e{short}", f"b{small}-e{short}", f"b{large}-e{long}", f"b{small}-e{long}"]
    if any(len(seeds.get(k, [])) < 2 for k in keys):
        return None
    groups = [seeds[k] for k in keys]
    interaction = contrast_interval(groups, [1.0, -1.0, -1.0, 1.0])
    means = [float(np.mean(g)) for g in groups]
    gap = [means[0] - means[1], means[2] - means[3]]
    return {"better": f"gap-e{short}", "worse": f"gap-e{long}", "source": "Figure 9: the batch gap shrinks with training",
            "measure": f"{METRIC} of batch {large} - batch {small}", "lower_is_better": False,
            "better_label": f"gap at {short} epochs", "worse_label": f"gap at {long} epochs",
            "better_mean": gap[0], "worse_mean": gap[1], "seeds": [len(g) for g in groups],
            "difference": interaction.as_dict(), "verdict": verdict(interaction)}


def judge_ablation(ablation: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The judged records (as :func:`core_ssl.claims.judge_claim` gives them) of every claim of
    the ablation whose cells have two seeds or more; the batch interaction last."""
    seeds = _seeds(records)
    judged = [judge_claim(c, seeds[c.better], seeds[c.worse], measure=METRIC)
              for c in ablation_claims(ablation, records)
              if len(seeds[c.better]) >= 2 and len(seeds[c.worse]) >= 2]
    if ablation == "batch":
        interaction = _gap_shrinks(records, seeds)
        if interaction is not None:
            judged.append(interaction)
    return judged
