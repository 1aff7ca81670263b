"""Transfer: a pre-trained encoder evaluated on datasets other than the one it learnt from.

A transfer dataset is given by name or path (:func:`load_transfer_data`):

- a named dataset with its own train/test split: ``cifar10``, ``cifar100``, ``stl10``,
  ``fashion-mnist``;
- ``catdog``: the 2,000 cat and dog photos of ``catdog-128.zip`` in the data root, split into
  train/test by a seeded, class-stratified fraction;
- a folder or ``.zip`` of one, laid out in any of the common ways:
  ``train/<class>/`` + ``val/<class>/`` (ImageNet and its subsets as shipped),
  ``train/`` + ``test/`` (or ``valid``/``validation``), or a single folder of class sub-folders
  (``<class>/<image>``) split by a seeded fraction. ``--eval-split`` picks the held-out split
  when there are several (``test`` is preferred to ``val``).

Every image is converted to the encoder's channels (grey replicated to RGB, or RGB to grey by
luma) and resized once, at load, to the encoder's input side (the run's ``image_size``): the
protocols then read ready uint8 tensors, never re-decoding or re-cropping full-size images.
The classes of the held-out split are matched to the training split's by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from core_ssl.data import (DATASET_NAMES, ImageSet, find_source, list_splits, load_dataset, load_image_folder,
                           resolve_data_root, split_by_fraction)
from vision_benchmarks.datasets import EVAL_SPLITS


CATDOG_FILE = "catdog-128.zip"


@dataclass
class TransferData:
    """A transfer dataset ready for the protocols: name, both splits and how they were made."""

    name: str
    train: ImageSet
    test: ImageSet
    layout: str

    @property
    def tag(self) -> str:
        """The name as a file-name-safe tag (``eval_transfer_<tag>.json``)."""
        return dataset_tag(self.name)


def dataset_tag(spec: str) -> str:
    """``fashion-mnist`` -> ``fashion-mnist``; ``/data/my photos.zip`` -> ``my-photos``."""
    stem = Path(spec).name if ("/" in spec or spec.endswith(".zip")) else spec
    stem = stem[:-4] if stem.lower().endswith(".zip") else stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "dataset"


def encoder_input_channels(network: nn.Module) -> int:
    """Input channels of the first convolution (or linear layer) of ``network``."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(f"cannot tell the input channels of {type(network).__name__}: it has no Conv2d")


def _align_classes(train: ImageSet, test: ImageSet, where: str) -> ImageSet:
    """``test`` relabelled to index ``train.classes`` (matched by name)."""
    if test.classes == train.classes:
        return test
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise ValueError(f"the held-out split of {where} has classes that training lacks: {', '.join(unknown)}; "
                         "both splits need the same class folders")
    mapping = torch.tensor([train.classes.index(name) for name in test.classes], dtype=torch.int64)
    return replace(test, labels=mapping[test.labels], classes=train.classes)


def load_transfer_data(spec: str, image_size: int, channels: int, root: str | Path | None = None,
                       test_fraction: float = 0.2, seed: int = 0, eval_split: str | None = None,
                       strict: bool = False) -> TransferData:
    """The train and test sets of ``spec`` (see the module docstring), uint8 images of
    ``channels x image_size x image_size``.

    Args:
        spec: a dataset name, ``catdog``, or a folder / zip path (also looked for in the data root).
        image_size: side every image is resized to at load (bicubic, antialiased).
        channels: 1 or 3, the encoder's input channels.
        test_fraction: share of every class held out when the source has no held-out split.
        seed: seed of that split.
        eval_split: the held-out split folder to use (default: the first of ``test``, ``val``,
            ``valid``, ``validation`` present).
        strict: an unreadable image is an error instead of being skipped with a warning.

    Raises:
        ValueError: naming the source, when a layout is not recognised or the classes differ.
    """
    key = spec.lower().replace("_", "-")
    load = dict(size=image_size, channels=channels, strict=strict)
    if key in DATASET_NAMES or key in ("cifar-10", "cifar-100", "stl-10", "fashionmnist"):
        train = load_dataset(spec, "train", root=root, **load)
        test = load_dataset(spec, "test", root=root, **load)
        return TransferData(key, train, _align_classes(train, test, spec), "train / test")
    if key == "catdog":
        path = resolve_data_root(root) / CATDOG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"catdog needs {CATDOG_FILE} in the data root ({path.parent}); "
                                    "point --data-root at the folder holding it")
        whole = load_image_folder(path, split=None, **load)
        whole = replace(whole, classes=["cat", "dog"])  # trainA = cats, trainB = dogs
        train, test = split_by_fraction(whole, test_fraction, seed)
        return TransferData("catdog", train, test, f"seeded split, {test_fraction:g} held out (seed {seed})")
    path = find_source(spec)
    splits = list_splits(path)
    if "train" in splits:
        held_out = eval_split or next((s for s in EVAL_SPLITS if s in splits), None)
        train = load_image_folder(path, split="train", **load)
        if held_out is None:
            train, test = split_by_fraction(train, test_fraction, seed)
            return TransferData(spec, train, test, f"train/ split, {test_fraction:g} held out (seed {seed})")
        if held_out not in splits:
            raise ValueError(f"--eval-split {held_out!r} is not in {path}; its folders are: {', '.join(splits)}")
        test = load_image_folder(path, split=held_out, **load)
        return TransferData(spec, train, _align_classes(train, test, str(path)), f"train / {held_out}")
    split_like = [s for s in splits if s.lower() in EVAL_SPLITS or s.lower() == "unlabeled"]
    if split_like:
        raise ValueError(f"{path} has {', '.join(split_like)} but no train/ folder: give a folder with train/ "
                         "beside it, or a single folder of class sub-folders")
    whole = load_image_folder(path, split=None, **load)
    if whole.num_classes < 2:
        raise ValueError(f"{path} holds {whole.num_classes} class folder(s); a classification needs at least 2")
    train, test = split_by_fraction(whole, test_fraction, seed)
    return TransferData(spec, train, test, f"class folders, {test_fraction:g} held out (seed {seed})")
