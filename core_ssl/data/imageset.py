"""The in-memory labelled image set every loader returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch


@dataclass
class ImageSet:
    """A labelled image dataset held in memory.

    Attributes:
        images: uint8 tensor (N, C, H, W), contiguous.
        labels: int64 tensor (N,); ``labels[i]`` indexes ``classes`` (-1 marks unlabelled).
        classes: class names, ``classes[k]`` naming label ``k``.
        names: optional member names (relative to the folder read), one per image.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ImageSet.images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(
                f"ImageSet.labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}"
            )
        if self.names is not None and len(self.names) != len(self.images):
            raise ValueError(f"ImageSet.names has {len(self.names)} entries for {len(self.images)} images")
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64)
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (
            f"ImageSet({len(self)} images of {tuple(self.images.shape[1:])}, "
            f"{self.num_classes} classes, device={self.images.device})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageSet:
        """The images at ``indices`` (any int sequence or tensor), in that order, as a new set."""
        index = torch.as_tensor(indices, dtype=torch.int64, device=self.images.device)
        names = None if self.names is None else [self.names[i] for i in index.tolist()]
        return ImageSet(
            self.images.index_select(0, index),
            self.labels.index_select(0, index.to(self.labels.device)),
            self.classes,
            names,
        )

    def to(self, device: str | torch.device) -> ImageSet:
        """The same set with images and labels on ``device`` (e.g. the whole set on the GPU)."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))


def split_by_fraction(data: ImageSet, test_fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """A seeded, class-stratified train/test split of one labelled set.

    In every class of ``n`` images, ``round(test_fraction * n)`` (clamped to 1 .. n - 1 when
    n >= 2) chosen by ``randperm`` under ``torch.Generator().manual_seed(seed)`` go to the test
    part, the rest to the training part; both keep the original order. The same seed and data
    give the same split.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    test_index = []
    labels = data.labels.cpu()
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        count = round(test_fraction * len(members))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        test_index.append(members[torch.randperm(len(members), generator=generator)[:count]])
    is_test = torch.zeros(len(data), dtype=torch.bool)
    is_test[torch.cat(test_index)] = True
    return data.subset(torch.nonzero(~is_test).flatten()), data.subset(torch.nonzero(is_test).flatten())
