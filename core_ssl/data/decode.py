"""Decoding image bytes into uint8 tensors, channel conversion and resizing."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

_RESIZE_CHUNK = 1024  # images resized per float32 chunk, to bound the temporary memory


@contextlib.contextmanager
def _quiet_torchvision_io() -> Iterator[None]:
    """Silence the deprecation notice torchvision 0.29 raises on every image-decoder call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        yield


class CorruptImageWarning(UserWarning):
    """Unreadable images were skipped while loading a folder or archive (the message names them)."""


def scale_16bit(values: torch.Tensor | np.ndarray) -> torch.Tensor:
    """16-bit samples (0..65535) -> uint8 by ``round(v / 257)``: 0 -> 0, 65535 -> 255, and every
    8-bit value stored as 16 bits (``v = 257 k``) maps back to ``k`` exactly. Computed in
    integers as ``(2 v + 257) // 514`` (= floor(v / 257 + 1/2))."""
    wide = torch.as_tensor(np.asarray(values, dtype=np.int64) if isinstance(values, np.ndarray) else values)
    wide = wide.to(torch.int64).clamp(0, 65535)
    return ((2 * wide + 257) // 514).to(torch.uint8)


def _decode_with_pil(data: bytes) -> torch.Tensor:
    """PIL's decoders for what torchvision cannot read. 16-bit grey (``I;16*``, and ``I`` whose
    values fit 16 bits) is scaled with :func:`scale_16bit`, never clipped; 32-bit float ``F`` is
    taken as 0..255 and clamped."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode.startswith("I;16") or img.mode == "I":
            array = np.asarray(img)
            if img.mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
                raise ValueError(f"32-bit integer image with values {array.min()}..{array.max()}: "
                                 "convert it to 8 or 16 bits per sample")
            return scale_16bit(array.astype(np.int64))[None]
        if img.mode == "F":
            array = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
            return torch.from_numpy(array.copy())[None]
        gray = img.mode in ("1", "L", "LA")
        array = np.asarray(img.convert("L" if gray else "RGB"))
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _decode_one(data: torch.Tensor) -> torch.Tensor:
    """One image as uint8 (C, H, W): torchvision's decoders first, then PIL. 16-bit PNGs come
    out of torchvision as uint16 and are scaled with :func:`scale_16bit`.

    Raises:
        ValueError: with the decoder's reason (the caller adds the file's name).
    """
    try:
        with _quiet_torchvision_io():
            image = decode_image(data, mode=ImageReadMode.UNCHANGED)
    except (RuntimeError, ValueError):
        try:
            image = _decode_with_pil(data.numpy().tobytes())
        except UnidentifiedImageError as err:
            raise ValueError("not a readable image (unknown format or damaged header)") from err
        except Exception as err:  # PIL raises many types for bad files
            raise ValueError(str(err) or type(err).__name__) from err
    if image.ndim == 4:  # animated GIF: keep the first frame
        image = image[0]
    if image.dtype == torch.uint16:  # 16-bit PNG
        image = scale_16bit(image)
    elif image.dtype != torch.uint8:
        raise ValueError(f"unsupported sample type {image.dtype}")
    return image


def read_image_file(path: str | Path, channels: int | None = None) -> torch.Tensor:
    """One image file as uint8 (C, H, W), decoded as the loaders decode (16-bit samples scaled
    by :func:`scale_16bit`, never clipped); ``channels`` 1 or 3 converts grey / colour.

    Raises:
        ValueError: naming the file and why it cannot be read (damaged, unknown format, or so
            large that PIL takes it for a decompression bomb).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:  # the header only: a decompression bomb is refused before decoding
            img.size
        data = path.read_bytes()
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read image {path}: {err} Downscale it first (e.g. below 8000 x 8000 pixels)") from None
    except UnidentifiedImageError:
        raise ValueError(f"cannot read image {path}: not a readable image (unknown format or damaged header)") from None
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err.strerror or err}") from None
    if not data:
        raise ValueError(f"cannot read image {path}: the file is empty")
    try:
        image = _decode_one(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    except ValueError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return image if channels is None else _convert_channels(image[None], channels)[0]


def _decode_all(blobs: list[bytes | None], names: list[str], location: str) -> tuple[list[torch.Tensor | None], dict[str, str]]:
    """Decode every blob into a uint8 (C, H, W) tensor, channels as stored.

    Returns the images (None where a blob is None, empty or undecodable) and ``{name: reason}``
    for every failure, so that the caller skips or raises (:func:`handle_failures`).

    JPEGs go through one batched ``decode_jpeg`` call: about twice as fast as PIL here, and
    neither threads nor a process pool beat it on two cores. If the batch fails, every image
    is decoded on its own so that a bad file is named.
    """
    failures: dict[str, str] = {}
    tensors: list[torch.Tensor | None] = []
    for blob, name in zip(blobs, names):
        if blob is None:
            tensors.append(None)
        elif not blob:
            failures[name] = "the file is empty"
            tensors.append(None)
        else:
            tensors.append(torch.frombuffer(bytearray(blob), dtype=torch.uint8))
    decoded: list[torch.Tensor | None] = [None] * len(tensors)
    jpeg_index = [i for i, blob in enumerate(blobs) if blob and blob[:3] == b"\xff\xd8\xff"]
    if jpeg_index:
        try:
            with _quiet_torchvision_io():
                batch = decode_jpeg([tensors[i] for i in jpeg_index], mode=ImageReadMode.UNCHANGED)
        except RuntimeError:
            batch = [None] * len(jpeg_index)
        for i, image in zip(jpeg_index, batch):
            decoded[i] = image
    for i, (data, name) in enumerate(zip(tensors, names)):
        if decoded[i] is None and data is not None:
            try:
                decoded[i] = _decode_one(data)
            except ValueError as err:
                failures[name] = str(err)
    return decoded, failures


def handle_failures(failures: dict[str, str], location: str, strict: bool, total: int) -> None:
    """Skip unreadable images with one :class:`CorruptImageWarning` that counts and names them,
    or, with ``strict``, raise for the first one.

    Raises:
        ValueError: ``strict`` and at least one failure (naming the file and ``location``), or
            every one of ``total`` images failed (nothing left to load).
    """
    if not failures:
        return
    name, reason = next(iter(failures.items()))
    if strict or len(failures) == total:
        why = "strict loading stops at the first unreadable image" if strict else "no image could be read"
        raise ValueError(
            f"cannot decode {name!r} in {location}: {reason} ({why}; {len(failures)} of {total} failed). "
            "Remove or replace the file" + ("" if not strict else ", or load without strict to skip it with a warning")
        )
    listed = "; ".join(f"{n} ({r})" for n, r in list(failures.items())[:5])
    more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
    warnings.warn(
        f"skipped {len(failures)} of {total} images in {location} that cannot be read: {listed}{more}. "
        "Pass strict=True (--strict) to stop with an error instead.",
        CorruptImageWarning, stacklevel=3,
    )


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
