"""Evaluation protocols: frozen features once, then a linear probe or a kNN; or fine-tuning.

- :func:`core_ssl.features.extract_features` (imported here): a backbone's features of uint8
  images (eval mode, no augmentation, channels-last).
- :func:`linear_probe`: multinomial logistic regression on standardised frozen features, fit
  full-batch with L-BFGS (warm-started along the L2 path); the L2 strength is chosen on a
  held-out 10% of the training features, then the classifier is refit on all of them.
- the kNN protocol is ``core_ssl.monitor.knn_accuracy`` on the same features (k = 200, t = 0.1,
  cosine).
- :func:`finetune`: the whole backbone plus a linear layer trained with SGD and light
  augmentation (crop + flip).
- :func:`balanced_label_indices` / :func:`balanced_label_subset`: the 1% / 10% labelled subsets
  of the semi-supervised protocol (exactly balanced, seeded), saved to and loaded from a JSON
  index file with :func:`save_label_indices` / :func:`load_label_indices`.
- :func:`distill`: SimCLRv2's self-distillation of a fine-tuned teacher on unlabelled images.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core_ssl.augment import SimCLRAugment
from core_ssl.checkpoint import atomic_write
from core_ssl.data import BatchIterator, ImageSet
from core_ssl.device import autocast
from core_ssl.features import extract_features
from core_ssl.heads import LinearClassifier
from core_ssl.logger import RunLogger, progress
from core_ssl.logistic import fit_logistic_regression
from core_ssl.losses import distillation_loss
from core_ssl.schedules import warmup_cosine

DEFAULT_L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``logits`` (N, C) against integer labels (N,), in [0, 1]."""
    return (logits.argmax(1) == labels.to(logits.device)).float().mean().item()


def fit_linear_classifier(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float,
                          max_iter: int = 100, init: LinearClassifier | None = None) -> LinearClassifier:
    """Minimise ``CE(x W^T + b, y) + l2/2 ||W||^2`` over all rows at once with L-BFGS
    (:func:`core_ssl.logistic.fit_logistic_regression`, multinomial form), starting from
    ``init``'s weights when given (a warm start along a regularisation path), else from a new
    :class:`LinearClassifier`'s initialisation."""
    classifier = LinearClassifier(features.shape[1], num_classes).to(features.device)
    if init is not None:
        classifier.load_state_dict(init.state_dict())
    weight, bias = fit_logistic_regression(features, labels, l2, num_classes, init=(classifier.weight, classifier.bias),
                                           max_iter=max_iter)
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    return classifier


@dataclass
class ProbeResult:
    """Linear-probe outcome: test top-1, the chosen L2 strength and the validation top-1 per L2."""

    top1: float
    l2: float
    validation: dict[float, float]


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, l2_grid: tuple[float, ...] = DEFAULT_L2_GRID,
                 validation_fraction: float = 0.1, seed: int = 0) -> ProbeResult:
    """Linear probe on frozen features (see the module docstring); features are standardised
    with the training mean and std."""
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError("features and labels must have the same number of rows")
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    train_x, test_x = (train_features - mean) / std, (test_features - mean) / std
    train_y = train_labels.to(train_x.device)
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed)).to(train_x.device)
    held_out = max(1, int(validation_fraction * len(train_x)))
    val_index, fit_index = order[:held_out], order[held_out:]
    validation, fitted = {}, {}
    classifier = None
    # a visible phase: on a CPU the L-BFGS fits over 50,000 features take minutes
    bar = progress(total=len(l2_grid) + 1, desc="linear probe (L2 grid, then refit)", unit="fit",
                   disable=len(train_x) < 5000)
    for l2 in sorted(l2_grid, reverse=True):  # strong to weak, each fit warm-started from the last
        classifier = fit_linear_classifier(train_x[fit_index], train_y[fit_index], num_classes, l2, init=classifier)
        fitted[l2] = classifier
        with torch.no_grad():
            validation[l2] = accuracy(classifier(train_x[val_index]), train_y[val_index])
        bar.update(1)
    best = max(l2_grid, key=lambda l2: (validation[l2], l2))  # ties: the stronger regularisation
    classifier = fit_linear_classifier(train_x, train_y, num_classes, best, init=fitted[best])
    bar.update(1)
    bar.close()
    with torch.no_grad():
        top1 = accuracy(classifier(test_x), test_labels)
    return ProbeResult(top1, best, validation)


