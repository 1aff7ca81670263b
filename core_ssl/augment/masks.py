"""Masks for inpainting (Context Encoder's centre square and random blocks) and random erasing.

Native only: kornia has no counterpart of the block mask, and its ``RandomErasing`` draws a
different box distribution from torchvision's (aspect ratio from a mixture of two uniforms
instead of log-uniform, out-of-range boxes clamped instead of redrawn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from core_ssl.augment._common import _check_batch, _check_probability, _check_range, _randint, _uniform


def center_square_mask(batch: int, height: int, width: int, frac: float = 0.5,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Context Encoder's central mask: (B, 1, H, W) bool, True on the centred square of side
    round(frac * min(H, W)) (frac 0.5 hides a quarter of a square image)."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac (the square's side over the image side) must lie in [0, 1], got {frac}")
    side = int(round(frac * min(height, width)))
    top, left = (height - side) // 2, (width - side) // 2
    mask = torch.zeros(batch, 1, height, width, dtype=torch.bool, device=device)
    mask[:, :, top:top + side, left:left + side] = True
    return mask


def _expected_block_coverage(height: int, width: int, block: int, count: int) -> float:
    """Mean fraction of pixels covered by ``count`` independent uniformly placed blocks."""
    def hit_probability(length: int) -> np.ndarray:
        positions = length - block + 1
        idx = np.arange(length)
        return (np.minimum(idx, length - block) - np.maximum(0, idx - block + 1) + 1) / positions
    single = np.outer(hit_probability(height), hit_probability(width))
    return float(np.mean(1.0 - (1.0 - single) ** count))


def random_block_mask(batch: int, height: int, width: int, coverage: float = 0.25,
                      block: int | None = None, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Context Encoder's random-block mask: (B, 1, H, W) bool, True where pixels are hidden.

    Each sample gets the union of N possibly overlapping ``block`` x ``block`` squares at
    uniform positions inside the image (default side min(H, W) // 4), with N chosen so that
    the *expected* hidden fraction is closest to ``coverage`` (overlaps and borders included).
    """
    if not 0.0 <= coverage < 1.0:
        raise ValueError(f"coverage must lie in [0, 1), got {coverage}")
    block = max(1, min(height, width) // 4) if block is None else block
    if not 1 <= block <= min(height, width):
        raise ValueError(f"block must lie in [1, {min(height, width)}] for {height}x{width} images, "
                         f"got {block}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if coverage == 0.0:
        return torch.zeros(batch, 1, height, width, dtype=torch.bool, device=device)
    count, previous = 1, 0.0
    while (covered := _expected_block_coverage(height, width, block, count)) < coverage:
        count, previous = count + 1, covered
    if count > 1 and coverage - previous < covered - coverage:
        count -= 1
    top = _randint(height - block + 1, (batch, count, 1), generator, device)
    left = _randint(width - block + 1, (batch, count, 1), generator, device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_hit = ((rows >= top) & (rows < top + block)).float()  # (B, N, H)
    col_hit = ((cols >= left) & (cols < left + block)).float()  # (B, N, W)
    return (torch.bmm(row_hit.transpose(1, 2), col_hit) > 0).unsqueeze(1)


def apply_mask(x: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """x with the pixels where ``mask`` is True set to ``fill`` (in x's units); a new tensor.

    ``mask`` is bool (B, 1, H, W) (shared by the channels) or (B, C, H, W).
    """
    _check_batch(x)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool (True = hidden), got {mask.dtype}; use mask.bool()")
    B, C, H, W = x.shape
    if mask.dim() != 4 or mask.shape[0] != B or mask.shape[1] not in (1, C) or mask.shape[2:] != (H, W):
        raise ValueError(f"mask must have shape ({B}, 1 or {C}, {H}, {W}), got {tuple(mask.shape)}")
    return x.masked_fill(mask.to(x.device), fill)


def random_erasing(x: torch.Tensor, p: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                   ratio: Sequence[float] = (0.3, 3.3), generator: torch.Generator | None = None,
                   value: float = 0.0, attempts: int = 10) -> torch.Tensor:
    """torchvision's RandomErasing for a batch: with probability ``p`` per sample, fill one
    rectangle of area H W U(scale) and aspect log-U(ratio) (h = round(sqrt(area r)),
    w = round(sqrt(area / r)), first of ``attempts`` that fits strictly inside) with ``value``."""
    _check_batch(x)
    p = _check_probability(p, "p")
    scale = _check_range(scale, "scale", 0.0, 1.0)
    ratio = _check_range(ratio, "ratio")
    B, _, H, W = x.shape
    device = x.device
    u = _uniform((B, attempts, 4), generator, device)
    area = H * W * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    box_h = torch.sqrt(area * aspect).round().long()
    box_w = torch.sqrt(area / aspect).round().long()
    fits = (box_h < H) & (box_w < W) & (box_h > 0) & (box_w > 0)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(1, first).view(B, 1, 1)

    box_h, box_w = pick(box_h), pick(box_w)
    top = (pick(u[..., 2]) * (H - box_h + 1)).long()
    left = (pick(u[..., 3]) * (W - box_w + 1)).long()
    erase = fits.any(dim=1) & (_uniform((B,), generator, device) < p)
    rows = torch.arange(H, device=device).view(1, H, 1)
    cols = torch.arange(W, device=device).view(1, 1, W)
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
    return x.masked_fill((inside & erase.view(B, 1, 1)).unsqueeze(1), value)
