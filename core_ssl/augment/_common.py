"""Input checks and random draws shared by every augmentation module.

Random parameters are drawn with an optional ``torch.Generator`` on *its* device and then
moved to the batch's device, so a CPU generator seeds a CUDA batch reproducibly; without a
generator the global RNG of the batch's device is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _check_batch(x: object, name: str = "x") -> torch.Tensor:
    """Raise unless ``x`` is a 4-D tensor (B, C, H, W) with at least one pixel."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = " add a batch dimension with x.unsqueeze(0)" if x.dim() == 3 else ""
        raise ValueError(
            f"{name} must have shape (B, C, H, W), got {tuple(x.shape)} ({x.dim()}-D);{hint or ' reshape it'}"
        )
    if x.shape[-1] == 0 or x.shape[-2] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} has an empty channel or spatial dimension: shape {tuple(x.shape)}")
    return x


def _check_image_dtype(x: torch.Tensor, name: str = "x") -> None:
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(
            f"{name} must be uint8 (0..255) or floating point (0..1), got {x.dtype}; "
            "convert it with x.to(torch.uint8) or x.float() / max_value"
        )


def _check_probability(value: float, name: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {value}")
    return float(value)


def _check_range(value: Sequence[float], name: str, low: float = 0.0, high: float = math.inf,
                 low_inclusive: bool = False) -> tuple[float, float]:
    """Check ``value`` is an increasing pair inside (low, high] (or [low, high])."""
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (min, max), got {value!r}")
    a, b = float(value[0]), float(value[1])
    low_ok = a >= low if low_inclusive else a > low
    if not (low_ok and a <= b <= high):
        bracket = "[" if low_inclusive else "("
        raise ValueError(f"{name} must satisfy {low} {'<=' if low_inclusive else '<'} min <= max <= {high} "
                         f"(an interval {bracket}{low}, {high}]), got {value!r}")
    return a, b


def _sample_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 of ``shape``, drawn with ``generator`` on its device, returned on ``device``."""
    u = torch.rand(shape, generator=generator, device=_sample_device(generator, device))
    return u.to(device, non_blocking=True)


def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    """Integers uniform in [0, high) (int64), drawn like :func:`_uniform`."""
    r = torch.randint(high, shape, generator=generator, device=_sample_device(generator, device))
    return r.to(device, non_blocking=True)


def _random_order(n: int, generator: torch.Generator | None) -> list[int]:
    """A random permutation of range(n) on the host (one tiny device read for a CUDA generator)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=device).tolist()


def _pair(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"{name} must be a positive int or a pair of them (height, width), got {size!r}")
    return int(size[0]), int(size[1])