LABEL_INDEX_FORMAT = 1


def balanced_label_indices(labels: torch.Tensor, fraction: float, seed: int = 0,
                           num_classes: int | None = None) -> torch.Tensor:
    """The semi-supervised protocol's labelled subset: sorted int64 indices into ``labels``.

    Exactly ``n = max(1, round(fraction * N / C))`` images of each of the C classes, N the
    number of labelled images (label >= 0; -1 marks unlabelled ones), drawn without replacement
    by a generator seeded with ``seed``: the same seed gives the same subset. CIFAR-10 at 1%
    is 50 images per class, at 10% 500. ``fraction = 1`` returns every labelled image.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must lie in (0, 1], got {fraction}")
    labels = labels.cpu()
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    labelled = (labels >= 0).nonzero().flatten()
    if fraction == 1:
        return labelled
    per_class = max(1, round(fraction * len(labelled) / num_classes))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in range(num_classes):
        members = (labels == label).nonzero().flatten()
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} labelled images, fewer than the {per_class} "
                             f"a balanced {fraction:g} subset needs; use a smaller --label-fraction")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def save_label_indices(path: str | Path, indices: torch.Tensor, labels: torch.Tensor, fraction: float,
                       seed: int) -> Path:
    """Write a labelled subset as JSON (atomically): the fraction, the seed, the size of the
    training set, the indices and their labels (checked again on loading)."""
    indices = torch.as_tensor(indices, dtype=torch.int64).cpu()
    labels = labels.cpu()
    record = {"format": LABEL_INDEX_FORMAT, "fraction": fraction, "seed": seed, "dataset_size": len(labels),
              "indices": indices.tolist(), "labels": labels[indices].tolist()}
    text = json.dumps(record) + "\n"
    return atomic_write(Path(path), lambda f: f.write(text.encode()))


def load_label_indices(path: str | Path, labels: torch.Tensor | None = None) -> torch.Tensor:
    """The indices saved by :func:`save_label_indices`; given the training set's ``labels``, also
    check that the file belongs to it (same size, same label at every index)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the label index file {path}: {err}") from err
    if record.get("format") != LABEL_INDEX_FORMAT:
        raise ValueError(f"{path} is not a label index file of format {LABEL_INDEX_FORMAT}")
    indices = torch.tensor(record["indices"], dtype=torch.int64)
    if labels is not None:
        labels = labels.cpu()
        if record["dataset_size"] != len(labels) or \
                not torch.equal(labels[indices], torch.tensor(record["labels"], dtype=labels.dtype)):
            raise ValueError(f"{path} was drawn from another training set ({record['dataset_size']} images) "
                             f"than this one ({len(labels)}); delete it or point to the right file")
    return indices


def balanced_label_subset(data: ImageSet, fraction: float, seed: int = 0,
                          index_file: str | Path | None = None) -> ImageSet:
    """The labelled subset of ``data`` (:func:`balanced_label_indices`). With ``index_file``:
    read the indices from it when it exists (after checking fraction, seed and labels), else
    draw them and save them there, so later evaluations use the very same images."""
    if index_file is not None and Path(index_file).exists():
        record = json.loads(Path(index_file).read_text())
        if (record.get("fraction"), record.get("seed")) != (fraction, seed):
            raise ValueError(f"{index_file} holds the fraction {record.get('fraction')} subset of seed "
                             f"{record.get('seed')}, not fraction {fraction} and seed {seed}")
        indices = load_label_indices(index_file, data.labels)
    else:
        indices = balanced_label_indices(data.labels, fraction, seed, data.num_classes)
        if index_file is not None:
            save_label_indices(index_file, indices, data.labels, fraction, seed)
    if fraction == 1 and len(indices) == len(data):
        return data
    return data.subset(indices)


