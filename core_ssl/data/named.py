"""Named datasets: CIFAR-10 (local zip or folder), Fashion-MNIST (idx files), torchvision's
loaders, and :func:`load_dataset`, the one entry point for a name or a path."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core_ssl.data.decode import _convert_channels, resize_images
from core_ssl.data.folders import load_image_folder
from core_ssl.data.imageset import ImageSet
from core_ssl.data.roots import DATA_ENV_VAR, data_root_for, resolve_data_root

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DATASET_NAMES = ("cifar10", "cifar100", "stl10", "fashion-mnist")


def load_cifar10(
    split: str = "train", root: str | Path | None = None, download: bool = False,
    cache_dir: str | Path | None = None, strict: bool = False,
) -> ImageSet:
    """CIFAR-10 (50,000 train / 10,000 test images of 3x32x32, 10 classes).

    Reads ``cifar10-jpeg.zip`` or a folder ``cifar10/`` (both ``<split>/<class>/<image>``) in
    the data root; else torchvision's ``cifar-10-batches-py`` there, downloaded first if
    ``download`` is set.
    """
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}")
    data_root = data_root_for(root, download)
    candidates = [data_root / "cifar10-jpeg.zip", data_root / "cifar10"]
    for candidate in candidates:
        if candidate.exists():
            return load_image_folder(candidate, split=split, cache_dir=cache_dir, strict=strict)
    if download or (data_root / "cifar-10-batches-py").is_dir():
        return load_torchvision("cifar10", split, data_root, download=download)
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {candidates[0]}, {candidates[1]}/ and torchvision's "
        f"{data_root / 'cifar-10-batches-py'}/. Point --data-root (or {DATA_ENV_VAR}) at the "
        "folder holding cifar10-jpeg.zip, or pass --download to fetch it with torchvision."
    )


def _idx_dtypes() -> dict[int, np.dtype]:
    return {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
            0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip


def read_idx(path: str | Path, expected_ndim: int | None = None) -> torch.Tensor:
    """Read an idx file (the MNIST format), gzipped or not, into a tensor.

    Layout: magic ``00 00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the
    values big-endian in row-major order.

    Raises:
        ValueError: naming the file, when the magic number is wrong, the number of dimensions
            is not ``expected_ndim``, or the data is truncated or has trailing bytes.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read idx file {path}: {err}") from err
    dtypes = _idx_dtypes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise ValueError(f"{path} is not an idx file: bad magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(f"{path} holds a {ndim}-d array, expected {expected_ndim}-d (magic {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = dtypes[raw[2]]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: shape {shape} needs {expected} data bytes, "
            f"found {len(raw) - header}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def load_fashion_mnist(
    split: str = "train", root: str | Path | None = None, download: bool = False
) -> ImageSet:
    """Fashion-MNIST (60,000 train / 10,000 test images of 1x28x28, 10 classes).

    Reads the four original idx files (``.gz`` or not) from ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``) when there, else from the data root (itself, its
    ``fashion-mnist/`` or torchvision's ``FashionMNIST/raw/``), else downloads with
    torchvision if ``download`` is set.
    """
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip
    if split not in stems:
        raise ValueError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    folders = [FASHION_MNIST_SYSTEM_DIR]
    try:
        data_root = resolve_data_root(root)
        folders += [data_root, data_root / "fashion-mnist", data_root / "FashionMNIST" / "raw"]
    except FileNotFoundError:
        pass
    image_stem, label_stem = stems[split]
    for folder in folders:
        for suffix in (".gz", ""):
            image_file, label_file = folder / (image_stem + suffix), folder / (label_stem + suffix)
            if image_file.is_file() and label_file.is_file():
                images, labels = read_idx(image_file, expected_ndim=3), read_idx(label_file, expected_ndim=1)
                if images.dtype != torch.uint8 or labels.dtype != torch.uint8 or len(images) != len(labels):
                    raise ValueError(
                        f"{image_file} ({images.dtype}, {tuple(images.shape)}) and {label_file} "
                        f"({labels.dtype}, {tuple(labels.shape)}) do not form a uint8 image/label pair"
                    )
                return ImageSet(images.unsqueeze(1), labels.long(), FASHION_MNIST_CLASSES)
    if download:
        return load_torchvision("fashion-mnist", split, root, download=True)
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files ({image_stem}[.gz], {label_stem}[.gz]) not found in: "
        f"{', '.join(map(str, folders))}. Install them with `apt-get install dataset-fashion-mnist`, "
        f"put them in the data root (--data-root / {DATA_ENV_VAR}), or pass --download."
    )


def load_torchvision(
    name: str, split: str = "train", root: str | Path | None = None, download: bool = False
) -> ImageSet:
    """Load ``cifar10``, ``cifar100``, ``stl10`` or ``fashion-mnist`` with torchvision's classes.

    ``root`` (default: the data root) holds torchvision's own layout. The numpy arrays the
    classes hold are converted to uint8 (N, C, H, W) in one copy, without a per-image loop.
    Splits: ``train``/``test``; STL-10 also ``unlabeled`` and ``train+unlabeled`` (label -1).
    """
    from torchvision import datasets  # deferred: importing the dataset classes is slow

    key = _canonical_name(name)
    splits = {"stl10": ("train", "test", "unlabeled", "train+unlabeled")}.get(key, ("train", "test"))
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown torchvision dataset {name!r}: use one of {', '.join(DATASET_NAMES)}")
    if split not in splits:
        raise ValueError(f"{key} has splits {', '.join(splits)}, not {split!r}")
    data_root = str(data_root_for(root, download))
    try:
        if key == "stl10":
            ds = datasets.STL10(data_root, split=split, download=download)
            images, labels = torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels)
        elif key == "fashion-mnist":
            ds = datasets.FashionMNIST(data_root, train=split == "train", download=download)
            images, labels = ds.data.unsqueeze(1), ds.targets
        else:
            cls = datasets.CIFAR10 if key == "cifar10" else datasets.CIFAR100
            ds = cls(data_root, train=split == "train", download=download)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # stored NHWC
            labels = torch.as_tensor(ds.targets)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{key} ({split}) not found in torchvision's layout under {data_root} ({err}); "
            "pass --download to fetch it (needs internet) or point --data-root at it."
        ) from err
    return ImageSet(images.to(torch.uint8).contiguous(), labels.long(), list(ds.classes))


