"""Image scaling and per-image standardisation (float32 out)."""

from __future__ import annotations

import torch

from core_ssl.augment._common import _check_batch, _check_image_dtype


def to_float_image(x: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) -> float32 x / 255; a float input is returned as float32 (no copy if it is)."""
    _check_batch(x)
    _check_image_dtype(x)
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def standardize_images(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Each image and channel to zero mean and unit variance over its pixels, float32.

    For every sample b and channel c of ``x`` (..., C, H, W) (uint8 is mapped to [0, 1] first)::

        y[b, c] = (x[b, c] - mean(x[b, c])) / std(x[b, c])   if std(x[b, c]) >= eps, else 0

    with the population std (no Bessel correction). A (nearly) flat plane carries no pattern
    and becomes 0, so the function is idempotent:
    ``standardize_images(standardize_images(x)) == standardize_images(x)`` up to rounding. Noroozi & Favaro normalise every Jigsaw tile this way, so
    brightness and contrast differences between tiles cannot give the puzzle away; a method
    trained on such inputs must see its evaluation images standardised the same way.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        raise ValueError(f"standardize_images needs (..., C, H, W) images, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    _check_image_dtype(x)
    x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
    std, mean = torch.std_mean(x, dim=(-2, -1), keepdim=True, correction=0)
    flat = std < eps
    return (x - mean).div_(std.clamp_min(eps)).masked_fill_(flat, 0.0)
