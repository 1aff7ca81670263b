"""Uncertainty of results: bootstrap confidence intervals and robust aggregates.

Every comparison in the toolkit's reports (seeds of an RL agent, seeds of a vision method,
held-out images of a translator) is summarised by a point estimate and a 95% percentile
bootstrap interval from these functions.

* :func:`iqm`: the interquartile mean, ``scipy.stats.trim_mean(x, 0.25)`` over all values: the
  mean of the middle 50% (Agarwal et al. 2021, "Deep RL at the edge of the statistical
  precipice"); robust to one outlying seed, less noisy than the median.
* :func:`bootstrap_interval`: percentile bootstrap of any statistic of one sample.
  Draw ``reps`` resamples of size n with replacement, compute the statistic on each, report
  the (alpha/2, 1 - alpha/2) quantiles of the replicates.
* :func:`stratified_bootstrap_interval`: the interval of ``rliable.library.get_interval_estimates``
  (default ``method='percentile'``, ``task_bootstrap=False``) for a (runs x tasks) score matrix:
  every replicate resamples the runs *within each task* (column) independently, with
  replacement, and applies the aggregate to the resampled matrix. With one task this is the
  plain percentile bootstrap over runs.
* :func:`probability_of_improvement`: ``P(X > Y) + P(X = Y) / 2`` over every pair of a run of
  X and a run of Y, the Mann-Whitney U statistic over ``n m`` (rliable's
  ``probability_of_improvement`` for one task); its interval resamples the runs of X and of Y
  independently, as rliable's stratified bootstrap does for the pair of score matrices.
* :func:`performance_profile`: rliable's score distribution, the fraction of all runs of all tasks
  whose score exceeds each threshold tau, ``F(tau) = (1 / (n K)) sum_k sum_i [x_ik > tau]``, with a
  stratified percentile bootstrap band (runs resampled within each task).
* :func:`difference_interval`: Welch's t interval of ``mean(x) - mean(y)`` for two independent
  groups of seeds, ``d +- t_{nu, 1-alpha/2} sqrt(s_x^2/n_x + s_y^2/n_y)`` with the
  Welch-Satterthwaite ``nu``; :func:`verdict` reads a claim "x beats y" off it.
  :func:`contrast_interval` is the same for any weighted sum of group means (an interaction
  such as "the gap between two settings shrinks with training").

All functions are vectorised over the replicates (no Python loop over resamples), seeded, and
take numpy arrays; they never modify their input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["Interval", "iqm", "bootstrap_interval", "stratified_bootstrap_interval", "performance_profile",
           "t_interval", "seed_summary",
           "format_seed_summary", "contrast_interval", "difference_interval", "verdict", "probability_of_improvement",
           "probability_of_improvement_interval"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval ``[low, high]``."""

    point: float
    low: float
    high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.point:.4g} [{self.low:.4g}, {self.high:.4g}]"

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}point": self.point, f"{prefix}low": self.low, f"{prefix}high": self.high}


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the values between the 25th and 75th percentiles.

    Exactly ``scipy.stats.trim_mean(scores, 0.25, axis)``: sort, cut ``floor(0.25 n)`` values
    at each end, average the rest. ``axis=None`` pools every value (as ``rliable``'s
    ``aggregate_iqm``).
    """
    x = np.asarray(scores, dtype=np.float64)
    if axis is None:
        x, axis = x.reshape(-1), 0
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("iqm of an empty array")
    cut = int(0.25 * n)
    return np.sort(x, axis=-1)[..., cut:n - cut].mean(axis=-1)


def _check_confidence(confidence: float, reps: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_interval(sample: np.ndarray, statistic: Callable[..., np.ndarray] = np.mean, reps: int = 10_000,
                       confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the first axis of ``sample``.

    ``statistic(x, axis=1)`` must reduce a stack of resamples (reps, n, ...) along axis 1 (as
    ``np.mean``, ``np.median`` and :func:`iqm` do); the point estimate is the statistic of the
    sample itself. Rows are resampled whole, so a (n, d) sample of paired values stays paired.
    """
    _check_confidence(confidence, reps)
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("bootstrap_interval needs a non-empty sample")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=(reps, len(x)))
    replicates = np.asarray(statistic(x[index], axis=1), dtype=np.float64)
    point = float(np.asarray(statistic(x[None], axis=1)).reshape(-1)[0])
    low, high = _percentiles(replicates.reshape(reps, -1)[:, 0], confidence)
    return Interval(point, low, high, confidence)