def _train_classifier(backbone: nn.Module, feature_dim: int, num_classes: int, images: ImageSet, test: ImageSet,
                      device: torch.device, epochs: int, batch_size: int, lr: float, weight_decay: float,
                      bf16: bool, seed: int, batch_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                      name: str, logger: RunLogger | None) -> tuple[dict[str, float], nn.Module]:
    """What fine-tuning and distillation share: train a copy of ``backbone`` plus a linear layer
    (channels-last) on crop + flip views of ``images`` with Nesterov SGD (momentum 0.9), a
    one-epoch warm-up then cosine decay, minimising ``batch_loss(model, views, labels)``; test
    top-1 after every epoch, logged as ``name`` rows. Augmentation parameters come from a CPU
    generator, so they never make CUDA wait. Returns the last epoch's record and the model."""
    torch.manual_seed(seed)
    model = nn.Sequential(copy.deepcopy(backbone), LinearClassifier(feature_dim, num_classes)).to(device)
    model = model.to(memory_format=torch.channels_last)
    views = SimCLRAugment(images.images.shape[-1], scale=(0.2, 1.0), color_p=0.0, grayscale_p=0.0, blur_p=0.0)
    batches = BatchIterator(images, min(batch_size, len(images)), seed=seed, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    total = epochs * len(batches)
    scheduler = warmup_cosine(optimizer, total, warmup=min(len(batches), total - 1))
    generator = torch.Generator().manual_seed(seed)
    result: dict[str, float] = {}
    bar = progress(total=total, desc=name)
    for epoch in range(epochs):
        model.train()
        total_loss = 0.0
        for batch_images, labels, _ in batches:
            inputs = views(batch_images, generator).contiguous(memory_format=torch.channels_last)
            loss = batch_loss(model, inputs, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
            bar.update(1)
        result = {"epoch": epoch + 1, "train_loss": total_loss / len(batches),
                  "top1": accuracy(extract_features(model, test.images, device, bf16), test.labels)}
        bar.set_postfix(top1=f"{result['top1']:.3f}")
        if logger is not None:
            logger.log(name, epoch + 1, **result)
    bar.close()
    if not math.isfinite(result.get("train_loss", 0.0)):
        raise FloatingPointError(f"{name} diverged (non-finite loss); lower --lr")
    return result, model


def finetune(backbone: nn.Module, feature_dim: int, train: ImageSet, test: ImageSet, device: torch.device,
             epochs: int = 10, batch_size: int = 256, lr: float = 0.05, weight_decay: float = 5e-4,
             bf16: bool = False, seed: int = 0,
             logger: RunLogger | None = None) -> tuple[dict[str, float], nn.Module]:
    """Fine-tune a copy of ``backbone`` with a new linear layer on ``train``; returns the last
    epoch's record (test top-1) and the fine-tuned classifier.

    SGD (momentum 0.9, nesterov), warm-up cosine learning rate over all steps, cross-entropy,
    views = random resized crop (scale 0.2-1) + flip. Logs ``finetune`` rows per epoch.
    """
    def cross_entropy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with autocast(device, bf16):
            logits = model(inputs)
        return F.cross_entropy(logits.float(), labels)

    return _train_classifier(backbone, feature_dim, train.num_classes, train, test, device, epochs, batch_size,
                             lr, weight_decay, bf16, seed, cross_entropy, "finetune", logger)


def distill(teacher: nn.Module, backbone: nn.Module, feature_dim: int, unlabelled: ImageSet, test: ImageSet,
            device: torch.device, epochs: int = 10, batch_size: int = 256, lr: float = 0.05,
            temperature: float = 1.0, bf16: bool = False, seed: int = 0,
            logger: RunLogger | None = None) -> dict[str, float]:
    """SimCLRv2's self-distillation: a student (a fresh copy of the pre-trained ``backbone`` plus
    a linear layer) learns the fine-tuned ``teacher``'s softened predictions on unlabelled
    images, ``loss = distillation_loss(student(v), teacher(v), t)`` on the same crop + flip view
    v; no label is read. Returns the student's last-epoch record (``train_loss`` is the
    distillation loss, ``top1`` the test top-1)."""
    teacher = teacher.eval()

    def soft_targets(student: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(device, bf16):
            teacher_logits = teacher(inputs)
        with autocast(device, bf16):
            student_logits = student(inputs)
        return distillation_loss(student_logits, teacher_logits, temperature)

    result, _ = _train_classifier(backbone, feature_dim, test.num_classes, unlabelled, test, device, epochs,
                                  batch_size, lr, 0.0, bf16, seed, soft_targets, "distill", logger)
    return result
