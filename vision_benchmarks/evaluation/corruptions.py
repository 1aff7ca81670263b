"""Common corruptions in the CIFAR-10-C style, batched and seeded.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), define 15 (+4 extra) corruptions at 5 severities; their
``make_cifar_c.py`` (github.com/hendrycks/robustness, ``ImageNet-C/create_c/``) holds the
CIFAR-10 parameter tables used here. The reference code works image by image with numpy,
scikit-image, OpenCV and ImageMagick and draws from numpy's global generator; here every
corruption is a function of a whole uint8 batch (B, 3, H, W) on its device, drawing from one
``torch.Generator`` seeded by the caller, so a corrupted test set is reproducible from
``(seed, device)``:

    corrupted = corrupt(images, "fog", severity=3, seed=0)   # uint8 in, uint8 out

Arithmetic follows the reference: pixels to [0, 1], the corruption, clip to [0, 1], times 255,
truncated to uint8 as the reference's ``np.uint8`` does (in float64, with a 1e-6 allowance so
that round-off never turns an unchanged 200 into 199). JPEG and pixelate work on uint8 directly, as
PIL does in the reference. Definitions (c = the severity's parameter from the table):

- ``gaussian_noise``: x + N(0, c^2) per value.
- ``shot_noise``: Poisson(c x) / c.
- ``impulse_noise``: each value replaced with probability c by 0 or 1 (equally likely),
  scikit-image's ``random_noise(mode="s&p")``.
- ``speckle_noise``: x + x N(0, c^2).
- ``gaussian_blur``: Gaussian of sigma c per channel, radius round(4c), edge pixels repeated
  (scikit-image's ``gaussian``).
- ``defocus_blur``: a disk of radius r (pixels with i^2 + j^2 <= r^2), normalised, smoothed by
  a 3 x 3 Gaussian of sigma a (``cv2.GaussianBlur``), convolved with mirrored borders
  (``cv2.filter2D``'s reflect-101).
- ``motion_blur``: ImageMagick's ``MotionBlurImage(radius, sigma, angle)``: width 2 ceil(radius) + 1
  taps, weights exp(-i^2 / 2 sigma^2) normalised, tap i read at the offset
  (ceil(i cos t - 1/2), ceil(i sin t - 1/2)) with edge pixels repeated, t ~ U(-45, 45) degrees
  per image.
- ``brightness``: HSV value V -> min(V + c, 1), hue and saturation kept; since every RGB value
  is V times a function of (H, S), that is rgb * V' / V (grey V' where V = 0).
- ``contrast``: (x - m) c + m, m the per-channel mean of the image.
- ``saturate``: HSV saturation S -> clip(S c1 + c2, 0, 1), hue and value kept.
- ``fog``: x + c1 P over the image's maximum M: (x + c1 P) M / (M + c1), P a plasma fractal
  (diamond-square, wibble decay c2, normalised to [0, 1]) per image.
- ``jpeg_compression``: JPEG encoding at quality c and decoding (libjpeg through torchvision).
- ``pixelate``: PIL's BOX resize to int(c W) x int(c H) and back (the BOX filter's weights
  rebuilt exactly, each pass rounded to uint8 as PIL's 8-bit resampler does).

Not implemented: glass blur (a sequential pixel-swapping loop), zoom blur, elastic transform,
snow, frost (needs the reference's frost photographs) and spatter. The maintained
``imagecorruptions`` package was checked and not used: it ships ImageNet-C parameters, fails
with numpy 2 (fog: ``np.float_``) and scikit-image >= 0.19 (glass and Gaussian blur:
``multichannel``), and draws from numpy's global generator.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

SEVERITIES = (1, 2, 3, 4, 5)
_TRUNCATION_SLACK = 1e-6  # in 0..255 units: float64 round-off never turns 200 into 199.99..., 199


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``apply(images_uint8, parameter, generator) -> uint8`` and its table of
    five parameters (severity 1 .. 5, from ``make_cifar_c.py``)."""

    name: str
    apply: Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]
    parameters: tuple[Any, ...]
    family: str


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float64 in [0, 1] (the reference computes in float64; float32 would move about
    2% of the truncated values by one level)."""
    return images.to(torch.float64) / 255.0


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """clip(x, 0, 1) * 255 truncated to uint8 (the reference's ``np.uint8``)."""
    return (x.clamp(0.0, 1.0) * 255.0 + _TRUNCATION_SLACK).floor_().clamp_(0, 255).to(torch.uint8)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64) * (high - low) + low


# ---------------------------------------------------------------------------------- noise


