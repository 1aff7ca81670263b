"""Shared fixtures: a small slice of the real CIFAR-10 images."""

from __future__ import annotations

import pytest
import torch

from core_ssl.data import ImageSet, load_cifar10


@pytest.fixture(scope="session")
def cifar_test() -> ImageSet:
    """The CIFAR-10 test split (10,000 real images), decoded once and cached."""
    try:
        return load_cifar10("test")
    except FileNotFoundError as err:  # the data folder is part of the project's setup
        pytest.fail(f"real CIFAR-10 data is required: {err}")


@pytest.fixture(scope="session")
def cifar_batch(cifar_test) -> tuple[torch.Tensor, torch.Tensor]:
    """64 real images (a random draw over all classes) and their labels."""
    index = torch.randperm(len(cifar_test), generator=torch.Generator().manual_seed(0))[:64]
    return cifar_test.images[index], cifar_test.labels[index]
