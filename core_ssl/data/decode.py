"""Decoding image bytes into uint8 tensors, channel conversion and resizing."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

_RESIZE_CHUNK = 1024  # images resized per float32 chunk, to bound the temporary memory


@contextlib.contextmanager
def _quiet_torchvision_io() -> Iterator[None]:
    """Silence the deprecation notice torchvision 0.29 raises on every image-decoder call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        yield


def _decode_with_pil(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as img:
        gray = img.mode in ("1", "L", "LA", "I", "I;16", "F")
        array = np.asarray(img.convert("L" if gray else "RGB"))
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _decode_one(data: torch.Tensor, name: str, location: str) -> torch.Tensor:
    """One image as uint8 (C, H, W): torchvision's decoders first, then PIL."""
    try:
        with _quiet_torchvision_io():
            image = decode_image(data, mode=ImageReadMode.UNCHANGED)
    except (RuntimeError, ValueError):
        try:
            image = _decode_with_pil(data.numpy().tobytes())
        except Exception as err:  # PIL raises many types for bad files
            raise ValueError(f"cannot decode {name!r} in {location}: {err}") from err
    if image.ndim == 4:  # animated GIF: keep the first frame
        image = image[0]
    if image.dtype == torch.uint16:  # 16-bit PNG
        image = (image.to(torch.int32) // 257).to(torch.uint8)
    return image


def _decode_all(blobs: list[bytes], names: list[str], location: str) -> list[torch.Tensor]:
    """Decode every blob into a uint8 (C, H, W) tensor, channels as stored.

    JPEGs go through one batched ``decode_jpeg`` call: about twice as fast as PIL here, and
    neither threads nor a process pool beat it on two cores. If the batch fails, every image
    is decoded on its own so that the error names the culprit.
    """
    tensors = []
    for blob, name in zip(blobs, names):
        if not blob:
            raise ValueError(f"cannot decode {name!r} in {location}: the file is empty")
        tensors.append(torch.frombuffer(bytearray(blob), dtype=torch.uint8))
    decoded: list[torch.Tensor | None] = [None] * len(tensors)
    jpeg_index = [i for i, blob in enumerate(blobs) if blob[:3] == b"\xff\xd8\xff"]
    if jpeg_index:
        try:
            with _quiet_torchvision_io():
                batch = decode_jpeg([tensors[i] for i in jpeg_index], mode=ImageReadMode.UNCHANGED)
        except RuntimeError:
            batch = [None] * len(jpeg_index)
        for i, image in zip(jpeg_index, batch):
            decoded[i] = image
    return [
        image if image is not None else _decode_one(data, name, location)
        for image, data, name in zip(decoded, tensors, names)
    ]


def _convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, c, H, W) uint8 -> (B, channels, H, W): grey is repeated, alpha dropped, and RGB
    turned to grey by ITU-R 601 luma ``L = (299 R + 587 G + 114 B) / 1000`` (as PIL does)."""
    have = images.shape[1]
    if have == channels:
        return images
    if channels == 3:
        return images[:, :3] if have == 4 else images[:, :1].expand(-1, 3, -1, -1)
    if channels == 1:
        if have == 2:
            return images[:, :1]
        weights = torch.tensor([299, 587, 114], dtype=torch.int32, device=images.device)
        luma = (images[:, :3].to(torch.int32) * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
        return ((luma + 500) // 1000).to(torch.uint8)
    raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to (N, C, size, size): bicubic with antialiasing,
    rounded and clamped back to uint8. The aspect ratio is not kept."""
    if size <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out[start : start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _to_tensor(
    decoded: list[torch.Tensor], names: list[str], location: str,
    size: int | None, channels: int | None, allow_ragged: bool = False,
) -> torch.Tensor | list[torch.Tensor]:
    """Stack decoded images into one (N, C, H, W) uint8 tensor, shape group by shape group.

    ``channels=None`` keeps grey data grey (all images with 1 or 2 channels) and makes
    everything else RGB. Without ``size``, differing image sizes are an error (or, with
    ``allow_ragged``, give a list of (C, H, W) tensors).
    """
    if channels is None:
        channels = 1 if all(img.shape[0] in (1, 2) for img in decoded) else 3
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(decoded):
        groups.setdefault(tuple(img.shape), []).append(i)
    sizes = {shape[1:] for shape in groups}
    if size is None and len(sizes) > 1:
        if allow_ragged:
            return [_convert_channels(img[None], channels)[0] for img in decoded]
        a = 0
        b = next(i for i, img in enumerate(decoded) if img.shape[1:] != decoded[a].shape[1:])
        raise ValueError(
            f"images in {location} differ in size ({names[a]!r} is {tuple(decoded[a].shape[1:])}, "
            f"{names[b]!r} is {tuple(decoded[b].shape[1:])}); pass size=N to resize them all to N x N"
        )
    height, width = (size, size) if size is not None else next(iter(sizes))
    out = torch.empty((len(decoded), channels, height, width), dtype=torch.uint8)
    for index_list in groups.values():
        batch = _convert_channels(torch.stack([decoded[i] for i in index_list]), channels)
        if size is not None:
            batch = resize_images(batch, size)
        out[torch.tensor(index_list)] = batch
    return out
