"""Frozen features of an image tensor, and the weighted kNN evaluation on them.

:func:`extract_features` runs a network over images in batches, in eval mode and without
gradients, and returns float32 features (N, d) on the device::

    features[i] = network(channels_last(normalize(images[i].to(device))))    (bf16 autocast optional)

:func:`knn_evaluation` extracts the features of a labelled bank and of test images and scores
the test images with the weighted kNN of :func:`core_ssl.monitor.knn_accuracy` (cosine, k = 200,
t = 0.1 by default). Every kNN number in the project (the online monitor of pre-training, the
kNN protocol, the check stored in encoder weights files, the core demo) comes from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core_ssl import monitor
from core_ssl.device import autocast
from core_ssl.logger import progress

__all__ = ["KnnEvaluation", "extract_features", "knn_evaluation"]


@torch.no_grad()
def extract_features(network: nn.Module, images: torch.Tensor, device: torch.device | str, bf16: bool = False,
                     batch_size: int = 1024, normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     channels_last: bool = True) -> torch.Tensor:
    """``network(x)`` of every image, ``batch_size`` at a time, as float32 (N, d) on ``device``.

    Each batch is moved to ``device``, passed through ``normalize`` when given (e.g.
    :func:`core_ssl.augment.standardize_images`), made channels-last when ``channels_last`` and
    4-D, and run under bf16 autocast when ``bf16``. The network runs in eval mode and without
    gradients; its train/eval mode is restored afterwards, also when it raises.

    Raises:
        ValueError: ``batch_size`` < 1 or no images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(images) == 0:
        raise ValueError("no images to extract features from; give at least one image")
    device = torch.device(device)
    was_training = network.training
    network.eval()
    chunks = []
    try:
        with autocast(device, bf16):
            batches = images.split(batch_size)
            for batch in progress(batches, total=len(batches), desc="features", unit="batch",
                                  disable=len(images) < 10_000, leave=False):
                batch = batch.to(device, non_blocking=True)
                if normalize is not None:
                    batch = normalize(batch)
                if channels_last and batch.dim() == 4:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                chunks.append(network(batch).float())
    finally:
        network.train(was_training)
    return torch.cat(chunks)


@dataclass
class KnnEvaluation:
    """What :func:`knn_evaluation` measured: the top-1 in [0, 1] and both feature matrices
    (float32, on the device), for monitors computed on the same features."""

    top1: float
    train_features: torch.Tensor
    test_features: torch.Tensor


def knn_evaluation(network: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor,
                   test_images: torch.Tensor, test_labels: torch.Tensor, num_classes: int,
                   device: torch.device | str, bf16: bool = False, k: int = 200, temperature: float = 0.1,
                   batch_size: int = 1024, normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   channels_last: bool = True) -> KnnEvaluation:
    """Weighted kNN top-1 of ``network``'s features: the test images classified by their k most
    cosine-similar training images, votes weighted ``exp(s / temperature)``
    (:func:`core_ssl.monitor.knn_accuracy`; k is capped at the number of training images).
    Features come from :func:`extract_features` with ``device``, ``bf16``, ``batch_size``,
    ``normalize`` and ``channels_last``."""
    train_features = extract_features(network, train_images, device, bf16, batch_size, normalize, channels_last)
    test_features = extract_features(network, test_images, device, bf16, batch_size, normalize, channels_last)
    top1 = monitor.knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes,
                                k=k, temperature=temperature)
    return KnnEvaluation(top1, train_features, test_features)
