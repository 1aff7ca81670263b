"""FID and KID with intervals from the held-out images: a two-sample bootstrap.

Uncertainty comes from re-drawing the *images*, not from re-sampling subsets of one draw: each
replicate resamples the n translated (or untranslated) held-out A images and, independently,
the n held-out B images, with replacement (``core_ssl.stats.stratified_bootstrap_interval`` on
an (n, 2) index matrix: column 0 indexes the A side, column 1 the B side, each resampled within
its column), and the statistic is recomputed. KID's interval is the 95% percentile interval
of the replicates; FID's (and its gain's) is the basic interval, the percentile interval
reflected about the estimate (:func:`basic_interval`), because FID's small-sample bias shifts
its replicates upwards. With the same ``seed`` and the same n, every model is scored on the same
resamples, and a *paired* interval of the difference to a reference (e.g. the identity
baseline, whose row i comes from the same input image i) removes the variation the two share.

- FID: the Frechet distance of the resampled sets (:func:`cut_translation.fid.frechet_distance`'s
  formula). The FID estimate is biased upwards at small n (its value depends on n), so point
  estimates are compared only at the same n; the basic interval corrects the bias to first
  order and is meant for the distributions' FID. Replicates are computed from the Gram
  matrices G = X Y^T of the sets, formed once: with i, j the resampled rows, H = I - 11^T / n,

      |mu_x - mu_y|^2 = mean(Gxx[i, i]) + mean(Gyy[j, j]) - 2 mean(Gxy[i, j])
      tr S_x          = (tr Gxx[i, i] - sum(Gxx[i, i]) / n) / (n - 1)
      tr (S_x S_y)^(1/2) = sum of the singular values of M,   M = H Gxy[i, j] H / (n - 1)

  (M is A B^T of the centred, scaled sets), so a replicate costs O(n^3) however many feature
  dimensions there are (with fewer dimensions d than images, the d x d route of
  ``frechet_distance`` on the resampled rows is used instead).
- KID: the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 on *all* n images (the point), and on
  each resample; in a resample, pairs of copies of the same image are left out of the
  within-set sums (they would add k(x, x) terms an unbiased estimator never has)::

      MMD^2(w, v) = [w'Kxx w - sum_a w_a^2 Kxx_aa] / (n^2 - sum_a w_a^2)
                  + [v'Kyy v - sum_b v_b^2 Kyy_bb] / (n^2 - sum_b v_b^2) - 2 w'Kxy v / n^2

  with w, v the resample counts (all ones for the point estimate, which is then the usual
  unbiased MMD^2). A resample made of copies of a single image (only likely for a handful of
  images) has no pair of different images; its within-set term falls back to w'Kw / n^2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch

from core_ssl.stats import Interval, stratified_bootstrap_interval
from cut_translation.fid import feature_matrix, frechet_distance

__all__ = ["resampled_fid", "kid_from_counts", "two_sample_interval", "basic_interval", "distance_intervals",
           "flatten", "BASIC_KEYS", "EXCLUDES_MARK", "EXCLUDES_NOTE", "FID_INTERVAL_NOTE", "excludes_point",
           "interval_text"]

BASIC_KEYS = ("fid", "fid_gain")  # the measures whose interval is the basic interval (module docstring)
EXCLUDES_MARK = "†"
EXCLUDES_NOTE = (f"{EXCLUDES_MARK} the interval excludes its point: the point is the FID of these n images, "
                 "biased upwards at small n; the interval (basic bootstrap) is for the large-sample FID of the "
                 "two distributions, so it can lie wholly below the point")
FID_INTERVAL_NOTE = ("fid_low / fid_high (and fid_gain's) bound the large-sample FID (basic bootstrap interval); "
                     "fid is the FID of these n images, biased upwards at small n, so the interval can lie wholly "
                     "below it")


def resampled_fid(gxx: np.ndarray, gyy: np.ndarray, gxy: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
    """FID of the rows ``i`` of X and ``j`` of Y (same length n, repeats allowed) from the Gram
    matrices ``gxx = X X^T``, ``gyy = Y Y^T``, ``gxy = X Y^T`` (module docstring)."""
    n = len(i)
    g_x, g_y, m = gxx[np.ix_(i, i)], gyy[np.ix_(j, j)], gxy[np.ix_(i, j)]
    mean_term = g_x.mean() + g_y.mean() - 2.0 * m.mean()
    trace_x = (np.trace(g_x) - g_x.sum() / n) / (n - 1)
    trace_y = (np.trace(g_y) - g_y.sum() / n) / (n - 1)
    centred = (m - m.mean(0) - m.mean(1)[:, None] + m.mean()) / (n - 1)
    nuclear = np.linalg.svd(centred, compute_uv=False).sum()  # not sqrt(eig(M M^T)): exact near rank deficiency
    return max(float(mean_term + trace_x + trace_y - 2.0 * nuclear), 0.0)


def kid_from_counts(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, w: np.ndarray, v: np.ndarray) -> float:
    """The resampled unbiased MMD^2 of the module docstring, from the kernel matrices and the
    resample counts ``w`` (of the x rows) and ``v`` (of the y rows)."""
    return float(_within(kxx, w) + _within(kyy, v) - 2.0 * (w @ kxy @ v) / (w.sum() * v.sum()))


def _within(k: np.ndarray, w: np.ndarray) -> float:
    """Mean kernel over pairs of copies of *different* images; a resample that holds copies of
    one image only (possible for tiny sets) has no such pair and falls back to w'Kw / n^2."""
    n, same = w.sum(), np.sum(w * w)
    if n * n - same <= 0:
        return float(w @ k @ w / (n * n))
    return float((w @ k @ w - np.sum(w * w * np.diag(k))) / (n * n - same))


