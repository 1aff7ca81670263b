"""The evaluation protocols: chance on random labels, near-perfect on separable features."""

from __future__ import annotations

import torch

from core_ssl.data import ImageSet
from core_ssl.monitor import knn_accuracy
import pytest

from vision_benchmarks.evaluation.protocols import (balanced_label_indices, balanced_label_subset, distill, finetune,
                                         linear_probe, load_label_indices, save_label_indices)

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
    assert knn_accuracy(train_x, train_y, test_x, test_y, CLASSES) > 0.98


def test_linear_probe_and_knn_are_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(3000, 32, generator=g), torch.randn(1000, 32, generator=g)
    train_y, test_y = torch.randint(CLASSES, (3000,), generator=g), torch.randint(CLASSES, (1000,), generator=g)
    # 1000 test labels: chance is 0.10 with a standard error of 0.0095
    assert abs(linear_probe(train_x, train_y, test_x, test_y, CLASSES).top1 - 0.1) < 0.04
    assert abs(knn_accuracy(train_x, train_y, test_x, test_y, CLASSES) - 0.1) < 0.04


def unequal_labels() -> torch.Tensor:
    """10 classes of 150 to 195 images (1725 in all), shuffled, and 40 unlabelled (-1) images."""
    labels = torch.cat([torch.full((150 + 5 * c,), c) for c in range(10)] + [torch.full((40,), -1)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(9))]


@pytest.mark.parametrize("fraction, per_class", [(0.01, 2), (0.1, 17)])  # round(f * 1725 / 10)
def test_label_indices_are_exactly_balanced_and_seeded(fraction, per_class):
    labels = unequal_labels()
    indices = balanced_label_indices(labels, fraction, seed=0, num_classes=10)
    assert indices.dtype == torch.int64 and torch.equal(indices, indices.unique())  # sorted, no repeats
    assert torch.equal(torch.bincount(labels[indices], minlength=10), torch.full((10,), per_class))
    assert torch.equal(indices, balanced_label_indices(labels, fraction, seed=0, num_classes=10))
    assert not torch.equal(indices, balanced_label_indices(labels, fraction, seed=1, num_classes=10))
    assert len(balanced_label_indices(labels, 1.0)) == 1725  # every labelled image, none of the -1
    with pytest.raises(ValueError, match="fewer than"):
        balanced_label_indices(labels, 0.9, seed=0, num_classes=10)
    with pytest.raises(ValueError, match="fraction"):
        balanced_label_indices(labels, 0.0)


def test_label_index_file_round_trips_and_is_reused(tmp_path):
    labels = unequal_labels()
    data = ImageSet(torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8), labels, [str(c) for c in range(10)])
    indices = balanced_label_indices(labels, 0.1, seed=3, num_classes=10)
    path = save_label_indices(tmp_path / "labels0.1.json", indices, labels, 0.1, 3)
    assert torch.equal(load_label_indices(path, labels), indices)
    with pytest.raises(ValueError, match="another training set"):
        load_label_indices(path, labels.roll(1))

    index_file = tmp_path / "subset.json"
    first = balanced_label_subset(data, 0.1, seed=3, index_file=index_file)
    assert index_file.is_file() and torch.equal(load_label_indices(index_file), indices)
    assert torch.equal(first.labels, labels[indices])
    index_file.write_text(index_file.read_text().replace('"seed": 3', '"seed": 4'))  # the file wins, if it matches
    with pytest.raises(ValueError, match="seed"):
        balanced_label_subset(data, 0.1, seed=3, index_file=index_file)
    again = balanced_label_subset(data, 0.1, seed=4, index_file=index_file)
    assert torch.equal(again.labels, first.labels)


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
