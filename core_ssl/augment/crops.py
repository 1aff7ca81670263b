"""Crops for reinforcement learning: random crop (CURL), random shift (DrQ), centre crop.

Any dtype (uint8 frame stacks stay uint8), one gather for the whole batch: the window gather
:func:`gather_windows` also cuts the Jigsaw tiles.
"""

from __future__ import annotations

import torch

from core_ssl.augment._common import _check_batch, _randint
from core_ssl.augment.backends import check_backend, resolve_backend


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
                out: torch.Tensor | None = None, indices: torch.Tensor | None = None,
                backend: str = "auto") -> torch.Tensor:
    """CURL's random crop: out[b] = x[b, :, top_b : top_b + size, left_b : left_b + size].

    One box per sample shared by all its channels (a stack of frames is cropped alike), any
    dtype (uint8 stays uint8), one gather for the batch. ``offsets`` = (top, left) from
    :func:`sample_crop_offsets` fixes the boxes (e.g. to crop obs and next_obs alike).
    ``indices`` (B,) crops ``x[indices]`` without building it: sample and crop a replay buffer's
    frames in one gather (then B = len(indices); they must lie in [0, len(x)), unchecked, as a
    check would synchronise the device). ``out``: a contiguous (B, C, size, size)
    tensor of x's dtype and device to write into; reusing one per stream saves faulting in
    fresh memory on every call (a large share of the cost of a CPU crop at batch 512).
    ``backend``: ``"kornia"`` draws the boxes with kornia's ``RandomCrop`` and cuts them with
    ``crop_by_indices`` (same distribution, one slice per sample; ``indices`` then gathers
    ``x[indices]`` first), ``"native"`` as above, ``"auto"`` the device's default
    (:mod:`core_ssl.augment.backends`).
    """
    _check_batch(x)
    backend = check_backend(backend)
    N, C, H, W = x.shape
    _check_crop(H, W, size)
    if indices is not None:
        if indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"indices must be a 1-D integer tensor of rows of x, got "
                             f"{indices.dtype} {tuple(indices.shape)}")
        indices = indices.to(x.device, torch.int64)
    B = N if indices is None else indices.shape[0]
    if offsets is not None:
        offsets = tuple(o.to(x.device, torch.int64) for o in offsets)
        if offsets[0].shape != (B,) or offsets[1].shape != (B,):
            raise ValueError(f"offsets must be two tensors of shape ({B},), got {tuple(offsets[0].shape)} "
                             f"and {tuple(offsets[1].shape)}")
    if out is not None and (out.shape != (B, C, size, size) or out.dtype != x.dtype
                            or out.device != x.device or not out.is_contiguous()):
        raise ValueError(f"out must be a contiguous {x.dtype} tensor of shape {(B, C, size, size)} "
                         f"on {x.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")
    if resolve_backend(backend, x.device) == "kornia":
        from core_ssl.augment import kornia_backend

        return kornia_backend.random_crop(x, size, generator, offsets, out, indices)
    if offsets is None:
        top, left = sample_crop_offsets(B, H, W, size, generator, x.device)
    else:
        top, left = offsets
    crops = _gather_windows(x, top.view(B, 1), left.view(B, 1), size, size, out=out, images=indices)
    return crops.squeeze(1)


def _replicate_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad H and W by ``pad`` repeating the edge pixels, with plain concatenation (any dtype)."""
    x = torch.cat([x[..., :1].expand(-1, -1, -1, pad), x, x[..., -1:].expand(-1, -1, -1, pad)], dim=3)
    top, bottom = x[..., :1, :].expand(-1, -1, pad, -1), x[..., -1:, :].expand(-1, -1, pad, -1)
    return torch.cat([top, x, bottom], dim=2)


def random_shift(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None,
                 backend: str = "auto") -> torch.Tensor:
    """DrQ's random shift: replicate-pad by ``pad``, then a random crop back to (H, W).

    Every sample moves by an integer shift in [-pad, pad] on each axis, uniform over the
    (2 pad + 1)^2 shifts; any dtype. ``backend`` as :func:`random_crop` (kornia's
    ``RandomCrop`` out of the same padded batch).
    """
    _check_batch(x)
    backend = check_backend(backend)
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative int, got {pad!r}")
    if pad == 0:
        return x.clone()
    B, _, H, W = x.shape
    padded = _replicate_pad(x, pad)
    if resolve_backend(backend, x.device) == "kornia":
        from core_ssl.augment import kornia_backend

        return kornia_backend.random_shift(padded, H, W, generator)
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
