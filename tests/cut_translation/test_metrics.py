"""The evaluation measures on synthetic features and real photos: bootstrap FID / KID intervals,
the domain classifier, the content measure."""

import numpy as np
import pytest
import torch

from core_ssl.data import read_image_files
from core_ssl.stats import Interval
from cut_translation.content import content_interval, edge_correlation, edge_magnitude
from cut_translation.domain_classifier import DomainClassifier
from cut_translation.fid import frechet_distance, kernel_inception_distance
from cut_translation.intervals import (basic_interval, distance_intervals, flatten, kid_from_counts,
                                      resampled_fid)


def gaussian_sets(seed, n=400):
    """x ~ N(0, I_4), y ~ N(mu, diag(sigma^2)) with mu = (0.5, 0, 0, 0), sigma = (1.5, 1, 1, 1).
    FID of the two Gaussians (closed form for diagonal covariances):
    |mu|^2 + sum (1 - sigma)^2 = 0.25 + 0.25 = 0.5."""
    rng = np.random.default_rng(seed)
    mu, sigma = np.array([0.5, 0, 0, 0]), np.array([1.5, 1, 1, 1])
    return rng.normal(size=(n, 4)), mu + sigma * rng.normal(size=(n, 4))


TRUE_FID = 0.5


def test_fid_bootstrap_interval_covers_the_closed_form_value():
    covered, widths = 0, []
    for seed in range(20):
        x, y = gaussian_sets(seed)
        fid = distance_intervals(x, y, reps=200, seed=seed)["fid"]
        assert fid.low <= fid.point <= fid.high and fid.point == pytest.approx(frechet_distance(x, y), rel=1e-10)
        covered += fid.low <= TRUE_FID <= fid.high
        widths.append(fid.high - fid.low)
    assert covered >= 16  # nominal 95%: 19 of 20 expected
    assert 0.1 < np.mean(widths) < 0.6  # an interval of the sampling error, not a degenerate one


def test_basic_interval_reflects_the_percentile_interval_about_the_estimate():
    # replicates around 12 for an estimate of 10 (a +2 bias): the reflected interval sits around 8
    basic = basic_interval(Interval(10.0, 11.0, 15.0))
    assert (basic.point, basic.low, basic.high) == (10.0, 5.0, 9.0)


def test_kid_interval_separates_same_from_different_distributions():
    x, y = gaussian_sets(0, n=200)
    x2, _ = gaussian_sets(1, n=200)
    same = distance_intervals(x, x2, reps=300)["kid"]
    different = distance_intervals(x, y, reps=300)["kid"]
    assert same.low < 0 < same.high  # unbiased: 0 is inside for two samples of one distribution
    assert different.low > same.high
    # the point is the usual unbiased MMD^2 on all images (one "subset" of every row)
    assert different.point == pytest.approx(kernel_inception_distance(x, y, num_subsets=1, subset_size=200)[0],
                                            rel=1e-10)


def test_resampled_kid_leaves_out_pairs_of_copies():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    i, j = np.array([0, 0, 1, 2, 2, 2]), np.array([5, 4, 4, 3, 0, 1])
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xs, ys = x[i], y[j]
    pairs_x = [(p, q) for p in range(6) for q in range(6) if i[p] != i[q]]
    pairs_y = [(p, q) for p in range(6) for q in range(6) if j[p] != j[q]]
    expected = (sum(k(xs[p], xs[q]) for p, q in pairs_x) / len(pairs_x)
                + sum(k(ys[p], ys[q]) for p, q in pairs_y) / len(pairs_y)
                - 2 * sum(k(a, b) for a in xs for b in ys) / 36)
    kernel = lambda a, b: (a @ b.T / 3 + 1) ** 3  # noqa: E731
    got = kid_from_counts(kernel(x, x), kernel(y, y), kernel(x, y), np.bincount(i, minlength=6).astype(float),
                          np.bincount(j, minlength=6).astype(float))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,d", [(30, 100), (40, 6)])  # more dimensions than images, and fewer
def test_resampled_fid_from_gram_matrices_equals_the_fid_of_the_resampled_sets(n, d):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.3 + 0.2
    i, j = rng.integers(0, n, n), rng.integers(0, n, n)
    got = resampled_fid(x @ x.T, y @ y.T, x @ y.T, i, j)
    assert got == pytest.approx(frechet_distance(x[i], y[j]), rel=1e-8)
    identity = np.arange(n)
    assert resampled_fid(x @ x.T, y @ y.T, x @ y.T, identity, identity) == pytest.approx(frechet_distance(x, y),
                                                                                           rel=1e-8)


