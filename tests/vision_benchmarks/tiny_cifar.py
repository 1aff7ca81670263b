"""A tiny real-image dataset folder for end-to-end tests of the experiment commands."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from core_ssl.data import ImageSet


def write_tiny_cifar(cifar_test: ImageSet, folder: Path, train_per_class: int = 20, test_per_class: int = 10,
                     num_classes: int = 10) -> Path:
    """``folder/{train,test}/<class>/<i>.png``: disjoint real CIFAR-10 images of the first
    ``num_classes`` classes (drawn from the CIFAR-10 test split), laid out as
    ``vision_benchmarks.pretrain --dataset`` reads a folder."""
    order = torch.randperm(len(cifar_test), generator=torch.Generator().manual_seed(0))
    for label in range(num_classes):
        members = order[cifar_test.labels[order] == label]
        for split, chosen in (("train", members[:train_per_class]),
                              ("test", members[train_per_class:train_per_class + test_per_class])):
            target = folder / split / cifar_test.classes[label]
            target.mkdir(parents=True, exist_ok=True)
            for i, index in enumerate(chosen.tolist()):
                Image.fromarray(cifar_test.images[index].permute(1, 2, 0).numpy()).save(target / f"{i:03d}.png")
    return folder
