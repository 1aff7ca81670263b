"""Batched image augmentations on tensors (B, C, H, W), on whatever device the batch is on.

Every function here works on a whole batch at once: no Python loop over samples, no host-device
synchronisation (with one documented exception: the colour-jitter order is read on the host, so
pass a CPU generator when the batch is on CUDA). Randomness comes from an optional
``torch.Generator``; all random parameters are drawn with it on *its* device and the small
parameter tensors are then moved to the batch's device, so a CPU generator seeds a CUDA batch
reproducibly. Without a generator the global RNG of the batch's device is used.

Contents:

- image policies: :class:`SimCLRAugment` (random resized crop + flip as one ``grid_sample``,
  colour jitter, grayscale, Gaussian blur, solarize, normalise) and the recipes
  :func:`simclr_augment`, :func:`byol_augment_pair`, :func:`mocov1_augment`,
  :func:`mocov2_augment`; :func:`standardize_images` (per-image, per-channel standardisation);
- pretext tasks: :func:`rotate_batch` (RotNet), :func:`maximal_hamming_permutations` and
  :func:`jigsaw_tiles` (Jigsaw), inpainting masks :func:`center_square_mask`,
  :func:`random_block_mask`, :func:`apply_mask`, and :func:`random_erasing`;
- reinforcement learning: :func:`random_crop` (CURL), :func:`random_shift` (DrQ) and
  :func:`center_crop`, any dtype (uint8 frame stacks stay uint8), one gather per batch.

Image policies take uint8 (0..255) or floating-point (0..1) input and return float32 in
[0, 1], or normalised by ``(x - mean) / std`` when a mean and std are given.

Why not kornia on the hot path: its functional colour ops and ``gaussian_blur2d`` give the
same values (the tests compare with them and with torchvision) but allocate many image-sized
temporaries, and on the CPU faulting in fresh memory dominates. CPU time at batch 512 of
32 px images, one thread: kornia ``adjust_hue`` 31 ms vs :func:`shift_hue` 2.6 ms,
``gaussian_blur2d`` (kernel 3) 16 ms vs :func:`gaussian_blur` 1.6 ms. So the colour ops here
work in place on few buffers; kornia's augmentation modules are avoided anyway, as they draw
from the global RNG.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SimCLRAugment",
    "apply_mask",
    "byol_augment_pair",
    "center_crop",
    "center_square_mask",
    "color_jitter",
    "gaussian_blur",
    "jigsaw_tiles",
    "maximal_hamming_permutations",
    "mocov1_augment",
    "mocov2_augment",
    "random_block_mask",
    "random_crop",
    "random_erasing",
    "random_shift",
    "resized_crop",
    "rgb_to_gray",
    "rotate_batch",
    "sample_crop_offsets",
    "sample_resized_crop_boxes",
    "shift_hue",
    "simclr_augment",
    "standardize_images",
    "to_float_image",
]

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


# --------------------------------------------------------------------------------------------
# Validation and random parameters
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Colour operations (float images in [0, 1])
# --------------------------------------------------------------------------------------------


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


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R 601, as PIL and kornia), shape (B, 1, H, W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.mul(r, 0.299).add_(g, alpha=0.587).add_(b, alpha=0.114)


def _per_sample(factor: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return factor.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _brightness_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place: x <- clamp(b x, 0, 1) (torchvision's brightness)."""
    return x.mul_(_per_sample(factor, x)).clamp_(0.0, 1.0)


def _contrast_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place: x <- clamp(c x + (1 - c) mean(gray(x)), 0, 1), mean over the image."""
    factor = _per_sample(factor, x)
    gray = rgb_to_gray(x) if x.shape[1] == 3 else x
    offset = gray.mean(dim=(1, 2, 3), keepdim=True).mul_(1.0 - factor)
    return x.mul_(factor).add_(offset).clamp_(0.0, 1.0)


def _saturation_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place: x <- clamp(s x + (1 - s) gray(x), 0, 1)."""
    factor = _per_sample(factor, x)
    offset = rgb_to_gray(x).mul_(1.0 - factor)
    return x.mul_(factor).add_(offset).clamp_(0.0, 1.0)


