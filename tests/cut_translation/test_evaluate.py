"""The evaluator's logic with a cheap stand-in for Inception (pooled pixels): baselines at the
ends of each scale, uint8 rounding, equal set sizes, the feature cache."""

import pytest
import torch
import torch.nn.functional as F

from core_ssl.data import read_image_files, resize_images
from cut_translation.data import UnpairedData, to_model_range, to_uint8
from cut_translation.evaluate import TranslationEvaluator


def pooled_pixels(images):
    """A 48-d feature: the mean colour of each 8 x 8 cell of a 32 px image."""
    return F.avg_pool2d(images.float() / 255.0, 8).flatten(1).double()


@pytest.fixture(scope="module")
def data():
    _, cats = read_image_files("catdog-128.zip", "trainA")
    _, dogs = read_image_files("catdog-128.zip", "trainB")
    cats, dogs = resize_images(cats[:140], 32), resize_images(dogs[:150], 32)
    return UnpairedData(train_a=cats[:100], train_b=dogs[:100], test_a=cats[100:], test_b=dogs[100:],
                        size=32, load_size=32, channels=3)


class Identity:
    def translate(self, images, batch_size=16):
        return images


class Cheat:
    """'Translates' held-out cat i into held-out dog i: perfect realism, no content kept."""

    def __init__(self, data):
        self.dogs = to_model_range(data.test_b[:len(data.test_a)])

    def translate(self, images, batch_size=16):
        return self.dogs[:len(images)]


class Noisy:
    def translate(self, images, batch_size=16):
        return images + 0.3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))


def test_baselines_sit_at_the_ends_of_each_scale(data):
    evaluator = TranslationEvaluator(data, classifier_images=100, bootstrap_reps=200, features=pooled_pixels)
    assert len(evaluator.test_a) == len(evaluator.test_b) == 40  # equal sizes: min(40 A, 50 B)
    baseline = evaluator.baseline()
    assert baseline["content"] == 1.0 and baseline["images"] == 40
    assert baseline["domain_share"] < baseline["domain_share_real_b"]  # floor below ceiling
    assert 0.5 < baseline["classifier_accuracy"] <= 1.0

    identity = evaluator.evaluate(Identity())
    for key in ("fid", "kid", "domain_share", "domain_share_low", "domain_share_high", "content"):
        assert identity[key] == pytest.approx(baseline[key], abs=1e-12), key  # the identity is the floor
    assert identity["fid_gain"] == identity["kid_gain"] == 0.0

    cheat = evaluator.evaluate(Cheat(data))
    assert cheat["fid"] == pytest.approx(0.0, abs=1e-9) and cheat["fid_gain"] == pytest.approx(baseline["fid"])
    assert cheat["domain_share"] == baseline["domain_share_real_b"]  # the classifier's ceiling
    assert cheat["content"] == pytest.approx(baseline["content_unrelated"])  # the content floor

    noisy = evaluator.evaluate(Noisy())
    assert noisy["content_high"] < identity["content"]
    assert noisy["content_low"] > baseline["content_unrelated_high"]


def test_translations_are_rounded_to_uint8_before_scoring(data):
    seen = []

    def recording(images):
        seen.append(images)
        return pooled_pixels(images)

    evaluator = TranslationEvaluator(data, classifier_images=0, bootstrap_reps=20, features=recording)
    evaluator.evaluate(Noisy())
    translated = seen[-1]
    assert translated.dtype == torch.uint8
    assert torch.equal(translated, to_uint8(Noisy().translate(to_model_range(evaluator.test_a))))


def test_real_features_are_cached_once(data, tmp_path):
    calls = []

    def counting(images):
        calls.append(len(images))
        return pooled_pixels(images)

    key = {"data": "catdog", "size": 32}
    first = TranslationEvaluator(data, classifier_images=20, bootstrap_reps=20, features=counting,
                                 cache=tmp_path / "features.pt", cache_key=key)
    assert calls == [40, 40, 20, 20]
    second = TranslationEvaluator(data, classifier_images=20, bootstrap_reps=20, features=counting,
                                  cache=tmp_path / "features.pt", cache_key=key)
    assert calls == [40, 40, 20, 20]  # nothing recomputed
    assert second.baseline() == first.baseline()
    TranslationEvaluator(data, classifier_images=20, bootstrap_reps=20, features=counting,
                         cache=tmp_path / "features.pt", cache_key={**key, "size": 64})
    assert len(calls) == 8  # another key: computed again
    with pytest.raises(ValueError, match="at least 2 held-out images"):
        TranslationEvaluator(data, max_images=1, features=counting)
