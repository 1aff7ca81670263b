"""core_ssl.stats: IQM against scipy's trimmed mean, bootstrap intervals against direct
computation and known coverage."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from core_ssl.stats import bootstrap_interval, iqm, stratified_bootstrap_interval, t_interval


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 11])
def test_iqm_is_scipy_trim_mean(n):
    x = np.random.default_rng(n).normal(size=(n, 3))
    assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25, axis=None))
    assert np.allclose(iqm(x, axis=0), scipy_stats.trim_mean(x, 0.25, axis=0))


def test_iqm_ignores_one_outlier_of_four():
    assert iqm(np.array([1.0, 2.0, 3.0, 1000.0])) == pytest.approx(2.5)


def test_bootstrap_matches_a_direct_loop():
    x = np.random.default_rng(0).normal(size=17)
    got = bootstrap_interval(x, np.mean, reps=500, seed=3)
    index = np.random.default_rng(3).integers(0, len(x), size=(500, len(x)))
    direct = np.array([x[row].mean() for row in index])
    assert got.point == pytest.approx(x.mean())
    assert got.low == pytest.approx(np.quantile(direct, 0.025))
    assert got.high == pytest.approx(np.quantile(direct, 0.975))


def test_stratified_bootstrap_resamples_within_each_task():
    x = np.random.default_rng(1).normal(size=(6, 2)) + np.array([0.0, 100.0])
    got = stratified_bootstrap_interval(x, np.mean, reps=400, seed=5)
    index = np.random.default_rng(5).integers(0, 6, size=(400, 6, 2))
    direct = np.array([np.mean(np.take_along_axis(x, row, axis=0)) for row in index])
    assert got.point == pytest.approx(x.mean())
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(direct, [0.025, 0.975])))
    # a custom aggregate takes the (slow) per-replicate path and must agree with the fast one
    slow = stratified_bootstrap_interval(x, lambda m: float(np.mean(m)), reps=400, seed=5)
    assert (slow.low, slow.high) == pytest.approx((got.low, got.high))


def test_iqm_interval_fast_path_equals_per_replicate():
    x = np.random.default_rng(2).normal(size=(5, 1))
    fast = stratified_bootstrap_interval(x, iqm, reps=300, seed=0)
    slow = stratified_bootstrap_interval(x, lambda m: float(iqm(m)), reps=300, seed=0)
    assert (fast.point, fast.low, fast.high) == pytest.approx((slow.point, slow.low, slow.high))


def test_percentile_bootstrap_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(300):
        sample = rng.normal(loc=2.0, size=40)
        ci = bootstrap_interval(sample, np.mean, reps=1000, seed=trial)
        hits += ci.low <= 2.0 <= ci.high
    assert 0.88 <= hits / 300 <= 0.99


def test_t_interval_matches_scipy():
    x = np.array([1.0, 2.5, 3.0, 4.5])
    ci = t_interval(x)
    low, high = scipy_stats.t.interval(0.95, 3, loc=x.mean(), scale=scipy_stats.sem(x))
    assert (ci.low, ci.high) == pytest.approx((low, high))


def test_difference_interval_is_welch_s_interval_and_verdicts_read_its_sign():
    from core_ssl.stats import Interval, difference_interval, verdict

    x, y = np.array([0.53, 0.54, 0.56]), np.array([0.55, 0.56, 0.555, 0.58])
    ci = difference_interval(x, y)
    expected = scipy_stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert ci.point == pytest.approx(x.mean() - y.mean())
    assert (ci.low, ci.high) == pytest.approx((expected.low, expected.high))
    # restated: Welch-Satterthwaite degrees of freedom
    vx, vy = x.var(ddof=1) / 3, y.var(ddof=1) / 4
    nu = (vx + vy) ** 2 / (vx**2 / 2 + vy**2 / 3)
    half = scipy_stats.t.ppf(0.975, nu) * np.sqrt(vx + vy)
    assert ci.high - ci.point == pytest.approx(half)
    assert difference_interval([1.0, 1.0], [0.5, 0.5]) == Interval(0.5, 0.5, 0.5)
    assert [verdict(Interval(0.1, 0.02, 0.2)), verdict(Interval(-0.1, -0.2, -0.01)),
            verdict(Interval(0.1, -0.01, 0.2))] == ["holds", "fails", "not resolved"]
    # coverage: the true difference 0.3 lies inside about 95% of intervals
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        ci = difference_interval(rng.normal(1.3, 0.2, 3), rng.normal(1.0, 0.5, 4))
        hits += ci.low <= 0.3 <= ci.high
    assert 0.93 <= hits / 2000 <= 0.98
    with pytest.raises(ValueError, match="more seeds"):
        difference_interval([1.0], [1.0, 2.0])


def test_contrast_interval_restates_welch_for_any_weighted_sum_of_means():
    from core_ssl.stats import contrast_interval, difference_interval

    rng = np.random.default_rng(1)
    groups = [rng.normal(m, s, n) for m, s, n in ((0.50, 0.01, 3), (0.45, 0.02, 3), (0.60, 0.01, 4), (0.58, 0.03, 3))]
    weights = [1.0, -1.0, -1.0, 1.0]  # (a - b) - (c - d): does the gap a - b exceed the gap c - d?
    ci = contrast_interval(groups, weights)
    parts = [w**2 * g.var(ddof=1) / len(g) for w, g in zip(weights, groups)]
    se2 = sum(parts)
    nu = se2**2 / sum(p**2 / (len(g) - 1) for p, g in zip(parts, groups))
    point = (groups[0].mean() - groups[1].mean()) - (groups[2].mean() - groups[3].mean())
    assert ci.point == pytest.approx(point)
    assert ci.high - ci.point == pytest.approx(scipy_stats.t.ppf(0.975, nu) * np.sqrt(se2))
    assert ci.point - ci.low == pytest.approx(ci.high - ci.point)
    two = contrast_interval(groups[:2], [1.0, -1.0])
    assert (two.point, two.low, two.high) == pytest.approx(tuple(vars(difference_interval(*groups[:2])).values())[:3])
    # coverage of the interaction's true value, 0.05 - 0.02 = 0.03
    hits = 0
    for _ in range(2000):
        sample = [rng.normal(m, s, 3) for m, s in ((0.50, 0.02), (0.45, 0.03), (0.60, 0.02), (0.58, 0.01))]
        ci = contrast_interval(sample, weights)
        hits += ci.low <= 0.03 <= ci.high
    assert 0.93 <= hits / 2000 <= 0.98
    with pytest.raises(ValueError, match="one weight per group"):
        contrast_interval(groups, [1.0, -1.0])
    with pytest.raises(ValueError, match="more seeds"):
        contrast_interval([[1.0], [1.0, 2.0]], [1.0, -1.0])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval(np.array([]))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(np.ones(3), confidence=1.5)
    with pytest.raises(ValueError, match="two values"):
        t_interval(np.ones(1))


def test_probability_of_improvement_counts_pairs_and_its_interval_covers():
    from core_ssl.stats import probability_of_improvement, probability_of_improvement_interval

    assert probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert probability_of_improvement([1, 2], [3, 4]) == 0.0
    assert probability_of_improvement([1, 2], [2, 1]) == 0.5  # ties count half
    assert probability_of_improvement([203, 169, 167], [158, 222, 64]) == pytest.approx(6 / 9)
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(40):  # X ~ N(1, 1), Y ~ N(0, 1): P(X > Y) = Phi(1 / sqrt(2)) = 0.760
        x, y = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 30)
        interval = probability_of_improvement_interval(x, y, reps=1000, seed=trial)
        covered += interval.low <= 0.7602 <= interval.high
    assert covered >= 33  # nominal 95% of 40 is 38; a percentile bootstrap undercovers a little
    with pytest.raises(ValueError, match="at least one run of each"):
        probability_of_improvement([], [1.0])


def test_seed_summary_is_the_mean_with_its_t_interval_and_formats_itself():
    from core_ssl.stats import format_seed_summary, seed_summary, t_interval

    values = [0.50, 0.52, 0.57]
    summary = seed_summary(values)
    interval = t_interval(np.array(values))
    assert summary == {"mean": pytest.approx(0.53), "low": interval.low, "high": interval.high, "seeds": values}
    assert format_seed_summary(summary, 3) == f"0.530 [{interval.low:.3f}, {interval.high:.3f}]"
    single = seed_summary([0.4])
    assert (single["low"], single["high"], format_seed_summary(single)) == (None, None, "0.4000")
