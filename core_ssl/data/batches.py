"""Shuffled, reproducible mini-batches over in-memory images (DDP-aware)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from core_ssl.data.imageset import ImageSet


def _epoch_seed(seed: int, epoch: int) -> int:
    """A per-epoch seed that differs for every (seed, epoch) pair in practice."""
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 1) % (2**63)


class BatchIterator:
    """Shuffled mini-batches over in-memory images, reproducible from a seed.

    Each pass yields ``(images, labels, indices)``: ``images`` uint8 (B, C, H, W) and
    ``labels`` int64 (B,) (None when there are none) and ``indices`` int64 (B,) (positions
    in the data), all on ``device``. Data held on the CPU is gathered there (into pinned
    memory when ``device`` is CUDA) and copied with one non-blocking transfer per tensor; data
    already on ``device`` is gathered in place.

    Pass ``k`` over the iterator uses epoch ``k`` (counted from :meth:`set_epoch`), whose order
    is ``randperm(N)`` under a generator seeded from ``(seed, epoch)``: the same seed and epoch
    give the same batches, so a resumed run calls ``set_epoch(epoch)`` and continues exactly.
    With ``world_size > 1`` each rank takes every ``world_size``-th position of the epoch's
    permutation (trimmed, or padded by wrapping when ``drop_last=False``), as
    ``DistributedSampler`` does.

    Example::

        batches = BatchIterator(load_cifar10("train"), batch_size=512, seed=0, device="cuda")
        for epoch in range(start_epoch, epochs):
            batches.set_epoch(epoch)
            for images, labels, indices in batches:
                ...
    """

    def __init__(
        self,
        data: ImageSet | torch.Tensor,
        batch_size: int,
        *,
        labels: torch.Tensor | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if isinstance(data, ImageSet):
            if labels is not None:
                raise TypeError("labels= is for plain tensors; an ImageSet brings its own")
            data, labels = data.images, data.labels
        if not isinstance(data, torch.Tensor) or data.ndim < 1:
            raise TypeError(
                f"data must be an ImageSet or a tensor with a batch dimension, got {type(data).__name__}"
            )
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"labels has {len(labels)} entries for {len(data)} images")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if seed is None:
            seed = 0 if generator is None else int(torch.randint(2**62, (1,), generator=generator))
        self.images = data
        self.labels = None if labels is None else labels.to(torch.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device) if device is not None else data.device
        self.epoch = 0
        per_rank = len(data) // world_size if drop_last else math.ceil(len(data) / world_size)
        self._per_rank = per_rank
        if len(self) == 0:
            raise ValueError(
                f"{len(data)} samples give no batch of {batch_size} per rank with drop_last=True"
            )

    def __len__(self) -> int:
        """Batches per epoch (on this rank)."""
        if self.drop_last:
            return self._per_rank // self.batch_size
        return math.ceil(self._per_rank / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``'s order (later passes count up from it)."""
        self.epoch = epoch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The positions this rank visits in ``epoch``, in order (CPU int64)."""
        n = len(self.images)
        if self.shuffle:
            generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self._per_rank * self.world_size
        if total > n:  # pad by wrapping so that every rank gets as many samples
            order = torch.cat([order, order[: total - n]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = self.epoch_order(epoch).to(self.images.device)
        for b in range(len(self)):
            yield self._gather(order[b * self.batch_size : (b + 1) * self.batch_size])

    def _gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        if self.images.device == self.device or self.images.device.type != "cpu":
            images = self.images.index_select(0, index).to(self.device)
            labels = None if self.labels is None else self.labels[index.to(self.labels.device)]
            return images, None if labels is None else labels.to(self.device), index.to(self.device)
        # CPU data for another device: gather straight into (pinned) host buffers, then copy.
        pin = self.device.type == "cuda"
        images = torch.empty((len(index), *self.images.shape[1:]), dtype=self.images.dtype, pin_memory=pin)
        torch.index_select(self.images, 0, index, out=images)
        rows = 1 if self.labels is None else 2  # indices and labels travel as one tensor
        meta = torch.empty((rows, len(index)), dtype=torch.int64, pin_memory=pin)
        meta[0] = index
        if self.labels is not None:
            torch.index_select(self.labels, 0, index, out=meta[1])
        images = images.to(self.device, non_blocking=pin)
        meta = meta.to(self.device, non_blocking=pin)
        return images, (None if self.labels is None else meta[1]), meta[0]
