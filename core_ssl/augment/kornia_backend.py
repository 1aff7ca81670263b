"""The ``kornia`` backend: the image policies and RL crops built from ``kornia.augmentation``.

A :class:`~core_ssl.augment.policies.SimCLRAugment` maps onto kornia's modules one to one
(:func:`build_policy`), in the native step order:

=====================  =========================================================================
native step            kornia module
=====================  =========================================================================
crop + flip            ``RandomResizedCrop(size, scale, ratio, cropping_mode="resample")`` (one
                       warp for the batch; the default ``"slice"`` mode resizes each sample
                       separately) then ``RandomHorizontalFlip(flip_p)``; without the crop,
                       ``Resize(size, align_corners=False)`` when the size differs
grayscale (first)      ``RandomGrayscale(grayscale_p)`` before the jitter (MoCo v1's order)
colour jitter          ``ColorJitter(b, c, s, h, p=color_p)``: torchvision's formulas and
                       ranges (b, c, s ~ U[max(0, 1 - k), 1 + k], hue ~ U[-h, h] turns), one
                       random order per call as the native policy; not ``ColorJiggle``, whose
                       factors follow kornia's own conventions
grayscale              ``RandomGrayscale(grayscale_p)`` (ITU-R 601 luma, as native)
blur                   ``RandomGaussianBlur(k, blur_sigma, p=blur_p)``, reflect border
solarize               ``RandomSolarize(thresholds=0, additions=0, p=solarize_p)``: threshold 0.5
normalise              ``Normalize(mean, std)``
=====================  =========================================================================

One convention is aligned: kornia's crop warp maps the centres of the box's corner pixels onto
the centres of the output's corner pixels, so a box of w pixels would span w - 1 pixel steps
where the native crop spans w (box edge to box edge, as torchvision's resize). The backend's
:class:`RandomResizedCropEdges` moves kornia's drawn corners to
x0' = x0 - 1/2 + w / (2 w_out), x1' = x0 - 1/2 + w (w_out - 1/2) / w_out (likewise for y), so
the same warp maps box edges onto output edges (reading outside the image repeats the border
pixel, as native, where kornia's module pads with zeros). What remains different: kornia rounds the box
sides to whole pixels (torchvision's rule; native boxes are continuous), which moves the mean
crop area by under 1% (tests/core_ssl/test_augment_kornia.py). 1-channel images get brightness
and contrast only and no grayscale, as native.

RL crops (``random_crop``, ``random_shift``): kornia's augmentation modules refuse uint8
input, and frame stacks stay uint8, so the kornia backend draws the boxes with
``RandomCrop.forward_parameters`` (offsets uniform over every valid position, as native) and
cuts them with ``kornia.geometry.transform.crop_by_indices``, the function ``RandomCrop`` itself
crops with in ``"slice"`` mode: one Python slice per sample, joined by one ``cat``. The random
shift pads by repeating the edge (the native concatenation, any dtype) and crops back the
same way.

Randomness: kornia draws from torch's global CPU RNG; every function here takes a
``torch.Generator`` and runs kornia under :func:`~core_ssl.augment.backends.generator_seeded_rng`,
so a generator makes the kornia backend reproducible and leaves the global RNG untouched.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.geometry.transform import crop_by_indices, crop_by_transform_mat
from torch import nn

from core_ssl.augment.backends import generator_seeded_rng


class RandomResizedCropEdges(K.RandomResizedCrop):
    """kornia's ``RandomResizedCrop`` whose warp maps the drawn box's pixel edges onto the
    output's edges (the native and torchvision convention) instead of its corner pixel centres
    onto the output's corner pixel centres, and repeats the border pixel where the warp reads
    up to half a pixel outside the image (kornia pads with zeros there); same draws (kornia's
    sampler, same RNG use), same single warp for the batch."""

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        params = super().generate_parameters(batch_shape)
        src = params["src"]
        out_h, out_w = self.flags["size"]
        x0, y0 = src[:, 0, 0], src[:, 0, 1]
        w, h = src[:, 1, 0] - x0 + 1, src[:, 3, 1] - y0 + 1
        left, right = x0 - 0.5 + w / (2 * out_w), x0 - 0.5 + w * (out_w - 0.5) / out_w
        top, bottom = y0 - 0.5 + h / (2 * out_h), y0 - 0.5 + h * (out_h - 0.5) / out_h
        params["src"] = torch.stack([torch.stack([left, top], 1), torch.stack([right, top], 1),
                                     torch.stack([right, bottom], 1), torch.stack([left, bottom], 1)], 1)
        return params

    def apply_transform(self, input: torch.Tensor, params: dict[str, torch.Tensor], flags: dict,
                        transform: torch.Tensor | None = None) -> torch.Tensor:
        return crop_by_transform_mat(input, transform[:, :2, :], flags["size"], mode="bilinear",
                                     padding_mode="border", align_corners=True)


def build_policy(policy, channels: int, resize: bool) -> nn.Sequential:
    """The kornia modules of ``policy`` (a ``SimCLRAugment``) for ``channels``-channel images,
    in the native step order (see the module docstring); steps with probability 0 are left out.
    ``resize``: without the crop, resize the images to ``policy.size`` (their size differs)."""
    steps: list[nn.Module] = []
    if policy.crop:
        steps.append(RandomResizedCropEdges(policy.size, scale=policy.scale, ratio=policy.ratio,
                                            cropping_mode="resample"))
    elif resize:
        steps.append(K.Resize(policy.size, align_corners=False))
    if policy.flip_p > 0:
        steps.append(K.RandomHorizontalFlip(p=policy.flip_p))
    gray = K.RandomGrayscale(p=policy.grayscale_p) if policy.grayscale_p > 0 and channels == 3 else None
    if gray is not None and policy.grayscale_first:
        steps.append(gray)
    ops = policy.jitter_ops
    if channels != 3:  # saturation and hue need colour (as native, which skips them)
        ops = tuple(op for op in ops if op in ("brightness", "contrast"))
    if ops:
        strengths = {op: (policy.jitter_strengths[op] if op in ops else 0.0)
                     for op in ("brightness", "contrast", "saturation", "hue")}
        steps.append(K.ColorJitter(**strengths, p=policy.color_p))
    if gray is not None and not policy.grayscale_first:
        steps.append(gray)
    if policy.blur_p > 0:
        kernel = policy.blur_kernel
        steps.append(K.RandomGaussianBlur((kernel, kernel), policy.blur_sigma, border_type="reflect",
                                          p=policy.blur_p))
    if policy.solarize_p > 0:
        steps.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=policy.solarize_p))
    if policy.normalize:
        steps.append(K.Normalize(mean=policy.mean.flatten().cpu(), std=policy.std.flatten().cpu()))
    return nn.Sequential(*steps)


def run_policy(pipeline: nn.Sequential, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``pipeline(x)`` for float images ``x`` in [0, 1], its draws seeded from ``generator``."""
    with generator_seeded_rng(generator):
        return pipeline(x)


