"""The single transformations of SimCLR's augmentation ablation (Chen et al. 2020, Figure 5)
and their composition into the two views of a training step.

Each transformation is a module called as ``t(x, generator=None, backend=None)`` on a batch
(B, C, H, W), uint8 (0..255) or float in [0, 1], returning float32 in [0, 1] of the same size,
with an independent draw per image from ``generator`` (drawn on the generator's device, then
moved to the batch's; ``backend`` is passed on to the :class:`core_ssl.augment.SimCLRAugment`
ones, the others are native tensor ops):

==========  ===================================================================================
name        per image
==========  ===================================================================================
crop        random resized crop, area share U(0.08, 1), aspect ratio log-U(3/4, 4/3), resized back
            to the view size, then a horizontal flip with p 0.5 (SimCLR's "crop and resize")
cutout      one square of side ``round(0.5 * min(H, W))`` (16 px at 32: DeVries & Taylor's CIFAR-10
            setting) filled with mid-grey 0.5; its centre uniform over the pixels, the square
            clipped at the border
color       colour distortion of strength s (0.5, SimCLR's CIFAR-10 value): jitter brightness,
            contrast, saturation 0.8 s and hue 0.2 s with p 0.8, then grayscale with p 0.2
sobel       Sobel filtering: ``m = sqrt(gx^2 + gy^2)`` of the luma (3x3 Sobel kernels, replicated
            border), divided by the image's largest m (a flat image gives 0), on every channel
noise       Gaussian noise: ``clip(x + sigma * N(0, 1), 0, 1)`` with sigma ~ U(0, 0.1)
blur        Gaussian blur, sigma ~ U(0.1, 2.0), kernel 10% of the side made odd (3 at 32 px)
rotate      rotation by 90, 180 or 270 degrees counter-clockwise, each with probability 1/3
            (square images)
==========  ===================================================================================

:func:`view_policies` turns a spec ``"t1"`` or ``"t1,t2"`` into the policies of the two views:
with ``branches="one"`` (the paper's asymmetric setting) the first view is the image itself
and the second is ``t2(t1(x))``; with ``branches="both"`` both views are ``t2(t1(x))``, drawn
independently. The diagonal of the paper's grid is a single transformation.
"""

from __future__ import annotations

import torch
from torch import nn

from core_ssl.augment import SimCLRAugment, rgb_to_gray, sobel_magnitude, to_float_image
from core_ssl.cli import UsageError

TRANSFORM_NAMES = ("crop", "cutout", "color", "sobel", "noise", "blur", "rotate")
BRANCHES = ("one", "both")


def _draw(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
          normal: bool = False) -> torch.Tensor:
    """U[0, 1) (or N(0, 1)) samples from ``generator`` on its device, moved to ``device``."""
    where = generator.device if generator is not None else device
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=generator, device=where).to(device)


class Cutout(nn.Module):
    """Fill one square of side ``round(fraction * min(H, W))`` per image with ``fill``; its centre
    uniform over the pixels, the square clipped at the border (DeVries & Taylor 2017)."""

    def __init__(self, fraction: float = 0.5, fill: float = 0.5) -> None:
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"cutout fraction must lie in (0, 1], got {fraction}")
        self.fraction, self.fill = fraction, fill

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                backend: str | None = None) -> torch.Tensor:
        x = to_float_image(x)
        B, _, H, W = x.shape
        side = max(1, round(self.fraction * min(H, W)))
        u = _draw((B, 2), generator, x.device)
        top = (u[:, 0] * H).long().clamp_max(H - 1) - side // 2
        left = (u[:, 1] * W).long().clamp_max(W - 1) - side // 2
        rows = torch.arange(H, device=x.device).view(1, H, 1)
        cols = torch.arange(W, device=x.device).view(1, 1, W)
        inside = ((rows >= top.view(B, 1, 1)) & (rows < (top + side).view(B, 1, 1))
                  & (cols >= left.view(B, 1, 1)) & (cols < (left + side).view(B, 1, 1)))
        return x.masked_fill(inside.unsqueeze(1), self.fill)


