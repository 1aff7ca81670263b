"""The images a pre-training run trains and is evaluated on: one split of its dataset, as RGB.

:func:`load_run_split` is what pre-training and every evaluation of a run load, so they see
the same images:

- every encoder here takes 3-channel input, so grey datasets (``fashion-mnist``, a folder of
  grey images) are replicated to RGB on loading (:func:`core_ssl.data.load_dataset`'s
  ``channels``);
- a folder laid out ``train/`` + ``val/`` (the Imagenette layout) has no ``test/``: its first
  held-out split of ``test``, ``val``, ``valid``, ``validation`` (:data:`EVAL_SPLITS`) stands in
  for ``"test"``, as in the transfer evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core_ssl.data import DATASET_NAMES, ImageSet, find_source, list_splits, load_dataset

ENCODER_CHANNELS = 3
"""Input channels of every pre-trained encoder."""

EVAL_SPLITS = ("test", "val", "valid", "validation")
"""Held-out split names, in order of preference, beside a ``train`` folder."""

_ALIASES = {"cifar-10", "cifar-100", "stl-10", "fashionmnist"}


def held_out_split(dataset: str | Path, root: str | Path | None = None) -> str:
    """The split that plays ``"test"``: ``test`` for the named datasets and for folders that have
    one, else the first of :data:`EVAL_SPLITS` the folder holds (``"test"`` when none, so that
    loading it names the folders there are)."""
    key = str(dataset).lower().replace("_", "-")
    if key in DATASET_NAMES or key in _ALIASES:
        return "test"
    try:
        splits = list_splits(find_source(dataset))
    except (FileNotFoundError, ValueError, OSError):
        return "test"
    return next((split for split in EVAL_SPLITS if split in splits), "test")


def load_run_split(dataset: str | Path, split: str, root: str | Path | None = None, strict: bool = False) -> ImageSet:
    """``split`` (``"train"`` or ``"test"``) of ``dataset`` as 3-channel images; see the module docstring."""
    if split == "test":
        split = held_out_split(dataset, root)
    return load_dataset(dataset, split, root=root, channels=ENCODER_CHANNELS, strict=strict)


def fixed_subset(data: ImageSet, count: int | None, seed: int) -> ImageSet:
    """A fixed random subset of ``count`` images (all of them when None or larger)."""
    if count is None or count >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:count])
