"""core_ssl.features: batched frozen features and the kNN evaluation on them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core_ssl.augment import standardize_images
from core_ssl.encoders import build_encoder
from core_ssl.features import extract_features, knn_evaluation
from core_ssl.monitor import knn_accuracy

CPU = torch.device("cpu")


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class _Recorder(nn.Module):
    """Flattens float images; records the mode, dtype and memory format of every input."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, torch.dtype, bool, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x.dtype, x.is_contiguous(memory_format=torch.channels_last), len(x)))
        return x.float().flatten(1)


def test_features_are_the_eval_mode_network_output_in_batches_and_the_mode_is_restored():
    torch.manual_seed(0)
    encoder = build_encoder("convnet", width=4)
    encoder.train()
    for _ in range(3):  # running statistics away from the initial 0 / 1, so train and eval differ
        encoder(_images(16, seed=_))
    images = _images(10, seed=5)
    features = extract_features(encoder, images, CPU, batch_size=3)
    assert encoder.training  # restored
    encoder.eval()
    with torch.no_grad():
        expected = encoder(images)
        train_mode = encoder.train()(images)
    assert features.dtype == torch.float32 and features.shape == (10, encoder.feature_dim)
    assert torch.allclose(features, expected, atol=1e-5)
    assert not torch.allclose(features, train_mode, atol=1e-3)
    assert not features.requires_grad


def test_batches_normalisation_and_memory_format_reach_the_network_as_documented():
    images = _images(7)
    recorder = _Recorder()
    features = extract_features(recorder, images, CPU, batch_size=3, normalize=standardize_images)
    assert [seen[3] for seen in recorder.seen] == [3, 3, 1]
    assert all(not training and dtype == torch.float32 and channels_last for training, dtype, channels_last, _ in recorder.seen)
    assert torch.allclose(features, standardize_images(images).flatten(1))

    recorder.seen.clear()
    plain = extract_features(recorder.eval(), images, CPU, channels_last=False)
    assert recorder.seen == [(False, torch.uint8, False, 7)] and not recorder.training
    assert torch.equal(plain, images.float().flatten(1))


def test_the_mode_is_restored_when_the_network_raises():
    class Failing(nn.Module):
        def forward(self, x):
            raise RuntimeError("broken network")

    network = Failing().train()
    with pytest.raises(RuntimeError, match="broken network"):
        extract_features(network, _images(2), CPU)
    assert network.training


def test_bad_batch_size_or_no_images_is_an_error_naming_the_fix():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        extract_features(nn.Flatten(), _images(2), CPU, batch_size=0)
    with pytest.raises(ValueError, match="at least one image"):
        extract_features(nn.Flatten(), _images(0), CPU)


def test_knn_evaluation_is_the_weighted_knn_of_the_extracted_features():
    g = torch.Generator().manual_seed(3)
    centres = torch.randint(0, 256, (4, 3, 8, 8), generator=g).float()
    train_labels, test_labels = torch.randint(4, (60,), generator=g), torch.randint(4, (30,), generator=g)

    def noisy(labels: torch.Tensor) -> torch.Tensor:
        return (centres[labels] + 60 * torch.randn(len(labels), 3, 8, 8, generator=g)).clamp(0, 255).to(torch.uint8)

    train, test = noisy(train_labels), noisy(test_labels)
    network = nn.Flatten()
    result = knn_evaluation(network, train, train_labels, test, test_labels, 4, CPU, k=5, temperature=0.5,
                            batch_size=16, channels_last=False)
    train_x, test_x = train.float().flatten(1), test.float().flatten(1)
    assert torch.equal(result.train_features, train_x) and torch.equal(result.test_features, test_x)
    assert result.top1 == knn_accuracy(train_x, train_labels, test_x, test_labels, 4, k=5, temperature=0.5)
    # the clusters are far apart at this noise: the nearest neighbours share the label
    assert result.top1 > 0.9
    # k larger than the bank is capped at the bank: every training image votes
    everyone = knn_evaluation(network, train, train_labels, test, test_labels, 4, CPU, k=10_000)
    assert everyone.top1 == knn_accuracy(train_x, train_labels, test_x, test_labels, 4, k=60)
