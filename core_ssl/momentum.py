"""Momentum machinery: EMA updates, momentum schedules, a key queue and a memory bank.

Used by MoCo (key encoder + queue), BYOL (EMA target with a cosine schedule), PIRL (memory
bank), CURL (momentum key encoder and SAC's target critic).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place, for every parameter: ``theta_target <- m * theta_target + (1 - m) * theta_online``.

    Floating-point buffers (BatchNorm running statistics) are averaged the same way; integer
    buffers (``num_batches_tracked``) are copied. ``m = 1`` leaves the target unchanged and
    ``m = 0`` copies the online network. Both modules must have the same structure. One fused
    ``_foreach_lerp_`` call per group, so the update costs one kernel launch, not one per tensor.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    if len(target_params) != len(online_params):
        raise ValueError(
            f"target has {len(target_params)} parameters but online has {len(online_params)}: "
            "build the target with momentum_copy(online)."
        )
    if target_params:
        torch._foreach_lerp_(target_params, [p.detach() for p in online_params], 1.0 - momentum)
    float_buffers = [(t, o) for t, o in zip(target.buffers(), online.buffers()) if t.is_floating_point()]
    if float_buffers:
        torch._foreach_lerp_([t for t, _ in float_buffers], [o for _, o in float_buffers], 1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        if not t.is_floating_point():
            t.copy_(o)


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen deep copy of ``online`` to serve as its EMA / momentum target."""
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target


class MomentumSchedule:
    """The momentum coefficient as a function of the training step.

    - ``constant``: ``m(k) = m0`` (MoCo: 0.999; CURL: 1 - tau).
    - ``cosine``: ``m(k) = 1 - (1 - m0) * (cos(pi * k / K) + 1) / 2`` rising from m0 at k = 0
      to 1 at k = K (BYOL: m0 = 0.996).
    """

    def __init__(self, base: float, total_steps: int | None = None, kind: str = "constant"):
        if kind not in ("constant", "cosine"):
            raise ValueError(f"momentum schedule must be 'constant' or 'cosine', got {kind!r}")
        if not 0.0 <= base <= 1.0:
            raise ValueError(f"base momentum must be in [0, 1], got {base}")
        if kind == "cosine" and not (total_steps and total_steps > 0):
            raise ValueError("a cosine momentum schedule needs total_steps > 0")
        self.base, self.total_steps, self.kind = base, total_steps, kind

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.base
        progress = min(max(step, 0), self.total_steps) / self.total_steps
        return 1.0 - (1.0 - self.base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class KeyQueue(nn.Module):
    """MoCo's FIFO queue of the most recent ``size`` keys, used as negatives.

    Stored as a buffer, so it moves with ``.to(device)`` and is saved in the state dict.
    Keys are L2-normalised on entry; it starts with random unit vectors, as in MoCo.
    """

    def __init__(self, dim: int, size: int = 65536, generator: torch.Generator | None = None):
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"queue size and dim must be positive, got size={size}, dim={dim}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest ``len(keys)`` entries by ``keys`` (wrapping around the end).

        Written as one ``index_copy_`` with indices computed on the device: no host sync.
        """
        if keys.dim() != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"keys must be (N, {self.keys.shape[1]}), got {tuple(keys.shape)}")
        n = keys.shape[0]
        if n > self.size:
            keys, n = keys[-self.size:], self.size
        index = (self.pointer + torch.arange(n, device=self.keys.device)) % self.size
        self.keys.index_copy_(0, index, F.normalize(keys.detach().to(self.keys.dtype), dim=1))
        self.pointer.copy_((self.pointer + n) % self.size)


class MemoryBank(nn.Module):
    """PIRL / InstDisc memory bank: one momentum-averaged unit vector per training image.

    ``update`` sets ``m_i <- normalize(mu * m_i + (1 - mu) * f_i)`` for the images in the
    batch (PIRL: mu = 0.5); ``sample`` draws rows uniformly as negatives.
    """

    def __init__(self, num_items: int, dim: int, momentum: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"memory-bank momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("bank", F.normalize(torch.randn(num_items, dim, generator=generator), dim=1))

    def __len__(self) -> int:
        return self.bank.shape[0]

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return self.bank[index]

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor) -> None:
        """Momentum-update the rows ``index`` (N,) with ``features`` (N, D)."""
        if features.shape != (index.shape[0], self.bank.shape[1]):
            raise ValueError(
                f"features must be ({index.shape[0]}, {self.bank.shape[1]}) for {index.shape[0]} "
                f"indices, got {tuple(features.shape)}"
            )
        mixed = self.momentum * self.bank[index] + (1 - self.momentum) * F.normalize(features.detach().float(), dim=1)
        self.bank.index_copy_(0, index, F.normalize(mixed, dim=1).to(self.bank.dtype))

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` rows drawn uniformly with replacement, as (num, D) negatives."""
        device = generator.device if generator is not None else self.bank.device
        index = torch.randint(len(self), (num,), generator=generator, device=device)
        return self.bank[index.to(self.bank.device)]
