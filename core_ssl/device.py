"""Device selection and mixed precision: one place that decides where and how tensors run."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N`` into a ``torch.device``.

    ``auto`` picks CUDA when it is available and the CPU otherwise. Asking for CUDA on a
    machine without it is an error, not a silent fallback.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"--device {name} was requested but CUDA is not available on this machine; "
            "use --device cpu or --device auto."
        )
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from err


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on the given device, or a no-op context when disabled.

    bf16 keeps fp32's exponent range, so no loss scaling is needed. Losses are computed in
    fp32 by the loss functions themselves (they upcast their inputs).
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