def _crop_boxes(batch: int, height: int, width: int, crop_h: int, crop_w: int,
                generator: torch.Generator | None) -> torch.Tensor:
    """kornia's ``RandomCrop`` boxes (B, 4, 2) (corners x, y) over a (height, width) canvas."""
    with generator_seeded_rng(generator):
        return K.RandomCrop((crop_h, crop_w)).forward_parameters((batch, 1, height, width))["src"]


def _boxes_from_offsets(top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 4, 2) corner boxes (x, y: top-left, top-right, bottom-right, bottom-left) of
    ``size`` x ``size`` windows at (top, left)."""
    x0, y0 = left.cpu().float(), top.cpu().float()
    x1, y1 = x0 + size - 1, y0 + size - 1
    return torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
                        torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], dim=1)


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator | None = None,
                offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
                out: torch.Tensor | None = None, indices: torch.Tensor | None = None) -> torch.Tensor:
    """CURL's random crop on kornia: boxes from ``RandomCrop``'s sampler (or ``offsets``), cut by
    ``crop_by_indices``; any dtype. ``indices`` first gathers ``x[indices]`` (kornia crops rows
    of its input); ``out`` receives a copy. Arguments as :func:`core_ssl.augment.random_crop`,
    which has checked them."""
    if indices is not None:
        x = x.index_select(0, indices)
    B, _, H, W = x.shape
    if offsets is None:
        boxes = _crop_boxes(B, H, W, size, size, generator)
    else:
        boxes = _boxes_from_offsets(offsets[0], offsets[1], size)
    crops = crop_by_indices(x, boxes, (size, size))
    if out is None:
        return crops
    return out.copy_(crops)


def random_shift(padded: torch.Tensor, height: int, width: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's random shift on kornia: a ``RandomCrop`` of (height, width) out of the
    edge-padded batch ``padded`` (B, C, height + 2 pad, width + 2 pad), any dtype."""
    B, _, H, W = padded.shape
    boxes = _crop_boxes(B, H, W, height, width, generator)
    return crop_by_indices(padded, boxes, (height, width))