def _stratified_resamples(scores: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, resampled)``: the (runs, tasks) matrix (a 1-d input is one task) and ``reps`` copies of it
    whose runs are drawn with replacement within each task column independently, (reps, runs, tasks)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"scores must be (runs, tasks) with at least one run, got shape {x.shape}")
    runs, tasks = x.shape
    index = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    return x, np.take_along_axis(np.broadcast_to(x, (reps, runs, tasks)), index, axis=1)


def stratified_bootstrap_interval(scores: np.ndarray, aggregate: Callable[[np.ndarray], float] = iqm,
                                  reps: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """``rliable``'s stratified percentile bootstrap for a (runs, tasks) score matrix.

    Each replicate draws, for every task column independently, ``runs`` row indices with
    replacement, and evaluates ``aggregate`` (a function of a (runs, tasks) matrix, e.g.
    :func:`iqm` or ``np.mean``) on the resampled matrix. A 1-d input is one task.
    """
    _check_confidence(confidence, reps)
    x, resampled = _stratified_resamples(scores, reps, seed)
    replicates = np.array([aggregate(m) for m in resampled]) if aggregate not in (iqm, np.mean) \
        else _vectorised(aggregate, resampled)
    low, high = _percentiles(replicates, confidence)
    return Interval(float(aggregate(x)), low, high, confidence)


def _vectorised(aggregate: Callable, resampled: np.ndarray) -> np.ndarray:
    flat = resampled.reshape(len(resampled), -1)
    return iqm(flat, axis=1) if aggregate is iqm else flat.mean(axis=1)


def performance_profile(scores: np.ndarray, taus: np.ndarray, reps: int = 2_000, confidence: float = 0.95,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rliable's performance profile of a (runs, tasks) score matrix (a 1-d input is one task).

    Returns ``(profile, low, high)``, each of ``len(taus)``: ``profile[j]`` is the fraction of all
    scores above ``taus[j]``, ``mean_{i,k} [x_ik > tau_j]``, and ``[low, high]`` its stratified
    percentile bootstrap band (every replicate resamples the runs within each task column).
    """
    _check_confidence(confidence, reps)
    x, resampled = _stratified_resamples(scores, reps, seed)
    t = np.asarray(taus, dtype=np.float64).reshape(-1)
    above = (resampled.reshape(reps, -1)[:, :, None] > t).mean(axis=1)  # (reps, taus)
    alpha = 1.0 - confidence
    low, high = np.quantile(above, [alpha / 2, 1 - alpha / 2], axis=0)
    return (x.reshape(-1)[:, None] > t).mean(axis=0), low, high


def t_interval(sample: np.ndarray, confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean: ``mean +- t_{n-1, 1-alpha/2} * s / sqrt(n)``."""
    from scipy import stats

    x = np.asarray(sample, dtype=np.float64).reshape(-1)
    if len(x) < 2:
        raise ValueError("a t interval needs at least two values")
    mean = float(x.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, confidence)


def seed_summary(values, confidence: float = 0.95) -> dict:
    """A result over seeds for a report: ``{"mean", "low", "high", "seeds"}``, the ends the
    :func:`t_interval` of the values (None with a single value, which has no interval)."""
    seeds = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    interval = t_interval(seeds, confidence) if len(seeds) > 1 else None
    return {"mean": float(np.mean(seeds)), "low": None if interval is None else interval.low,
            "high": None if interval is None else interval.high, "seeds": seeds}


def format_seed_summary(summary: dict, digits: int = 4) -> str:
    """``mean [low, high]`` of a :func:`seed_summary` (the bare mean when it has no interval)."""
    if summary["low"] is None:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} [{summary['low']:.{digits}f}, {summary['high']:.{digits}f}]"


def contrast_interval(groups: Sequence[np.ndarray], weights: Sequence[float], confidence: float = 0.95) -> Interval:
    """Welch's interval of the contrast ``sum_i w_i mean(g_i)`` of independent groups with
    unequal variances: ``c +- t_{nu, 1-alpha/2} * se`` with ``se^2 = sum_i w_i^2 s_i^2 / n_i`` and
    the Welch-Satterthwaite ``nu = se^4 / sum_i (w_i^2 s_i^2 / n_i)^2 / (n_i - 1)``. With weights
    (1, -1) it is :func:`difference_interval`; with (1, -1, -1, 1) on (a, b, c, d) it is the
    interaction ``(a - b) - (c - d)``, e.g. whether a gap shrinks. When no group has spread the
    interval is the point."""
    from scipy import stats

    if len(groups) != len(weights) or not groups:
        raise ValueError(f"a contrast needs one weight per group (got {len(groups)} groups, {len(weights)} weights)")
    samples = [np.asarray(g, dtype=np.float64).reshape(-1) for g in groups]
    sizes = [len(g) for g in samples]
    if min(sizes) < 2:
        raise ValueError(f"a contrast interval needs at least two values per group (got {sizes}): run more seeds")
    point = float(sum(w * g.mean() for w, g in zip(weights, samples)))
    parts = np.array([w**2 * g.var(ddof=1) / len(g) for w, g in zip(weights, samples)])
    se2 = float(parts.sum())
    if se2 == 0:
        return Interval(point, point, point, confidence)
    nu = se2**2 / float(sum(part**2 / (n - 1) for part, n in zip(parts, sizes)))
    half = float(stats.t.ppf(0.5 + confidence / 2, nu) * np.sqrt(se2))
    return Interval(point, point - half, point + half, confidence)


def difference_interval(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> Interval:
    """Welch's interval of ``mean(x) - mean(y)`` (independent groups, unequal variances):
    ``d +- t_{nu, 1-alpha/2} * se`` with ``se^2 = s_x^2 / n_x + s_y^2 / n_y`` and
    ``nu = se^4 / ((s_x^2/n_x)^2 / (n_x - 1) + (s_y^2/n_y)^2 / (n_y - 1))``, as
    ``scipy.stats.ttest_ind(x, y, equal_var=False).confidence_interval()``: the contrast (1, -1)
    of :func:`contrast_interval`. When both groups have no spread the interval is the point."""
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y))
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"a difference interval needs at least two values per group (got {len(x)} and {len(y)}): "
                         "run more seeds")
    return contrast_interval([x, y], [1.0, -1.0], confidence)


