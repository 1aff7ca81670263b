"""Random resized crop + flip as one ``grid_sample`` for the whole batch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from core_ssl.augment._common import _check_batch, _check_range, _pair, _uniform


def sample_resized_crop_boxes(batch: int, height: int, width: int,
                              scale: Sequence[float] = (0.08, 1.0),
                              ratio: Sequence[float] = (3 / 4, 4 / 3),
                              generator: torch.Generator | None = None,
                              device: torch.device | str | None = None,
                              attempts: int = 10) -> torch.Tensor:
    """Boxes (B, 4) = (top, left, box_height, box_width) in pixels (float), torchvision's rule.

    Per sample, up to ``attempts`` candidates: area = H W U(scale), aspect = exp(U(log ratio)),
    w = sqrt(area aspect), h = sqrt(area / aspect); the first that fits in the image is kept,
    else the whole image cropped to the nearest allowed aspect ratio. Offsets are uniform over
    the positions where the box fits. Boxes are continuous (not rounded to whole pixels).
    """
    scale = _check_range(scale, "scale", 0.0, 1.0)
    ratio = _check_range(ratio, "ratio")
    device = torch.device(device) if device is not None else torch.device("cpu")
    u = _uniform((batch, attempts, 2), generator, device)
    offsets = _uniform((batch, 2), generator, device)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    box_w = torch.sqrt(area * aspect)
    box_h = torch.sqrt(area / aspect)
    fits = (box_w <= width) & (box_h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting attempt, 0 if none
    box_w = box_w.gather(1, first).squeeze(1)
    box_h = box_h.gather(1, first).squeeze(1)
    # torchvision's fallback: the whole image, cut to the closest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = height * ratio[1], float(height)
    else:
        fallback_w, fallback_h = float(width), float(height)
    any_fit = fits.any(dim=1)
    box_w = torch.where(any_fit, box_w, torch.full_like(box_w, fallback_w))
    box_h = torch.where(any_fit, box_h, torch.full_like(box_h, fallback_h))
    top = offsets[:, 0] * (height - box_h)
    left = offsets[:, 1] * (width - box_w)
    return torch.stack([top, left, box_h, box_w], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int | Sequence[int],
                 flip: torch.Tensor | None = None, mode: str = "bilinear") -> torch.Tensor:
    """Crop each sample to its box (top, left, h, w) and resize to ``size``, in one grid_sample.

    The box maps to the output through the affine (normalised coordinates, align_corners=False)
    x_in = (w / W) x_out + (2 left + w) / W - 1 (likewise for y); a horizontal flip negates the
    x scale, so crop, resize and flip are one ``grid_sample`` for the batch. The affine has no
    rotation, so its grid is built from per-axis coordinates (equal to ``affine_grid``'s).
    Samples outside the image repeat the border pixel. Bilinear without antialiasing: strong
    downscaling aliases (as torchvision's tensor resize with antialias=False).
    Float input only (use :func:`to_float_image`); returns float of the same dtype.
    """
    _check_batch(x)
    if not x.is_floating_point():
        raise ValueError(f"resized_crop needs a float image, got {x.dtype}; use to_float_image(x) first")
    B, C, H, W = x.shape
    out_h, out_w = _pair(size)
    boxes = boxes.to(device=x.device, dtype=x.dtype)
    if boxes.shape != (B, 4):
        raise ValueError(f"boxes must have shape ({B}, 4) = (top, left, height, width), "
                         f"got {tuple(boxes.shape)}")
    top, left, box_h, box_w = boxes.unbind(1)
    scale_x = box_w / W
    if flip is not None:
        scale_x = torch.where(flip.to(x.device), -scale_x, scale_x)
    # The affine map is axis-aligned, so build the sampling grid from one row of x and one
    # column of y coordinates (what affine_grid computes, without its batched matmul).
    def pixel_centres(n: int) -> torch.Tensor:
        return (torch.arange(n, device=x.device, dtype=x.dtype) * 2.0 + 1.0) / n - 1.0

    grid_x = scale_x.view(B, 1) * pixel_centres(out_w) + ((2.0 * left + box_w) / W - 1.0).view(B, 1)
    grid_y = (box_h / H).view(B, 1) * pixel_centres(out_h) + ((2.0 * top + box_h) / H - 1.0).view(B, 1)
    grid = torch.stack([grid_x.view(B, 1, out_w).expand(B, out_h, out_w),
                        grid_y.view(B, out_h, 1).expand(B, out_h, out_w)], dim=3)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
