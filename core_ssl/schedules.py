"""Learning-rate schedules as ``LambdaLR`` multipliers of the base learning rate.

- :func:`warmup_cosine` (multiplier :func:`warmup_cosine_factor`): linear warm-up over ``warmup`` steps, then
  ``0.5 * (1 + cos(pi * progress))`` down to ``final_fraction`` (SimCLR, MoCo v2, BYOL).
- :func:`constant_then_linear_decay`: 1 for ``constant`` steps, then linearly to 0 over
  ``decay`` steps (CUT: 200 + 200 epochs, FastCUT: 150 + 50).
"""

from __future__ import annotations

import functools
import math

import torch


def warmup_cosine_factor(step: int, total_steps: int, warmup: int = 0, final_fraction: float = 0.0) -> float:
    """The multiplier at step k: (k + 1) / warmup for k < warmup, then
    f + (1 - f) * (1 + cos(pi p)) / 2 with p = (k - warmup) / (total_steps - warmup) clipped to
    [0, 1] and f = final_fraction."""
    if total_steps <= 0 or not 0 <= warmup < total_steps:
        raise ValueError(f"need 0 <= warmup < total_steps, got warmup={warmup}, total_steps={total_steps}")
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: int = 0,
                  final_fraction: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :func:`warmup_cosine_factor` as its multiplier."""
    warmup_cosine_factor(0, total_steps, warmup, final_fraction)  # validate now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(warmup_cosine_factor, total_steps=total_steps, warmup=warmup,
                                     final_fraction=final_fraction))


def constant_then_linear_decay(optimizer: torch.optim.Optimizer, constant: int, decay: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr(k) = base for k < constant, then base * (1 - (k - constant + 1) / (decay + 1)), never below 0.

    Counted in whatever unit ``scheduler.step()`` is called (CUT steps it once per epoch), the
    same rule as the official CUT code's ``linear`` policy.
    """
    if constant < 0 or decay < 0:
        raise ValueError(f"constant and decay must be >= 0, got {constant}, {decay}")

    def factor(step: int) -> float:
        return max(0.0, 1.0 - max(0, step - constant + 1) / float(decay + 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