def verdict(difference: Interval) -> str:
    """The reading of a claim "x > y" from the interval of ``x - y``: ``"holds"`` when the
    whole interval is above 0, ``"fails"`` when it is below (y is better), ``"not resolved"``
    when it contains 0 (the runs cannot tell them apart)."""
    if difference.low > 0:
        return "holds"
    if difference.high < 0:
        return "fails"
    return "not resolved"


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """``P(X > Y) + P(X = Y) / 2`` over all pairs (x_i, y_j): the Mann-Whitney U statistic of x
    against y divided by ``len(x) * len(y)``. 0.5: neither is better; 1: every run of X beats
    every run of Y."""
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y))
    if len(x) == 0 or len(y) == 0:
        raise ValueError("probability of improvement needs at least one run of each")
    return float(_pairwise_wins(x[None], y[None])[0])


def _pairwise_wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row r: mean over (i, j) of [x[r, i] > y[r, j]] + [x[r, i] == y[r, j]] / 2."""
    difference = x[:, :, None] - y[:, None, :]
    return ((difference > 0) + 0.5 * (difference == 0)).mean(axis=(1, 2))


def probability_of_improvement_interval(x: np.ndarray, y: np.ndarray, reps: int = 10_000,
                                        confidence: float = 0.95, seed: int = 0) -> Interval:
    """:func:`probability_of_improvement` with a percentile bootstrap interval: each replicate
    resamples the runs of x and the runs of y independently, with replacement."""
    _check_confidence(confidence, reps)
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y))
    point = probability_of_improvement(x, y)
    rng = np.random.default_rng(seed)
    x_resampled = x[rng.integers(0, len(x), size=(reps, len(x)))]
    y_resampled = y[rng.integers(0, len(y), size=(reps, len(y)))]
    low, high = _percentiles(_pairwise_wins(x_resampled, y_resampled), confidence)
    return Interval(point, low, high, confidence)