def two_sample_interval(statistic: Callable[[np.ndarray, np.ndarray], float], n: int, reps: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap of ``statistic(i, j)``, where ``i`` and ``j`` are independent
    resamples (with replacement) of ``range(n)`` for the A side and the B side; the point
    estimate is ``statistic(arange(n), arange(n))``."""
    if n < 2:
        raise ValueError(f"a bootstrap over images needs at least 2 images per set, got {n}")
    index = np.repeat(np.arange(n, dtype=np.float64)[:, None], 2, axis=1)

    def aggregate(matrix: np.ndarray) -> float:
        return statistic(matrix[:, 0].astype(np.int64), matrix[:, 1].astype(np.int64))

    return stratified_bootstrap_interval(index, aggregate, reps=reps, confidence=confidence, seed=seed)


def basic_interval(percentile: Interval) -> Interval:
    """The basic (reverse-percentile) bootstrap interval ``[2 t - q_high, 2 t - q_low]`` from the
    percentile interval ``[q_low, q_high]`` of the same replicates around the estimate t.

    FID is biased upwards at small n, and a resample (about 63% distinct images) adds that bias
    again, so FID's replicates sit above the estimate by about its bias; reflecting them about
    the estimate removes that shift to first order, and the interval is one for the
    distributions' FID rather than for the biased estimate (for n far below the 2048 feature
    dimensions it can lie wholly below the point estimate)."""
    return Interval(percentile.point, 2 * percentile.point - percentile.high, 2 * percentile.point - percentile.low,
                    percentile.confidence)


def distance_intervals(fake: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray,
                       reference: torch.Tensor | np.ndarray | None = None, reps: int = 1000,
                       confidence: float = 0.95, seed: int = 0,
                       reference_cache: dict | None = None) -> dict[str, Interval]:
    """FID and KID of ``fake`` against ``real`` with bootstrap intervals (module docstring).

    With ``reference`` (features of other images made from the same inputs, row i from input i,
    e.g. the untranslated A images), also the paired gains ``fid_gain = FID(reference) -
    FID(fake)`` and ``kid_gain`` (positive: ``fake`` is closer to ``real``), each replicate
    using the same resample for both. All sets must hold the same number of rows n.
    ``reference_cache``: a dict that keeps FID(reference) per resample across calls; pass the
    same dict only to calls with the same ``reference``, ``real``, ``reps`` and ``seed`` (e.g.
    every evaluation of one run), so that part is computed once.

    Returns ``{"fid": Interval, "kid": Interval}`` (plus ``"fid_gain"``, ``"kid_gain"``).
    """
    x, y = feature_matrix(fake, "fake"), feature_matrix(real, "real")
    sets = [x, y] if reference is None else [x, y, feature_matrix(reference, "reference")]
    if len({len(s) for s in sets}) != 1 or len({s.shape[1] for s in sets}) != 1:
        raise ValueError(f"the feature sets must have the same shape (FID's bias depends on the set size); got "
                         f"{[s.shape for s in sets]}: use the same number of images in each")
    n, dim = x.shape
    gxx, gyy, gxy = x @ x.T, y @ y.T, x @ y.T
    kxx, kyy, kxy = ((g / dim + 1.0) ** 3 for g in (gxx, gyy, gxy))

    def frechet(a: np.ndarray, b: np.ndarray, gaa: np.ndarray, gab: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
        # fewer dimensions than images: the d x d covariances are cheaper than the n x n Gram route
        return frechet_distance(a[i], b[j]) if dim < n else resampled_fid(gaa, gyy, gab, i, j)
    fid_values: dict[bytes, float] = {}

    def counts(index: np.ndarray) -> np.ndarray:
        return np.bincount(index, minlength=n).astype(np.float64)

    def fid(i: np.ndarray, j: np.ndarray) -> float:
        key = i.tobytes() + j.tobytes()
        if key not in fid_values:  # the gain's replicates reuse the FID replicates
            fid_values[key] = frechet(x, y, gxx, gxy, i, j)
        return fid_values[key]

    def kid(i: np.ndarray, j: np.ndarray) -> float:
        return kid_from_counts(kxx, kyy, kxy, counts(i), counts(j))

    results = {"fid": basic_interval(two_sample_interval(fid, n, reps, confidence, seed)),
               "kid": two_sample_interval(kid, n, reps, confidence, seed)}
    if reference is not None:
        r = sets[2]
        grr, gry = r @ r.T, r @ y.T
        krr, kry = (grr / dim + 1.0) ** 3, (gry / dim + 1.0) ** 3
        cache = reference_cache if reference_cache is not None else {}

        def fid_reference(i: np.ndarray, j: np.ndarray) -> float:
            key = hashlib.sha1(i.tobytes() + j.tobytes()).digest()
            if key not in cache:
                cache[key] = frechet(r, y, grr, gry, i, j)
            return cache[key]

        def fid_gain(i: np.ndarray, j: np.ndarray) -> float:
            return fid_reference(i, j) - fid(i, j)

        def kid_gain(i: np.ndarray, j: np.ndarray) -> float:
            w, v = counts(i), counts(j)
            return kid_from_counts(krr, kyy, kry, w, v) - kid_from_counts(kxx, kyy, kxy, w, v)

        results["fid_gain"] = basic_interval(two_sample_interval(fid_gain, n, reps, confidence, seed))
        results["kid_gain"] = two_sample_interval(kid_gain, n, reps, confidence, seed)
    return results


def excludes_point(point: float, low: float, high: float) -> bool:
    """Whether an interval leaves out its own point estimate (a basic interval of FID can)."""
    return not low <= point <= high


def interval_text(point: float, low: float, high: float, digits: int = 1) -> str:
    """``point [low, high]``, marked with :data:`EXCLUDES_MARK` when the interval excludes the
    point, so a reader is sent to :data:`EXCLUDES_NOTE`."""
    text = f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return text + EXCLUDES_MARK if excludes_point(point, low, high) else text


def flatten(results: dict[str, Interval]) -> dict[str, float]:
    """``{"fid": Interval(p, lo, hi)}`` -> ``{"fid": p, "fid_low": lo, "fid_high": hi}`` (for logs)."""
    flat = {}
    for name, interval in results.items():
        flat.update({name: interval.point, f"{name}_low": interval.low, f"{name}_high": interval.high})
    return flat
