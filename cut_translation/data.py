"""Unpaired image data for translation: two domains, a training split and a held-out split.

The source is a folder or a zip archive holding ``trainA/`` and ``trainB/`` (inside a zip, one
top folder such as ``catdog/`` is stepped into), read with :func:`core_ssl.data.read_image_files`.
If ``testA/`` and ``testB/`` exist they are the held-out split; otherwise ``holdout`` images of
each domain are set aside at random (seeded), so FID is measured on images never trained on.

A class-pair spec ``SOURCE:CLASS_A,CLASS_B`` instead takes two classes of a labelled dataset laid
out ``{train,test}/<class>/`` (CIFAR-10's ``cifar10-jpeg.zip``): domain A is ``train/CLASS_A``,
domain B ``train/CLASS_B``, and the held-out split is their ``test/`` folders, e.g.
``cifar10-jpeg.zip:automobile,truck``.

Images are decoded once into uint8 tensors: the training images resized to ``load_size`` (CUT's
``resize_and_crop``: 286 for 256 crops, i.e. ``round(size * 286 / 256)``), the held-out images
to ``size``. :class:`UnpairedBatches` then draws batches with a random ``size`` crop and a random
horizontal flip per image, mapped to [-1, 1]. In the learning-rate decay epochs the batches are
resized to ``size`` instead of cropped, as the official code does (its dataset sets
``load_size = crop_size`` once ``epoch > n_epochs``). Domain B is drawn with replacement at
every step, domain A in shuffled order (the official ``UnalignedDataset``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from core_ssl.augment import random_crop
from core_ssl.data import find_source, open_zip, read_image_files, resize_images

__all__ = ["UnpairedData", "load_unpaired", "parse_data_spec", "default_load_size", "to_model_range", "to_uint8",
           "UnpairedBatches", "augment_batch"]


def default_load_size(size: int) -> int:
    """CUT's resize-before-crop size, ``round(size * 286 / 256)`` (286 for 256, 143 for 128)."""
    return int(round(size * 286 / 256))


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]: ``x / 127.5 - 1``."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]: ``round((x + 1) * 127.5)``, clamped."""
    return ((images.float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)


@dataclass
class UnpairedData:
    """Two image domains in memory, uint8 (N, C, H, W) each.

    Attributes:
        train_a, train_b: training images at ``load_size``.
        test_a, test_b: held-out images at ``size`` (never trained on; used for FID / KID).
        size, load_size: crop size and resize size of the training images.
        channels: 1 (grey) or 3 (colour), the same for both domains.
    """

    train_a: torch.Tensor
    train_b: torch.Tensor
    test_a: torch.Tensor
    test_b: torch.Tensor
    size: int
    load_size: int
    channels: int

    def __repr__(self) -> str:
        return (f"UnpairedData(train {len(self.train_a)} A + {len(self.train_b)} B at {self.load_size}px, "
                f"held out {len(self.test_a)} A + {len(self.test_b)} B at {self.size}px, {self.channels} channels)")


def parse_data_spec(source: str | Path) -> tuple[str, tuple[str, str] | None]:
    """Split ``SOURCE:CLASS_A,CLASS_B`` into ``(SOURCE, (CLASS_A, CLASS_B))``; any other string
    (a folder or zip with ``trainA/`` and ``trainB/``) is returned as ``(source, None)``."""
    text = str(source)
    head, sep, tail = text.rpartition(":")
    if not sep or "," not in tail or "/" in tail or "\\" in tail:
        return text, None
    classes = [name.strip() for name in tail.split(",")]
    if len(classes) != 2 or not all(classes) or classes[0] == classes[1]:
        raise ValueError(f"data spec {text!r}: after ':' give two different class names, e.g. "
                         "cifar10-jpeg.zip:automobile,truck")
    return head, (classes[0], classes[1])


def _has_folder(path: Path, name: str) -> bool:
    """Whether the folder or zip at ``path`` has a sub-folder ``name`` (a relative path such as
    ``trainA`` or ``train/horse``) at the top or one level down."""
    name = name.strip("/")
    if path.is_dir():
        return (path / name).is_dir() or any((child / name).is_dir() for child in path.iterdir() if child.is_dir())
    with open_zip(path) as archive:
        return any(member.startswith(name + "/") or member.split("/", 1)[-1].startswith(name + "/")
                   for member in archive.namelist())


def _class_folders(path: Path, split: str) -> list[str]:
    """The class folder names under ``split/`` of a folder or zip (for error messages)."""
    if path.is_dir():
        roots = [path / split] + [child / split for child in path.iterdir() if child.is_dir()]
        return sorted({d.name for root in roots if root.is_dir() for d in root.iterdir() if d.is_dir()})
    with open_zip(path) as archive:
        names = set()
        for member in archive.namelist():
            parts = member.split("/")
            for start in (0, 1):
                if len(parts) > start + 2 and parts[start] == split:
                    names.add(parts[start + 1])
        return sorted(names)


def _read_domain(path: Path, folder: str, channels: int | None, strict: bool = False) -> torch.Tensor | list[torch.Tensor]:
    return read_image_files(path, folder, size=None, channels=channels, strict=strict)[1]


def _resize(images: torch.Tensor | list[torch.Tensor], size: int) -> torch.Tensor:
    """Resize a (N, C, H, W) uint8 tensor or a list of (C, H, W) tensors to (N, C, size, size)."""
    if isinstance(images, torch.Tensor):
        return resize_images(images, size)
    return torch.cat([resize_images(image[None], size) for image in images])


def _to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 and channels == 3 else images


def load_unpaired(source: str | Path, size: int = 256, load_size: int | None = None, holdout: int = 200,
                  channels: int | None = None, seed: int = 0, strict: bool = False) -> UnpairedData:
    """Read ``trainA`` / ``trainB`` (and ``testA`` / ``testB`` when present) from a folder or zip.

    Args:
        source: folder or zip; a relative path is also looked for in the data root.
        size: training crop size and held-out image size; divisible by 4.
        load_size: resize size before the random crop (default :func:`default_load_size`).
        holdout: images per domain held out when there is no ``testA`` / ``testB``.
        channels: 1 or 3; None makes both domains colour unless both are grey.
        seed: seeds the held-out draw.
        strict: an unreadable image is an error (default: skipped with a warning naming it).

    Raises:
        FileNotFoundError: the source does not exist.
        ValueError: a domain folder is missing or empty, sizes are invalid, or ``holdout`` leaves
            no training image (the message says which and how to fix it).
    """
    if size % 4 or size < 32:
        raise ValueError(f"size must be divisible by 4 and at least 32 (the discriminator needs 32+ px), got {size}")
    load_size = default_load_size(size) if load_size is None else load_size
    if load_size < size:
        raise ValueError(f"load_size ({load_size}) must be >= size ({size}): the random crop is taken from it")
    source, classes = parse_data_spec(source)
    path = find_source(source)
    if classes is not None:
        folders = {"trainA": f"train/{classes[0]}", "trainB": f"train/{classes[1]}",
                   "testA": f"test/{classes[0]}", "testB": f"test/{classes[1]}"}
        for name, folder in folders.items():
            if not _has_folder(path, folder):
                raise ValueError(f"{path} has no {folder}/ folder for domain {name[-1]}; its {folder.split('/')[0]}/ "
                                 f"classes are: {', '.join(_class_folders(path, folder.split('/')[0])) or '(none)'}")
    else:
        folders = {name: name for name in ("trainA", "trainB", "testA", "testB")}
        for folder in ("trainA", "trainB"):
            if not _has_folder(path, folder):
                raise ValueError(
                    f"{path} has no {folder}/ folder; an unpaired dataset needs trainA/ (domain A, the input) and "
                    "trainB/ (domain B, the target), optionally testA/ and testB/ for evaluation, or give two "
                    "classes of a {train,test}/<class>/ dataset as SOURCE:CLASS_A,CLASS_B"
                )
    domains = {name: _read_domain(path, folders[name], channels, strict) for name in ("trainA", "trainB")}
    has_test = _has_folder(path, folders["testA"]) and _has_folder(path, folders["testB"])
    if has_test:
        domains.update({name: _read_domain(path, folders[name], channels, strict) for name in ("testA", "testB")})
    found_channels = {images.shape[1] if isinstance(images, torch.Tensor) else images[0].shape[0]
                      for images in domains.values()}
    channels = channels or (1 if found_channels == {1} else 3)

    generator = torch.Generator().manual_seed(seed)
    split = {}
    for domain in ("A", "B"):
        images = domains[f"train{domain}"]
        if has_test:
            train, test = images, domains[f"test{domain}"]
        else:
            count = len(images)
            if not 0 <= holdout < count:
                raise ValueError(
                    f"holdout={holdout} leaves no training image in train{domain}/ ({count} images); "
                    f"use --holdout below {count}, or add testA/ and testB/ folders"
                )
            order = torch.randperm(count, generator=generator).tolist()
            pick = (lambda idx: images[idx] if isinstance(images, torch.Tensor) else [images[i] for i in idx])
            test, train = pick(order[:holdout]), pick(order[holdout:])
        split[f"train_{domain.lower()}"] = _to_channels(_resize(train, load_size), channels)
        split[f"test_{domain.lower()}"] = (_to_channels(_resize(test, size), channels) if len(test)
                                           else torch.empty(0, channels, size, size, dtype=torch.uint8))
    return UnpairedData(**split, size=size, load_size=load_size, channels=channels)


def augment_batch(images: torch.Tensor, size: int, generator: torch.Generator | None = None,
                  crop: bool = True) -> torch.Tensor:
    """uint8 (B, C, L, L) -> float (B, C, size, size) in [-1, 1]: a random ``size`` crop (or, with
    ``crop=False``, a bicubic resize to ``size``) and, with probability 1/2 per image, a
    horizontal flip."""
    cropped = random_crop(images, size, generator=generator) if crop else resize_images(images, size)
    flip = torch.rand(len(images), generator=generator) < 0.5
    cropped = torch.where(flip.view(-1, 1, 1, 1).to(cropped.device), cropped.flip(3), cropped)
    return to_model_range(cropped)


class UnpairedBatches:
    """Epochs of (domain-A, domain-B) training batches, each an independent random order.

    An epoch has ``max(N_A, N_B) // batch_size`` steps (CUT's dataset length). Domain A is
    shuffled each epoch (and cycled when it is the shorter one); domain B is drawn uniformly
    with replacement at every step, as the official ``UnalignedDataset`` does
    (``random.randint(0, B_size - 1)``). Batches are augmented with :func:`augment_batch` on the
    CPU and moved to ``device``.
    """

    def __init__(self, data: UnpairedData, batch_size: int = 1, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.device = data, batch_size, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = max(len(data.train_a), len(data.train_b)) // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size {batch_size} is larger than the training set")

    def _order(self, count: int) -> torch.Tensor:
        total = self.steps_per_epoch * self.batch_size
        repeats = -(-total // count)
        return torch.cat([torch.randperm(count, generator=self.generator) for _ in range(repeats)])[:total]

    def epoch(self, finetune: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``steps_per_epoch`` pairs of (B, C, size, size) float batches in [-1, 1].

        ``finetune=True`` (the learning-rate decay epochs) resizes instead of cropping."""
        order_a = self._order(len(self.data.train_a))
        order_b = torch.randint(len(self.data.train_b), (self.steps_per_epoch * self.batch_size,),
                                generator=self.generator)
        for step in range(self.steps_per_epoch):
            rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
            a = augment_batch(self.data.train_a[order_a[rows]], self.data.size, self.generator, not finetune)
            b = augment_batch(self.data.train_b[order_b[rows]], self.data.size, self.generator, not finetune)
            yield a.to(self.device, non_blocking=True), b.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