def gaussian_noise(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    return _to_uint8(x + c * torch.randn(x.shape, generator=generator, device=x.device))


def shot_noise(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    return _to_uint8(torch.poisson(x * c, generator=generator) / c)


def impulse_noise(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    u = torch.rand(x.shape, generator=generator, device=x.device)
    x = torch.where(u < c / 2, torch.ones_like(x), x)
    return _to_uint8(torch.where((u >= c / 2) & (u < c), torch.zeros_like(x), x))


def speckle_noise(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    return _to_uint8(x + x * c * torch.randn(x.shape, generator=generator, device=x.device))


# ---------------------------------------------------------------------------------- blur


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, pad_mode: str) -> torch.Tensor:
    """Correlate every channel of (B, C, H, W) with a 2-D ``kernel`` (odd sides), padded by ``pad_mode``."""
    kh, kw = kernel.shape
    padded = F.pad(x.to(torch.float32), (kw // 2, kw // 2, kh // 2, kh // 2), mode=pad_mode)
    weight = kernel.to(padded).expand(x.shape[1], 1, kh, kw)  # float32: float64 convolutions are 20x slower
    return F.conv2d(padded, weight, groups=x.shape[1]).to(x.dtype)


def _gaussian_1d(sigma: float, radius: int) -> torch.Tensor:
    i = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    k = _gaussian_1d(c, int(4.0 * c + 0.5))
    return _to_uint8(_depthwise(_unit(images), torch.outer(k, k), "replicate"))


@lru_cache(maxsize=None)
def defocus_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's ``disk(radius, alias_blur)``: the aliased disk on a 17 x 17 grid (radius
    <= 8), normalised, smoothed by a 3 x 3 Gaussian of sigma ``alias_blur``; cropped to its
    non-zero support (float64, odd sides)."""
    half = 8 if radius <= 8 else math.ceil(radius)
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((grid[None, :] ** 2 + grid[:, None] ** 2) <= radius**2).to(torch.float64)
    disk /= disk.sum()
    g = _gaussian_1d(alias_blur, 1)
    smoothed = F.conv2d(F.pad(disk[None, None], (1, 1, 1, 1)), torch.outer(g, g)[None, None])[0, 0]
    rows = smoothed.abs().sum(1).nonzero().flatten()
    reach = int(max(half - rows.min(), rows.max() - half))
    return smoothed[half - reach : half + reach + 1, half - reach : half + reach + 1]


def defocus_blur(images: torch.Tensor, c: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    return _to_uint8(_depthwise(_unit(images), defocus_kernel(*c), "reflect"))


def motion_blur(images: torch.Tensor, c: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    radius, sigma = c
    x = _unit(images)
    batch, channels, height, width = x.shape
    taps = int(2 * math.ceil(radius) + 1)
    i = torch.arange(taps, dtype=torch.float64, device=x.device)
    weights = torch.exp(-(i**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    angle = torch.deg2rad(_uniform((batch,), -45.0, 45.0, generator).to(torch.float64))
    dx = torch.ceil(i[None] * torch.cos(angle)[:, None] - 0.5).long()  # (B, taps)
    dy = torch.ceil(i[None] * torch.sin(angle)[:, None] - 0.5).long()
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    flat = x.reshape(batch, channels, height * width)
    out = torch.zeros_like(flat)
    for t in range(taps):
        r = (rows + dy[:, t].view(batch, 1, 1)).clamp(0, height - 1)
        q = (cols + dx[:, t].view(batch, 1, 1)).clamp(0, width - 1)
        index = (r * width + q).view(batch, 1, height * width).expand(-1, channels, -1)
        out += weights[t] * flat.gather(2, index)
    return _to_uint8(out.view_as(x))


# ---------------------------------------------------------------------------------- colour


def brightness(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    value = x.amax(1, keepdim=True)
    new_value = (value + c).clamp(max=1.0)
    scaled = x * (new_value / value.clamp_min(1e-12))
    return _to_uint8(torch.where(value > 0, scaled, new_value.expand_as(x)))


def contrast(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return _to_uint8((x - mean) * c + mean)


def saturate(images: torch.Tensor, c: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    value = x.amax(1, keepdim=True)
    low = x.amin(1, keepdim=True)
    sat = torch.where(value > 0, (value - low) / value.clamp_min(1e-12), torch.zeros_like(value))
    new_sat = (sat * c[0] + c[1]).clamp(0.0, 1.0)
    # every channel is V (1 - S f(H)): V - x scales with S; a grey pixel has hue 0 (red), as in skimage
    coloured = value - (value - x) * (new_sat / sat.clamp_min(1e-12))
    red = torch.cat([value, value * (1 - new_sat), value * (1 - new_sat)], dim=1)
    return _to_uint8(torch.where(sat > 0, coloured, red))


def plasma_fractal(batch: int, mapsize: int, wibble_decay: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, mapsize, mapsize) diamond-square height maps in [0, 1], the reference's
    ``plasma_fractal`` (wrap-around neighbours, initial wibble 100 divided by ``wibble_decay``
    per level, each new point = mean of its 4 neighbours + wibble * U(-wibble, wibble))."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    device = generator.device
    heights = torch.zeros(batch, mapsize, mapsize, dtype=torch.float64, device=device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * _uniform(tuple(total.shape), -wibble, wibble, generator).to(torch.float64)

    while step >= 2:
        half = step // 2
        corners = heights[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        heights[:, half::step, half::step] = wibbled_mean(squares)
        centres = heights[:, half::step, half::step]
        corners = heights[:, 0::step, 0::step]
        heights[:, 0::step, half::step] = wibbled_mean(centres + centres.roll(1, dims=1)
                                                       + corners + corners.roll(-1, dims=2))
        heights[:, half::step, 0::step] = wibbled_mean(centres + centres.roll(1, dims=2)
                                                       + corners + corners.roll(-1, dims=1))
        step //= 2
        wibble /= wibble_decay
    heights -= heights.amin(dim=(1, 2), keepdim=True)
    return heights / heights.amax(dim=(1, 2), keepdim=True)


def fog(images: torch.Tensor, c: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    x = _unit(images)
    batch, _, height, width = x.shape
    mapsize = max(32, 1 << (max(height, width) - 1).bit_length())
    plasma = plasma_fractal(batch, mapsize, c[1], generator)[:, :height, :width]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return _to_uint8((x + c[0] * plasma[:, None]) * peak / (peak + c[0]))


# ---------------------------------------------------------------------------------- digital


def jpeg_compression(images: torch.Tensor, c: int, generator: torch.Generator) -> torch.Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 flags its image codecs as deprecated on every call
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        encoded = encode_jpeg(list(images.cpu()), quality=int(c))
        return torch.stack(decode_jpeg(encoded)).to(images.device)


@lru_cache(maxsize=None)
def pil_box_weights(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) weights of PIL's BOX resampling along one axis (``precompute_coeffs``
    in Pillow's Resample.c): output pixel o covers centre (o + 1/2) in_size / out_size, support
    1/2 max(scale, 1), and input pixel i weighs 1 when (i - centre + 1/2) / max(scale, 1) lies in
    (-1/2, 1/2], normalised per row."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        centre = (o + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        for i in range(lo, hi):
            t = (i - centre + 0.5) / filter_scale
            weights[o, i] = 1.0 if -0.5 < t <= 0.5 else 0.0
        weights[o] /= weights[o].sum()
    return weights


def box_resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (B, C, H, W) -> (B, C, height, width) as PIL's ``resize(..., Image.BOX)``:
    horizontal pass, rounded to uint8, then vertical pass, rounded."""
    x = images.to(torch.float64)
    horizontal = pil_box_weights(images.shape[-1], width).to(x.device)
    x = torch.floor(x @ horizontal.T + 0.5).clamp(0, 255)
    vertical = pil_box_weights(images.shape[-2], height).to(x.device)
    x = torch.floor(vertical @ x + 0.5).clamp(0, 255)
    return x.to(torch.uint8)


def pixelate(images: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    height, width = images.shape[-2:]
    small = box_resize(images, int(height * c), int(width * c))
    return box_resize(small, height, width)


# ---------------------------------------------------------------------------------- registry

CORRUPTIONS: dict[str, Corruption] = {
    corruption.name: corruption
    for corruption in [
        Corruption("gaussian_noise", gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10), "noise"),
        Corruption("shot_noise", shot_noise, (500, 250, 100, 75, 50), "noise"),
        Corruption("impulse_noise", impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07), "noise"),
        Corruption("defocus_blur", defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)), "blur"),
        Corruption("motion_blur", motion_blur, ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), "blur"),
        Corruption("fog", fog, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)), "weather"),
        Corruption("brightness", brightness, (0.05, 0.1, 0.15, 0.2, 0.3), "weather"),
        Corruption("contrast", contrast, (0.75, 0.5, 0.4, 0.3, 0.15), "digital"),
        Corruption("pixelate", pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), "digital"),
        Corruption("jpeg_compression", jpeg_compression, (80, 65, 58, 50, 40), "digital"),
        # the reference's four extra corruptions ("held-out" set), three of them here
        Corruption("speckle_noise", speckle_noise, (0.06, 0.1, 0.12, 0.16, 0.2), "extra"),
        Corruption("gaussian_blur", gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0), "extra"),
        Corruption("saturate", saturate, ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), "extra"),
    ]
}
"""Every corruption by name (the reference's function names)."""

BENCHMARK_CORRUPTIONS = tuple(name for name, c in CORRUPTIONS.items() if c.family != "extra")
"""The corruptions of the benchmark set (the 10 of the 15 CIFAR-10-C ones implemented here)."""


def corruption_names(spec: str = "all") -> list[str]:
    """``"all"`` -> the benchmark set; ``"every"`` -> also the extra ones; else a comma list,
    checked against the registry."""
    if spec == "all":
        return list(BENCHMARK_CORRUPTIONS)
    if spec == "every":
        return list(CORRUPTIONS)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown or not names:
        raise ValueError(f"unknown corruption(s) {unknown or spec!r}; known: {', '.join(CORRUPTIONS)}, all, every")
    return names


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``images`` uint8 (B, 3, H, W) corrupted by ``name`` at ``severity`` (1 .. 5), as uint8 of
    the same shape on the same device. Random draws come from a generator on the images' device
    seeded with ``seed``: the same (images, name, severity, seed, device) give the same output."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"corrupt expects uint8 RGB images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    corruption = CORRUPTIONS[name]
    generator = torch.Generator(device=images.device).manual_seed(seed)
    out = corruption.apply(images, corruption.parameters[severity - 1], generator)
    return out.contiguous()
