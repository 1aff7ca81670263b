"""FID and KID with intervals from the held-out images: a two-sample bootstrap.

Uncertainty comes from re-drawing the *images*, not from re-sampling subsets of one draw: each
replicate resamples the n translated (or untranslated) held-out A images and, independently,
the n held-out B images, with replacement (``core_ssl.stats.stratified_bootstrap_interval`` on
an (n, 2) index matrix: column 0 indexes the A side, column 1 the B side, each resampled within
its column), and the statistic is recomputed. The interval is the 95% percentile interval of
the replicates. With the same ``seed`` and the same n, every model is scored on the same
resamples, and a *paired* interval of the difference to a reference (e.g. the identity
baseline, whose row i comes from the same input image i) removes the variation the two share.

- FID: :func:`cut_translation.fid.frechet_distance` of the resampled sets. FID is biased
  upwards by about tr(S) / n, so its interval is the spread of FID *at this set size n*:
  compare models only at the same n. To make replicates cheap, features are first written in an
  orthonormal basis of the span of all rows (at most 3n dimensions instead of 2048), which keeps
  every inner product and hence the FID.
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

from collections.abc import Callable

import numpy as np
import torch

from core_ssl.stats import Interval, stratified_bootstrap_interval
from cut_translation.fid import frechet_distance

__all__ = ["span_coordinates", "kid_from_counts", "two_sample_interval", "distance_intervals", "flatten"]


def _array(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(f"{name} must be an (N >= 2, D) feature matrix, got shape {array.shape}")
    return array.astype(np.float64, copy=False)


def span_coordinates(*sets: np.ndarray) -> list[np.ndarray]:
    """The sets' rows in an orthonormal basis of the span of all their rows (a thin SVD of the
    stacked rows); inner products, means, covariance traces and FID are unchanged. Sets with
    fewer dimensions than rows are returned as they are."""
    stacked = np.concatenate(sets)
    if stacked.shape[1] <= len(stacked):
        return list(sets)
    u, singular, _ = np.linalg.svd(stacked, full_matrices=False)
    coords = u * singular
    return np.split(coords, np.cumsum([len(s) for s in sets])[:-1])


def _kernel(x: np.ndarray, y: np.ndarray, dim: int) -> np.ndarray:
    return (x @ y.T / dim + 1.0) ** 3


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


def distance_intervals(fake: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray,
                       reference: torch.Tensor | np.ndarray | None = None, reps: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """FID and KID of ``fake`` against ``real`` with bootstrap intervals (module docstring).

    With ``reference`` (features of other images made from the same inputs, row i from input i,
    e.g. the untranslated A images), also the paired gains ``fid_gain = FID(reference) -
    FID(fake)`` and ``kid_gain`` (positive: ``fake`` is closer to ``real``), each replicate
    using the same resample for both. All sets must hold the same number of rows n.

    Returns ``{"fid": Interval, "kid": Interval}`` (plus ``"fid_gain"``, ``"kid_gain"``).
    """
    x, y = _array(fake, "fake"), _array(real, "real")
    sets = [x, y] if reference is None else [x, y, _array(reference, "reference")]
    if len({len(s) for s in sets}) != 1 or len({s.shape[1] for s in sets}) != 1:
        raise ValueError(f"the feature sets must have the same shape (FID's bias depends on the set size); got "
                         f"{[s.shape for s in sets]}: use the same number of images in each")
    n, dim = x.shape
    coords = span_coordinates(*sets)
    kernels = {"xx": _kernel(x, x, dim), "yy": _kernel(y, y, dim), "xy": _kernel(x, y, dim)}

    def counts(index: np.ndarray) -> np.ndarray:
        return np.bincount(index, minlength=n).astype(np.float64)

    def fid(i: np.ndarray, j: np.ndarray) -> float:
        return frechet_distance(coords[0][i], coords[1][j])

    def kid(i: np.ndarray, j: np.ndarray) -> float:
        return kid_from_counts(kernels["xx"], kernels["yy"], kernels["xy"], counts(i), counts(j))

    results = {"fid": two_sample_interval(fid, n, reps, confidence, seed),
               "kid": two_sample_interval(kid, n, reps, confidence, seed)}
    if reference is not None:
        r = sets[2]
        krr, kry = _kernel(r, r, dim), _kernel(r, y, dim)

        def fid_gain(i: np.ndarray, j: np.ndarray) -> float:
            return frechet_distance(coords[2][i], coords[1][j]) - fid(i, j)

        def kid_gain(i: np.ndarray, j: np.ndarray) -> float:
            w, v = counts(i), counts(j)
            return kid_from_counts(krr, kernels["yy"], kry, w, v) - kid_from_counts(
                kernels["xx"], kernels["yy"], kernels["xy"], w, v)

        results["fid_gain"] = two_sample_interval(fid_gain, n, reps, confidence, seed)
        results["kid_gain"] = two_sample_interval(kid_gain, n, reps, confidence, seed)
    return results


def flatten(results: dict[str, Interval]) -> dict[str, float]:
    """``{"fid": Interval(p, lo, hi)}`` -> ``{"fid": p, "fid_low": lo, "fid_high": hi}`` (for logs)."""
    flat = {}
    for name, interval in results.items():
        flat.update({name: interval.point, f"{name}_low": interval.low, f"{name}_high": interval.high})
    return flat