class Sobel(nn.Module):
    """Sobel gradient magnitude of the luma, scaled by the image's maximum, on every channel."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                backend: str | None = None) -> torch.Tensor:
        x = to_float_image(x)
        B, C, H, W = x.shape
        gray = rgb_to_gray(x) if C == 3 else x.mean(1, keepdim=True)
        magnitude = sobel_magnitude(gray)
        peak = magnitude.amax(dim=(2, 3), keepdim=True)
        scaled = torch.where(peak > 1e-6, magnitude / peak.clamp_min(1e-6), torch.zeros_like(magnitude))
        return scaled.expand(B, C, H, W).contiguous()


class GaussianNoise(nn.Module):
    """``clip(x + sigma * N(0, 1), 0, 1)``, sigma ~ U(sigma_range) per image."""

    def __init__(self, sigma_range: tuple[float, float] = (0.0, 0.1)) -> None:
        super().__init__()
        low, high = sigma_range
        if not 0 <= low <= high:
            raise ValueError(f"noise sigma range must satisfy 0 <= low <= high, got {sigma_range}")
        self.sigma_range = (float(low), float(high))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                backend: str | None = None) -> torch.Tensor:
        x = to_float_image(x)
        B = x.shape[0]
        low, high = self.sigma_range
        sigma = (low + (high - low) * _draw((B,), generator, x.device)).view(B, 1, 1, 1)
        return (x + sigma * _draw(tuple(x.shape), generator, x.device, normal=True)).clamp_(0.0, 1.0)


class Rotate(nn.Module):
    """Rotation by k quarter turns counter-clockwise, k uniform in {1, 2, 3} per image."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                backend: str | None = None) -> torch.Tensor:
        x = to_float_image(x)
        B, _, H, W = x.shape
        if H != W:
            raise ValueError(f"rotate needs square images, got {H}x{W}")
        k = 1 + (_draw((B,), generator, x.device) * 3).long().clamp_max(2)
        out = torch.rot90(x, 3, dims=(2, 3))
        out = torch.where((k == 2).view(B, 1, 1, 1), torch.rot90(x, 2, dims=(2, 3)), out)
        return torch.where((k == 1).view(B, 1, 1, 1), torch.rot90(x, 1, dims=(2, 3)), out)


class _Policy(nn.Module):
    """A :class:`core_ssl.augment.SimCLRAugment` called with the transformation signature."""

    def __init__(self, policy: SimCLRAugment) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                backend: str | None = None) -> torch.Tensor:
        return self.policy(x, generator, backend=backend)


_NOTHING = dict(color_p=0.0, grayscale_p=0.0, blur_p=0.0)


def build_transform(name: str, size: int, color_strength: float = 0.5) -> nn.Module:
    """The transformation ``name`` (see the module docstring) for views of ``size`` pixels."""
    if name == "crop":
        return _Policy(SimCLRAugment(size, **_NOTHING))
    if name == "color":
        return _Policy(SimCLRAugment(size, crop=False, flip_p=0.0, color_strength=color_strength, color_p=0.8,
                                     grayscale_p=0.2, blur_p=0.0))
    if name == "blur":
        return _Policy(SimCLRAugment(size, crop=False, flip_p=0.0, color_p=0.0, grayscale_p=0.0, blur_p=1.0,
                                     blur_sigma=(0.1, 2.0)))
    simple = {"cutout": Cutout, "sobel": Sobel, "noise": GaussianNoise, "rotate": Rotate}
    if name not in simple:
        raise ValueError(f"unknown transformation {name!r}; choose from {', '.join(TRANSFORM_NAMES)}")
    return simple[name]()


class Compose(nn.Module):
    """The transformations in order, then (when the images are not ``size`` square already) a
    resize of the whole image to ``size``; with none, the image itself as float32."""

    def __init__(self, transforms: list[nn.Module], size: int) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.fit = SimCLRAugment(size, crop=False, flip_p=0.0, **_NOTHING)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                backend: str | None = None) -> torch.Tensor:
        x = to_float_image(x)
        for transform in self.transforms:
            x = transform(x, generator, backend)
        return self.fit(x, generator, backend=backend)


def parse_views(spec: str) -> list[str]:
    """``"crop,color"`` -> ``["crop", "color"]``: one or two known transformation names."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [n for n in names if n not in TRANSFORM_NAMES]
    if unknown or not 1 <= len(names) <= 2:
        raise UsageError(f"--views takes one or two of {', '.join(TRANSFORM_NAMES)} separated by a comma, got {spec!r}",
                         "give e.g. --views crop,color")
    return names


def view_policies(spec: str, size: int, branches: str = "one",
                  color_strength: float = 0.5) -> tuple[nn.Module, nn.Module]:
    """The policies of the first and second view for ``spec`` (see the module docstring)."""
    if branches not in BRANCHES:
        raise ValueError(f"branches must be one of {BRANCHES}, got {branches!r}")
    names = parse_views(spec)
    second = Compose([build_transform(n, size, color_strength) for n in names], size)
    if branches == "both":
        return second, second
    return Compose([], size), second


__all__ = ["BRANCHES", "TRANSFORM_NAMES", "Compose", "Cutout", "GaussianNoise", "Rotate", "Sobel",
           "build_transform", "parse_views", "view_policies"]
