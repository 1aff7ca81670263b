"""The evaluation protocols: chance on random labels, near-perfect on separable features."""

from __future__ import annotations

import torch

from core_ssl.data import ImageSet
import pytest

from vision_benchmarks.protocols import balanced_label_subset, distill, finetune, knn_top1, linear_probe

CLASSES = 10


def blobs(n: int, dim: int, spread: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters around 10 random centres (well separated for small ``spread``)."""
    centres = torch.randn(CLASSES, dim, generator=torch.Generator().manual_seed(123)) * 3
    labels = torch.randint(CLASSES, (n,), generator=generator)
    return centres[labels] + spread * torch.randn(n, dim, generator=generator), labels


def test_linear_probe_and_knn_are_near_perfect_on_separable_features():
    g = torch.Generator().manual_seed(0)
    train_x, train_y = blobs(3000, 32, 0.5, g)
    test_x, test_y = blobs(1000, 32, 0.5, g)
    assert linear_probe(train_x, train_y, test_x, test_y, CLASSES).top1 > 0.98
    assert knn_top1(train_x, train_y, test_x, test_y, CLASSES) > 0.98


def test_linear_probe_and_knn_are_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(3000, 32, generator=g), torch.randn(1000, 32, generator=g)
    train_y, test_y = torch.randint(CLASSES, (3000,), generator=g), torch.randint(CLASSES, (1000,), generator=g)
    # 1000 test labels: chance is 0.10 with a standard error of 0.0095
    assert abs(linear_probe(train_x, train_y, test_x, test_y, CLASSES).top1 - 0.1) < 0.04
    assert abs(knn_top1(train_x, train_y, test_x, test_y, CLASSES) - 0.1) < 0.04


def test_balanced_label_subset_takes_the_fraction_of_every_class():
    labels = torch.arange(10).repeat_interleave(100)
    data = ImageSet(torch.zeros(1000, 3, 2, 2, dtype=torch.uint8), labels, [str(c) for c in range(10)])
    subset = balanced_label_subset(data, 0.1, seed=0)
    assert torch.equal(torch.bincount(subset.labels), torch.full((10,), 10))


def coloured_images(n: int, seed: int) -> ImageSet:
    """Class k = a noisy image of the k-th of 10 distinct colours: separable by any network."""
    g = torch.Generator().manual_seed(seed)
    palette = torch.tensor([[r, gr, b] for r in (40, 215) for gr in (40, 215) for b in (40, 215)] + [[128, 128, 128], [128, 40, 215]])
    labels = torch.arange(n) % CLASSES
    images = palette[labels].view(n, 3, 1, 1) + torch.randint(-20, 21, (n, 3, 32, 32), generator=g)
    return ImageSet(images.clamp(0, 255).to(torch.uint8), labels, [str(c) for c in range(CLASSES)])


@pytest.mark.slow
def test_finetune_then_distil_learn_a_separable_task():
    from core_ssl.encoders import build_encoder

    torch.manual_seed(0)
    backbone = build_encoder("convnet", width=8)
    train, test = coloured_images(320, 0), coloured_images(200, 1)
    device = torch.device("cpu")
    result, teacher = finetune(backbone, backbone.feature_dim, train, test, device, epochs=10, batch_size=64, lr=0.05)
    assert result["top1"] > 0.9
    student = distill(teacher, backbone, backbone.feature_dim, train, test, device, epochs=10, batch_size=64, lr=0.05)
    assert student["top1"] > 0.9
