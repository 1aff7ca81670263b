"""Content preservation: how much of the input's structure survives in the translation.

CUT's claim has two halves: the output looks like domain B (FID, KID, the domain classifier)
*and* it keeps the input's content (PatchNCE's purpose). This module measures the second half
with the edge correlation of input and output, per image::

    g(x)      = luminance 0.299 R + 0.587 G + 0.114 B of the uint8 image, in [0, 1]
    E(x)      = sqrt( (S_h * g)^2 + (S_v * g)^2 )       Sobel gradient magnitude (replicate padding)
    content(x, y) = Pearson correlation over the pixels of E(x) and E(y)

It is 1 when the output has the input's edges up to an affine change of their strength (the
identity mapping, or a global colour / contrast change), about 0 for an unrelated image, and 0
by definition when either image is flat. A translator that redraws texture (fur, bark) loses
some of it legitimately, so the useful scale is set by two baselines on the held-out images:
the identity mapping (1, the ceiling) and "an unrelated B image" (``content(A_i, B_i)``, the
floor). The mean over the held-out images is reported with a percentile bootstrap interval
(``core_ssl.stats.bootstrap_interval``).
"""

from __future__ import annotations

import numpy as np
import torch

from core_ssl.augment import sobel_magnitude
from core_ssl.stats import Interval, bootstrap_interval

__all__ = ["LUMA", "edge_magnitude", "edge_correlation", "content_interval"]

LUMA = (0.299, 0.587, 0.114)


def edge_magnitude(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images (C = 1 or 3) -> (N, H, W) float64 Sobel gradient magnitude of
    their luminance in [0, 1]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (round translations with data.to_uint8 first), got {images.dtype}")
    x = images.to(torch.float64) / 255.0
    grey = x[:, :1] if x.shape[1] == 1 else sum(w * x[:, c:c + 1] for c, w in enumerate(LUMA))
    return sobel_magnitude(grey)[:, 0]


def edge_correlation(inputs: torch.Tensor, outputs: torch.Tensor) -> np.ndarray:
    """Per image, the Pearson correlation of the edge maps of ``inputs[i]`` and ``outputs[i]``
    (both uint8, same height and width; 0 where either edge map is constant)."""
    if len(inputs) != len(outputs) or inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"inputs {tuple(inputs.shape)} and outputs {tuple(outputs.shape)} must pair up image by "
                         "image at the same size")
    a = edge_magnitude(inputs).flatten(1)
    b = edge_magnitude(outputs).flatten(1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    correlation = torch.where(norm > 1e-12, (a * b).sum(1) / norm.clamp_min(1e-12), torch.zeros_like(norm))
    return correlation.clamp(-1.0, 1.0).numpy()


def content_interval(inputs: torch.Tensor, outputs: torch.Tensor, reps: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> Interval:
    """Mean edge correlation of the pairs, with a percentile bootstrap interval over the images."""
    return bootstrap_interval(edge_correlation(inputs, outputs), np.mean, reps=reps, confidence=confidence,
                              seed=seed)
