"""Colour operations on float images in [0, 1]: luma, colour jitter (torchvision's rules),
hue rotation in closed form, and a separable per-sample Gaussian blur.

Why these are written by hand rather than taken from kornia's functional ops: kornia's
``adjust_hue`` and ``gaussian_blur2d`` give the same values (the tests compare with them and
with torchvision) but allocate many image-sized temporaries, and on the CPU faulting in fresh
memory dominates. CPU time at batch 512 of 32 px images, one thread: kornia ``adjust_hue``
31 ms vs :func:`shift_hue` 2.6 ms, ``gaussian_blur2d`` (kernel 3) 16 ms vs
:func:`gaussian_blur` 1.6 ms. So the colour ops here work in place on few buffers. (The
whole-policy comparison with kornia's augmentation modules is the ``kornia`` backend, see
:mod:`core_ssl.augment.backends`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from core_ssl.augment._common import _check_batch

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


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


SOBEL_KERNEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
"""The 3x3 horizontal Sobel kernel; its transpose is the vertical one."""


def sobel_magnitude(grey: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude ``sqrt(gx^2 + gy^2)`` of (N, 1, H, W) grey images, with replicate
    padding (same size out, in the input's dtype and device): the one Sobel filter of the
    toolkit (the SimCLR ``sobel`` view, the CUT content measure)."""
    if grey.dim() != 4 or grey.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W) grey images, got {tuple(grey.shape)}")
    horizontal = torch.tensor(SOBEL_KERNEL, dtype=grey.dtype, device=grey.device)
    kernels = torch.stack([horizontal, horizontal.T]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    return gradients.square().sum(1, keepdim=True).sqrt()