def shift_hue(x: torch.Tensor, shift: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate the HSV hue of RGB images in [0, 1] by ``shift`` turns per sample (shape (B,)).

    Same result as torchvision's ``adjust_hue`` (and kornia's ``adjust_hue`` with
    ``2 pi shift`` radians) without building an HSV image: with M = max(R, G, B),
    m = min(R, G, B), d = M - m and the hue h in sextants [0, 6),

        h' = (h + 6 shift) mod 6,
        R = m + d clamp(|h' - 3| - 1, 0, 1),  G = m + d clamp(2 - |h' - 2|, 0, 1),
        B = m + d clamp(2 - |h' - 4|, 0, 1),

    the closed form of HSV -> RGB with V = M and V S = d. Writes into ``out`` when given
    (``out=x`` is allowed), else returns a new tensor. Works on a handful of reused planes
    (fresh CPU memory is costly to fault in, so temporaries are kept few).
    """
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    # Sextant of the first maximal channel (R, then G, then B), as torchvision and kornia;
    # chosen with exact 0/1 lerps, which are much faster on the CPU than torch.where.
    red_max = torch.eq(r, maxc, out=torch.empty_like(maxc))
    green_max = torch.eq(g, maxc, out=torch.empty_like(maxc))
    delta = maxc.sub_(minc)
    # d clamped away from 0: a gray pixel has zero numerators below, so its hue is 0.
    inv_delta = delta.clamp_min(1e-12).reciprocal_()
    hue = torch.sub(r, g).mul_(inv_delta).add_(4.0)  # blue is the maximum
    scratch = torch.sub(b, r).mul_(inv_delta).add_(2.0)
    hue.lerp_(scratch, green_max)
    hue.lerp_(torch.sub(g, b, out=scratch).mul_(inv_delta), red_max)
    hue.add_(6.0 * _per_sample(shift, x).view(-1, 1, 1))  # now in [-4, 8): fold into [0, 6)
    hue.sub_(torch.mul(hue, 1.0 / 6.0, out=scratch).floor_().mul_(6.0))
    out = torch.empty_like(x) if out is None else out
    for channel, (center, rising) in enumerate(((3.0, True), (2.0, False), (4.0, False))):
        ramp = torch.sub(hue, center, out=scratch).abs_()
        ramp = ramp.sub_(1.0) if rising else ramp.neg_().add_(2.0)
        torch.addcmul(minc, delta, ramp.clamp_(0.0, 1.0), out=out[:, channel])
    return out


def color_jitter(x: torch.Tensor, brightness: torch.Tensor | None = None,
                 contrast: torch.Tensor | None = None, saturation: torch.Tensor | None = None,
                 hue: torch.Tensor | None = None,
                 order: Sequence[str] = JITTER_OPS, inplace: bool = False) -> torch.Tensor:
    """Colour jitter with given per-sample factors (each (B,) or None to skip), torchvision's rules.

    brightness b: x <- b x; contrast c: x <- c x + (1 - c) mean(gray(x));
    saturation s: x <- s x + (1 - s) gray(x); hue h (turns, |h| <= 0.5): HSV hue += h.
    Each step clamps to [0, 1]; the steps run in ``order``. Factors 1, 1, 1, 0 leave a sample
    unchanged. Saturation and hue need 3 channels and are skipped for 1-channel images.
    ``x`` must be float in [0, 1]; with ``inplace`` it is overwritten.
    """
    _check_batch(x)
    if not x.is_floating_point():
        raise ValueError(f"color_jitter needs a float image in [0, 1], got {x.dtype}; use to_float_image(x)")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"color_jitter needs 1 or 3 channels (gray or RGB), got {x.shape[1]}")
    if not inplace:
        x = x.clone()
    factors = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
    for op in order:
        if op not in factors:
            raise ValueError(f"unknown colour op {op!r} in order; use names from {JITTER_OPS}")
        factor = factors[op]
        if factor is None:
            continue
        if op == "brightness":
            _brightness_(x, factor)
        elif op == "contrast":
            _contrast_(x, factor)
        elif x.shape[1] == 3 and op == "saturation":
            _saturation_(x, factor)
        elif x.shape[1] == 3 and op == "hue":
            shift_hue(x, factor, out=x)
    return x


def _gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, shape (B, kernel_size), one row per sigma."""
    radius = torch.arange(kernel_size, device=sigma.device, dtype=torch.float32) - (kernel_size - 1) / 2
    taps = torch.exp(-radius.square() / (2.0 * sigma.float().view(-1, 1).square()))
    return taps / taps.sum(dim=1, keepdim=True)


_MAX_SHIFTED_KERNEL = 5  # up to this size, k shifted multiply-adds beat a grouped convolution


def _correlate_1d(y: torch.Tensor, taps: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """sum_j taps[:, j] * y.narrow(dim, j, size): a 1-D filter with one tap row per sample."""
    weights = taps.view(taps.shape[0], taps.shape[1], 1, 1, 1)
    out = y.narrow(dim, 0, size) * weights[:, 0]
    for j in range(1, taps.shape[1]):
        out.addcmul_(y.narrow(dim, j, size), weights[:, j])
    return out


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int,
                  apply: torch.Tensor | None = None) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (B,), reflect border.

    Equals ``kornia.filters.gaussian_blur2d(x, kernel_size, sigma[:, None].repeat(1, 2))``
    (to float rounding) but builds the kernels once for the batch and filters with shifted
    multiply-adds (small kernels) or two grouped convolutions. Samples whose ``apply`` flag is
    False get a delta kernel, which leaves them exactly unchanged.
    """
    _check_batch(x)
    B, C, H, W = x.shape
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
    pad = kernel_size // 2
    if pad >= min(H, W):
        raise ValueError(f"blur kernel {kernel_size} is too large for {H}x{W} images; use a kernel below "
                         f"{2 * min(H, W) - 1} or a smaller blur_kernel_frac")
    taps = _gaussian_kernels(sigma.to(x.device), kernel_size).to(x.dtype)
    if apply is not None:
        delta = torch.zeros_like(taps)
        delta[:, pad] = 1.0
        taps = torch.where(apply.to(x.device).view(-1, 1), taps, delta)
    if kernel_size <= _MAX_SHIFTED_KERNEL:
        y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        return _correlate_1d(_correlate_1d(y, taps, dim=3, size=W), taps, dim=2, size=H)
    taps = taps.repeat_interleave(C, dim=0)  # (B*C, k): one depthwise filter per image channel
    y = F.pad(x.reshape(1, B * C, H, W), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, taps.view(B * C, 1, 1, kernel_size), groups=B * C)
    y = F.conv2d(y, taps.view(B * C, 1, kernel_size, 1), groups=B * C)
    return y.view(B, C, H, W)


# --------------------------------------------------------------------------------------------
# Geometry: random resized crop + flip as one grid_sample
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The SimCLR family of policies
# --------------------------------------------------------------------------------------------


class SimCLRAugment(torch.nn.Module):
    """SimCLR's augmentation policy for a whole batch: crop + flip, colour, gray, blur, solarize.

    Per sample, independently: random resized crop to ``size`` (area fraction U(scale), aspect
    ratio log-U(ratio)) with a horizontal flip with probability ``flip_p``, both in one
    ``grid_sample``; with probability ``color_p``, colour jitter with factors
    b, c, s ~ U[max(0, 1 - k), 1 + k] for k = brightness, contrast, saturation (default
    0.8 * color_strength each) and hue shift ~ U[-hue, hue] turns (default 0.2 * color_strength),
    applied in a random order -- one order per batch, redrawn every call (torchvision draws one
    per image; the batch shares it so the ops stay whole-batch tensor ops); grayscale with
    probability ``grayscale_p``; Gaussian blur with probability ``blur_p``, sigma ~ U(blur_sigma),
    kernel side ``blur_kernel_frac * size`` made odd as SimCLR does (23 at 224, at least 3);
    solarize (x -> 1 - x where x >= 0.5) with probability ``solarize_p``; finally
    ``(x - mean) / std`` when both are given. With ``grayscale_first`` the grayscale step runs
    before the colour jitter (MoCo v1's order, :func:`mocov1_augment`), so a grayed image stays
    gray: hue and saturation leave gray pixels unchanged.

    A component with probability 0 (or ``crop=False``) is skipped entirely. Without the crop
    the images keep their size if it is already ``size``, else they are resized whole.
    Input uint8 (0..255) or float (0..1), (B, C, H, W) with C = 3 (C = 1 works with colour
    jitter reduced to brightness and contrast, and no grayscale). Output float32.
    """

    def __init__(self, size: int | Sequence[int], scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
                 color_strength: float = 0.5, color_p: float = 0.8, grayscale_p: float = 0.2,
                 blur_p: float = 0.5, blur_kernel_frac: float = 0.1,
                 blur_sigma: Sequence[float] = (0.1, 2.0), solarize_p: float = 0.0,
                 crop: bool = True, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, *, brightness: float | None = None,
                 contrast: float | None = None, saturation: float | None = None,
                 hue: float | None = None, grayscale_first: bool = False) -> None:
        super().__init__()
        self.size = _pair(size)
        self.grayscale_first = bool(grayscale_first)
        self.scale = _check_range(scale, "scale", 0.0, 1.0)
        self.ratio = _check_range(ratio, "ratio")
        self.crop = bool(crop)
        self.flip_p = _check_probability(flip_p, "flip_p")
        if color_strength < 0:
            raise ValueError(f"color_strength must be >= 0, got {color_strength}")
        strengths = {
            "brightness": 0.8 * color_strength if brightness is None else brightness,
            "contrast": 0.8 * color_strength if contrast is None else contrast,
            "saturation": 0.8 * color_strength if saturation is None else saturation,
            "hue": 0.2 * color_strength if hue is None else hue,
        }
        for name, value in strengths.items():
            if value < 0:
                raise ValueError(f"{name} jitter strength must be >= 0, got {value}")
        if strengths["hue"] > 0.5:
            raise ValueError(f"hue jitter is in turns and must be <= 0.5, got {strengths['hue']}")
        self.jitter_strengths = {k: float(v) for k, v in strengths.items()}
        self.color_p = _check_probability(color_p, "color_p")
        self.grayscale_p = _check_probability(grayscale_p, "grayscale_p")
        self.blur_p = _check_probability(blur_p, "blur_p")
        self.blur_sigma = _check_range(blur_sigma, "blur_sigma")
        if not 0.0 < blur_kernel_frac <= 1.0:
            raise ValueError(f"blur_kernel_frac must lie in (0, 1], got {blur_kernel_frac}")
        # SimCLR's rule: radius = int(frac * side) // 2, kernel = 2 radius + 1 (23 px at 224).
        self.blur_kernel = max(3, 2 * (int(blur_kernel_frac * min(self.size)) // 2) + 1)
        self.solarize_p = _check_probability(solarize_p, "solarize_p")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std to normalise, or neither")
        self.normalize = mean is not None
        if self.normalize:
            mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
            std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
            if mean_t.numel() != std_t.numel() or bool((std_t <= 0).any()):
                raise ValueError(f"mean and std need the same length and std > 0, got {mean} and {std}")
            self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    @property
    def jitter_ops(self) -> tuple[str, ...]:
        """The colour-jitter ops that can change an image (strength > 0 and color_p > 0)."""
        if self.color_p == 0:
            return ()
        return tuple(op for op in JITTER_OPS if self.jitter_strengths[op] > 0)

    def extra_repr(self) -> str:
        parts = [f"size={self.size}", f"crop={self.crop}", f"scale={self.scale}", f"flip_p={self.flip_p}",
                 f"color_p={self.color_p}", f"jitter={self.jitter_strengths}",
                 f"grayscale_p={self.grayscale_p}", f"grayscale_first={self.grayscale_first}", f"blur_p={self.blur_p}",
                 f"blur_kernel={self.blur_kernel}", f"solarize_p={self.solarize_p}",
                 f"normalize={self.normalize}"]
        return ", ".join(parts)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment the batch ``x`` (B, C, H, W); one independent draw per sample."""
        _check_batch(x)
        _check_image_dtype(x)
        B, C, H, W = x.shape
        if C not in (1, 3) and (self.jitter_ops or self.grayscale_p > 0):
            raise ValueError(f"colour jitter and grayscale need 1 or 3 channels, got {C}; "
                             "set color_p=0 and grayscale_p=0 for other images")
        if self.normalize and self.mean.numel() not in (1, C):
            raise ValueError(f"mean/std have {self.mean.numel()} values for {C}-channel images")
        device = x.device
        source = x
        x = self._geometry(to_float_image(x), generator)
        needs_more = bool(self.jitter_ops) or self.grayscale_p > 0 or self.blur_p > 0 \
            or self.solarize_p > 0 or self.normalize
        if needs_more and x.data_ptr() == source.data_ptr():
            x = x.clone()  # the steps below work in place; never overwrite the caller's tensor
        gray_step = self.grayscale_p > 0 and C == 3
        if gray_step and self.grayscale_first:
            x = self._grayscale(x, generator)
        if self.jitter_ops:
            x = self._jitter(x, generator)
        if gray_step and not self.grayscale_first:
            x = self._grayscale(x, generator)
        if self.blur_p > 0:
            u = _uniform((B, 2), generator, device)
            sigma = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * u[:, 0]
            x = gaussian_blur(x, sigma, self.blur_kernel, apply=u[:, 1] < self.blur_p)
        if self.solarize_p > 0:
            chosen = (_uniform((B,), generator, device) < self.solarize_p).view(B, 1, 1, 1)
            inverted = torch.ge(x, 0.5, out=torch.empty_like(x)).mul_(chosen)  # 0/1 per pixel
            x = x.lerp_(torch.rsub(x, 1.0), inverted)
        if self.normalize:
            x = x.sub_(self.mean.to(device)).div_(self.std.to(device))
        return x

    def _geometry(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        B, _, H, W = x.shape
        flip = _uniform((B,), generator, x.device) < self.flip_p if self.flip_p > 0 else None
        if self.crop:
            boxes = sample_resized_crop_boxes(B, H, W, self.scale, self.ratio, generator, x.device)
            return resized_crop(x, boxes, self.size, flip)
        if (H, W) != self.size:
            boxes = torch.tensor([[0.0, 0.0, H, W]], device=x.device).expand(B, 4)
            return resized_crop(x, boxes, self.size, flip)
        if flip is not None:
            return torch.where(flip.view(B, 1, 1, 1), x.flip(3), x)
        return x

    def _grayscale(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        B = x.shape[0]
        to_gray = (_uniform((B,), generator, x.device) < self.grayscale_p).view(B, 1, 1, 1).float()
        # x <- (1 - t) x + t gray(x) with t in {0, 1}: exact either way, and in place
        gray = rgb_to_gray(x).mul_(to_gray)
        return x.mul_(1.0 - to_gray).add_(gray)

    def _jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        B = x.shape[0]
        ops = self.jitter_ops
        u = _uniform((B, 1 + len(ops)), generator, x.device)
        applied = u[:, 0] < self.color_p
        factors = {}
        for column, op in enumerate(ops, start=1):
            k = self.jitter_strengths[op]
            if op == "hue":
                factors[op] = torch.where(applied, (2.0 * u[:, column] - 1.0) * k, 0.0)
            else:
                low = max(0.0, 1.0 - k)
                factors[op] = torch.where(applied, low + (1.0 + k - low) * u[:, column], 1.0)
        order = [ops[i] for i in _random_order(len(ops), generator)]
        return color_jitter(x, order=order, inplace=True, **factors)


def simclr_augment(size: int, color_strength: float = 0.5, blur: bool = False,
                   **overrides) -> SimCLRAugment:
    """SimCLR's recipe; the defaults are its CIFAR-10 settings (strength 0.5, no blur).

    Crop scale (0.08, 1), flip 0.5, jitter (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale 0.2,
    blur p 0.5 when ``blur`` (ImageNet: ``color_strength=1.0, blur=True``). ``overrides`` go
    to :class:`SimCLRAugment` (e.g. ``mean``, ``std``).
    """
    settings = dict(color_strength=color_strength, blur_p=0.5 if blur else 0.0)
    settings.update(overrides)
    return SimCLRAugment(size, **settings)


def byol_augment_pair(size: int, **overrides) -> tuple[SimCLRAugment, SimCLRAugment]:
    """BYOL's two asymmetric views (Grill et al. 2020, Table 6).

    Both: crop scale (0.08, 1), flip 0.5, jitter brightness 0.4, contrast 0.4, saturation 0.2,
    hue 0.1 with p 0.8, grayscale 0.2, blur sigma (0.1, 2). View 1: blur p 1.0, solarize 0;
    view 2: blur p 0.1, solarize p 0.2.
    """
    common = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, color_p=0.8,
                  grayscale_p=0.2, blur_sigma=(0.1, 2.0))
    common.update(overrides)
    view1 = SimCLRAugment(size, **{"blur_p": 1.0, "solarize_p": 0.0, **common})
    view2 = SimCLRAugment(size, **{"blur_p": 0.1, "solarize_p": 0.2, **common})
    return view1, view2


def mocov1_augment(size: int, **overrides) -> SimCLRAugment:
    """MoCo v1's policy (He et al. 2020; ``main_moco.py`` without ``--aug-plus``): crop scale
    (0.2, 1), grayscale p 0.2 *first*, then colour jitter (0.4, 0.4, 0.4, 0.4) always applied
    (torchvision's ``ColorJitter(0.4, 0.4, 0.4, 0.4)``: hue shift up to 0.4 turns), flip 0.5,
    no blur."""
    settings = dict(scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4,
                    color_p=1.0, grayscale_p=0.2, grayscale_first=True, blur_p=0.0)
    settings.update(overrides)
    return SimCLRAugment(size, **settings)


def mocov2_augment(size: int, **overrides) -> SimCLRAugment:
    """MoCo v2's policy: crop scale (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2,
    blur p 0.5 with sigma (0.1, 2), flip 0.5."""
    settings = dict(scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                    color_p=0.8, grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0))
    settings.update(overrides)
    return SimCLRAugment(size, **settings)


# --------------------------------------------------------------------------------------------
# Window gather: the vectorised crop behind random_crop, random_shift and jigsaw_tiles
# --------------------------------------------------------------------------------------------


def _gather_windows(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int,
                    out: torch.Tensor | None = None, images: torch.Tensor | None = None) -> torch.Tensor:
    """out[b, k] = x[i_b, :, top[b,k] : top[b,k]+height, left[b,k] : left[b,k]+width], (B, K, C, h, w).

    i_b = images[b] (default b). One ``index_select`` over the overlapping view of every
    ``width``-long run of the flat buffer (``unfold(0, width, 1)``, torch's
    ``view_as_windows``): each selected row is one contiguous image row segment, so the copy is
    a memcpy per row, for any dtype and device. Offsets must already be valid (callers check
    them). ``out``: a contiguous tensor of B K C h w elements and x's dtype to write into.
    """
    _, C, H, W = x.shape
    B, K = top.shape
    device = x.device
    flat_rows = x.contiguous().view(-1).unfold(0, width, 1)
    image = torch.arange(B, device=device) if images is None else images
    image_base = (image * (C * H * W)).view(B, 1, 1, 1)
    channel_base = torch.arange(C, device=device).mul_(H * W).view(1, 1, C, 1)
    rows = top.view(B, K, 1, 1) + torch.arange(height, device=device).view(1, 1, 1, height)
    start = image_base + channel_base + rows * W + left.view(B, K, 1, 1)
    if out is None:
        return flat_rows.index_select(0, start.view(-1)).view(B, K, C, height, width)
    torch.index_select(flat_rows, 0, start.view(-1), out=out.view(-1, width))
    return out.view(B, K, C, height, width)


# --------------------------------------------------------------------------------------------
# Reinforcement learning: random crop (CURL), random shift (DrQ), centre crop
# --------------------------------------------------------------------------------------------


def _check_crop(H: int, W: int, size: int) -> None:
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"crop size must be a positive int, got {size!r}")
    if size > H or size > W:
        raise ValueError(f"crop size {size} is larger than the {H}x{W} images; "
                         f"use size <= {min(H, W)} or render larger frames")


def sample_crop_offsets(batch: int, height: int, width: int, size: int,
                        generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop corners (top, left), each (B,) int64 uniform over all valid positions
    [0, height - size] and [0, width - size] (both ends included)."""
    _check_crop(height, width, size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    top = _randint(height - size + 1, (batch,), generator, device)
    left = _randint(width - size + 1, (batch,), generator, device)
    return top, left


def random_crop(x: torch.Tensor, size: int = 84, generator: torch.Generator | None = None,
                offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
                out: torch.Tensor | None = None, indices: torch.Tensor | None = None) -> torch.Tensor:
    """CURL's random crop: out[b] = x[b, :, top_b : top_b + size, left_b : left_b + size].

    One box per sample shared by all its channels (a stack of frames is cropped alike), any
    dtype (uint8 stays uint8), one gather for the batch. ``offsets`` = (top, left) from
    :func:`sample_crop_offsets` fixes the boxes (e.g. to crop obs and next_obs alike).
    ``indices`` (B,) crops ``x[indices]`` without building it: sample and crop a replay buffer's
    frames in one gather (then B = len(indices); they must lie in [0, len(x)), unchecked, as a
    check would synchronise the device). ``out``: a contiguous (B, C, size, size)
    tensor of x's dtype and device to write into; reusing one per stream saves faulting in
    fresh memory on every call (a large share of the cost of a CPU crop at batch 512).
    """
    _check_batch(x)
    N, C, H, W = x.shape
    _check_crop(H, W, size)
    if indices is not None:
        if indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"indices must be a 1-D integer tensor of rows of x, got "
                             f"{indices.dtype} {tuple(indices.shape)}")
        indices = indices.to(x.device, torch.int64)
    B = N if indices is None else indices.shape[0]
    if offsets is None:
        top, left = sample_crop_offsets(B, H, W, size, generator, x.device)
    else:
        top, left = (o.to(x.device, torch.int64) for o in offsets)
        if top.shape != (B,) or left.shape != (B,):
            raise ValueError(f"offsets must be two tensors of shape ({B},), got {tuple(top.shape)} "
                             f"and {tuple(left.shape)}")
    if out is not None and (out.shape != (B, C, size, size) or out.dtype != x.dtype
                            or out.device != x.device or not out.is_contiguous()):
        raise ValueError(f"out must be a contiguous {x.dtype} tensor of shape {(B, C, size, size)} "
                         f"on {x.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")
    crops = _gather_windows(x, top.view(B, 1), left.view(B, 1), size, size, out=out, images=indices)
    return crops.squeeze(1)


def _replicate_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad H and W by ``pad`` repeating the edge pixels, with plain concatenation (any dtype)."""
    x = torch.cat([x[..., :1].expand(-1, -1, -1, pad), x, x[..., -1:].expand(-1, -1, -1, pad)], dim=3)
    top, bottom = x[..., :1, :].expand(-1, -1, pad, -1), x[..., -1:, :].expand(-1, -1, pad, -1)
    return torch.cat([top, x, bottom], dim=2)


def random_shift(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's random shift: replicate-pad by ``pad``, then a random crop back to (H, W).

    Every sample moves by an integer shift in [-pad, pad] on each axis; any dtype.
    """
    _check_batch(x)
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative int, got {pad!r}")
    if pad == 0:
        return x.clone()
    B, _, H, W = x.shape
    padded = _replicate_pad(x, pad)
    top = _randint(2 * pad + 1, (B, 1), generator, x.device)
    left = _randint(2 * pad + 1, (B, 1), generator, x.device)
    return _gather_windows(padded, top, left, H, W).squeeze(1)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window, top = (H - size) // 2, left = (W - size) // 2 (a view)."""
    _check_batch(x)
    _, _, H, W = x.shape
    _check_crop(H, W, size)
    top, left = (H - size) // 2, (W - size) // 2
    return x[:, :, top:top + size, left:left + size]


# --------------------------------------------------------------------------------------------
# Pretext tasks: rotation, jigsaw, inpainting masks, erasing
# --------------------------------------------------------------------------------------------


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RotNet's batch: every image at 0, 90, 180 and 270 degrees.

    Returns images (4B, C, H, W), rotation-major (rows k B .. (k+1) B - 1 hold
    ``torch.rot90(x, k, dims=(2, 3))``, counter-clockwise), and labels (4B,) int64 = k.
    Images must be square.
    """
    _check_batch(x)
    B, _, H, W = x.shape
    if H != W:
        raise ValueError(f"rotate_batch needs square images to stack rotations, got {H}x{W}; "
                         "centre-crop them first, e.g. center_crop(x, min(H, W))")
    images = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=0)
    labels = torch.arange(4, device=x.device).repeat_interleave(B)
    return images, labels


def _all_permutations(n: int) -> np.ndarray:
    """All n! permutations of range(n) in lexicographic order, (n!, n) uint8."""
    count = math.factorial(n)
    flat = np.fromiter(itertools.chain.from_iterable(itertools.permutations(range(n))),
                       dtype=np.uint8, count=count * n)
    return flat.reshape(count, n)


HAMMING_RULES = ("average", "minimum")


def maximal_hamming_permutations(n: int = 100, grid: int = 9, seed: int = 0,
                                 rule: str = "average") -> torch.Tensor:
    """A set of ``n`` distinct permutations of range(grid) far apart in Hamming distance, (n, grid) int64.

    Greedy selection over all grid! permutations P-bar, started from one drawn at random (by
    ``seed``). With d(p, q) = #{k : p[k] != q[k]} and S the permutations chosen so far, each step
    adds the unchosen permutation p maximising

    - ``rule="average"``: sum_{q in S} d(p, q), the summed (equivalently, average) distance to
      the set -- Noroozi & Favaro (2016), Algorithm 1 ("maximal average Hamming distance"), the
      rule of their released permutation sets;
    - ``rule="minimum"``: min_{q in S} d(p, q), the max-min variant, which guarantees a larger
      minimum distance between any two permutations of the set.

    Ties go to the lexicographically first permutation. Deterministic for a seed. ``grid`` is
    the number of tiles (9 for a 3x3 puzzle), at most 10.
    """
    if rule not in HAMMING_RULES:
        raise ValueError(f"rule must be one of {HAMMING_RULES}, got {rule!r}")
    if not 2 <= grid <= 10:
        raise ValueError(f"grid (number of tiles) must lie in [2, 10], got {grid}")
    total = math.factorial(grid)
    if not 1 <= n <= total:
        raise ValueError(f"n must lie in [1, {total}] for {grid} tiles, got {n}")
    perms = _all_permutations(grid)
    columns = np.ascontiguousarray(perms.T)  # (grid, total): one contiguous row per position
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(total))]
    available = np.ones(total, dtype=bool)
    available[chosen[0]] = False
    # score[p]: summed (average rule) or minimum (max-min rule) distance of p to the chosen set
    score = np.zeros(total, dtype=np.int32) if rule == "average" else np.full(total, grid, dtype=np.int32)
    for _ in range(n - 1):
        last = perms[chosen[-1]]
        matches = np.zeros(total, dtype=np.int32)
        for position in range(grid):
            matches += columns[position] == last[position]
        if rule == "average":
            score += grid - matches
        else:
            np.minimum(score, grid - matches, out=score)
        pick = int(np.argmax(np.where(available, score, -1)))
        chosen.append(pick)
        available[pick] = False
    return torch.from_numpy(perms[chosen].astype(np.int64))


def jigsaw_tiles(x: torch.Tensor, permutations: torch.Tensor, grid: int = 3, tile_size: int | None = None,
                 jitter: bool = True, generator: torch.Generator | None = None,
                 perm_index: torch.Tensor | None = None,
                 offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Jigsaw puzzles: tiles (B, grid^2, C, t, t) and the permutation index (B,) int64.

    The image is split into grid x grid cells of (H // grid) x (W // grid) pixels, numbered
    row-major (cell c is at row c // grid, column c % grid; leftover pixels at the bottom and
    right are unused). From each cell a t x t tile is cut at an offset inside the cell, random
    per sample and cell when ``jitter`` (the gap between tiles), else centred. With
    p = permutations[perm_index[b]], **output tile k is cell p[k] of the input**.
    ``tile_size`` defaults to 64/75 of the cell (Noroozi & Favaro's 64 px tiles in 75 px cells).
    ``perm_index`` (B,) and ``offsets`` = (top, left), each (B, grid^2) in input cell order and
    relative to the cell corner, fix the random choices. One gather for the batch.
    """
    _check_batch(x)
    B, _, H, W = x.shape
    cell_h, cell_w = H // grid, W // grid
    if grid < 1 or cell_h < 1 or cell_w < 1:
        raise ValueError(f"cannot cut {H}x{W} images into a {grid}x{grid} grid")
    if permutations.dim() != 2 or permutations.shape[1] != grid * grid:
        raise ValueError(f"permutations must have shape (n, {grid * grid}) for a {grid}x{grid} grid, "
                         f"got {tuple(permutations.shape)}; build them with maximal_hamming_permutations")
    if tile_size is None:
        tile_size = max(1, min(cell_h, cell_w) * 64 // 75)
    if not 1 <= tile_size <= min(cell_h, cell_w):
        raise ValueError(f"tile_size must lie in [1, {min(cell_h, cell_w)}] (the cell size), got {tile_size}")
    cells = grid * grid
    device = x.device
    if perm_index is None:
        perm_index = _randint(permutations.shape[0], (B,), generator, device)
    perm_index = perm_index.to(device, torch.int64)
    if offsets is None:
        if jitter:
            u = _uniform((B, 2, cells), generator, device)
            top_in_cell = (u[:, 0] * (cell_h - tile_size + 1)).long().clamp_(max=cell_h - tile_size)
            left_in_cell = (u[:, 1] * (cell_w - tile_size + 1)).long().clamp_(max=cell_w - tile_size)
        else:
            top_in_cell = torch.full((B, cells), (cell_h - tile_size) // 2, device=device)
            left_in_cell = torch.full((B, cells), (cell_w - tile_size) // 2, device=device)
    else:
        top_in_cell, left_in_cell = (o.to(device, torch.int64) for o in offsets)
    source_cell = permutations.to(device, torch.int64)[perm_index]  # (B, cells): tile k <- cell p[k]
    top = (source_cell // grid) * cell_h + top_in_cell.gather(1, source_cell)
    left = (source_cell % grid) * cell_w + left_in_cell.gather(1, source_cell)
    return _gather_windows(x, top, left, tile_size, tile_size), perm_index


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