def test_paired_gain_against_a_reference():
    x, y = gaussian_sets(5, n=150)
    shifted = x + np.array([0.5, 0, 0, 0])  # the "translated" set: the same inputs moved towards y
    result = distance_intervals(shifted, y, reference=x, reps=200)
    assert result["fid_gain"].point == pytest.approx(frechet_distance(x, y) - frechet_distance(shifted, y), rel=1e-9)
    assert result["fid_gain"].low > 0 and result["kid_gain"].low > 0
    itself = distance_intervals(x, y, reference=x, reps=50)
    assert itself["fid_gain"].low == itself["fid_gain"].high == 0.0
    cache = {}  # the reference's replicates, computed once and reused by a later call
    first = distance_intervals(shifted, y, reference=x, reps=100, reference_cache=cache)
    assert len(cache) > 50
    again = distance_intervals(shifted, y, reference=x, reps=100, reference_cache=cache)
    assert again["fid_gain"] == first["fid_gain"]
    assert set(flatten(result)) >= {"fid", "fid_low", "fid_high", "kid_gain_low"}
    with pytest.raises(ValueError, match="same number of images"):
        distance_intervals(x[:10], y[:12])


def test_domain_classifier_separates_gaussians_and_scores_identity_at_the_floor():
    rng = np.random.default_rng(7)
    shift = np.zeros(20)
    shift[:5] = 1.0

    def draw(n, domain):
        return rng.normal(size=(n, 20)) + (shift if domain == "B" else 0)

    classifier = DomainClassifier(draw(200, "A"), draw(200, "B"))
    held_a, held_b = draw(300, "A"), draw(300, "B")
    floor, ceiling = classifier.share_b(held_a), classifier.share_b(held_b)
    assert floor.high < 0.2 and ceiling.low > 0.8  # Bayes error here: Phi(-sqrt(5)/2) = 0.13
    assert classifier.balanced_accuracy(held_a, held_b) > 0.8
    identity = classifier.share_b(held_a.copy())  # the identity generator's "translations"
    assert (identity.point, identity.low, identity.high) == (floor.point, floor.low, floor.high)
    translated = classifier.share_b(held_a + shift)  # a perfect translator moves A onto B
    assert translated.low > floor.high
    assert classifier.l2 in classifier.validation_loss


@pytest.fixture(scope="module")
def cats():
    _, images = read_image_files("catdog-128.zip", "trainA")
    return images[:12]


def test_content_is_maximal_for_identity_and_falls_with_noise(cats):
    generator = torch.Generator().manual_seed(0)
    identity = edge_correlation(cats, cats)
    assert np.allclose(identity, 1.0)
    previous = 1.0
    for sigma in (10, 40, 120):
        noise = torch.randn(cats.shape, generator=generator) * sigma
        noisy = (cats.float() + noise).round().clamp(0, 255).to(torch.uint8)
        score = content_interval(cats, noisy, reps=200)
        assert score.high < previous  # more noise, less of the input's structure
        previous = score.point
    unrelated = edge_correlation(cats, cats.roll(1, dims=0))  # each cat against another cat
    assert abs(unrelated.mean()) < 0.3 < previous + 0.3
    contrast = (cats.float() * 0.5 + 60).round().to(torch.uint8)  # a global tone change keeps the edges
    assert edge_correlation(cats, contrast).min() > 0.98
    flat = torch.full_like(cats, 128)
    assert np.all(edge_correlation(cats, flat) == 0.0)


def test_edge_magnitude_of_a_step():
    step = torch.zeros(1, 1, 5, 6, dtype=torch.uint8)
    step[..., 3:] = 255
    magnitude = edge_magnitude(step)[0]
    # Sobel across a vertical step of height 1: |(-1, -2, -1) . (0, 0, 0) + (1, 2, 1) . (1, 1, 1)| = 4
    assert torch.allclose(magnitude[:, 2], torch.full((5,), 4.0, dtype=torch.float64))
    assert torch.allclose(magnitude[:, 0], torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="uint8"):
        edge_magnitude(step.float())