def _canonical_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    aliases = {"cifar-10": "cifar10", "cifar-100": "cifar100", "stl-10": "stl10",
               "fashionmnist": "fashion-mnist"}  # fmt: skip
    return aliases.get(key, key)


def load_dataset(
    name_or_path: str | Path,
    split: str | None = "train",
    root: str | Path | None = None,
    download: bool = False,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    channels: int | None = None,
    strict: bool = False,
) -> ImageSet:
    """Load a named dataset (``cifar10``, ``cifar100``, ``stl10``, ``fashion-mnist``) or a
    folder / zip path (see :func:`load_image_folder`), optionally resized to ``size x size``
    and converted to ``channels`` (1 = grey, 3 = RGB: grey is replicated, RGB -> grey by luma).
    ``strict`` makes an unreadable image in a folder or zip an error instead of a warning."""
    key = _canonical_name(str(name_or_path)) if isinstance(name_or_path, str) else None
    if key in DATASET_NAMES:
        if split is None:
            raise ValueError(f"{key} needs a split, e.g. split='train'")
        if key == "cifar10":
            data = load_cifar10(split, root, download, cache_dir=cache_dir, strict=strict)
        elif key == "fashion-mnist":
            data = load_fashion_mnist(split, root, download)
        else:
            data = load_torchvision(key, split, root, download)
        images = data.images if channels is None else _convert_channels(data.images, channels).contiguous()
        images = images if size is None else resize_images(images, size)
        return data if images is data.images else replace(data, images=images)
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith(".zip")
    if looks_like_path or Path(text).exists():
        return load_image_folder(name_or_path, split=split, size=size, channels=channels, cache_dir=cache_dir,
                                 strict=strict)
    raise ValueError(
        f"unknown dataset {text!r}: use one of {', '.join(DATASET_NAMES)}, or a path to a "
        "folder or .zip archive laid out <split>/<class>/<image>"
    )
