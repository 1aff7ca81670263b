"""Image datasets read into memory as uint8 tensors, and a batch iterator over them.

Every dataset the toolkit trains on fits in memory once decoded (CIFAR-10 train is 150 MB), so
images are decoded once into one ``uint8`` tensor of shape (N, C, H, W) and augmented later,
batch-wise, on the training device. Sources:

- :func:`load_image_folder`: a folder or a ``.zip`` archive of a folder laid out
  ``<root>/<split>/<class>/<image>``; the decoded tensors are cached on disk, so the second
  load takes a fraction of a second.
- :func:`read_image_files`: an unlabelled folder of images (e.g. one domain of an unpaired
  image-translation dataset) from a folder or a zip.
- :func:`load_cifar10`, :func:`load_fashion_mnist`, :func:`load_torchvision`: named datasets,
  from local files when present, from torchvision's downloaders when asked.
- :func:`load_dataset`: one entry point for a name or a path.

Data lives in a data root found by :func:`resolve_data_root` (``--data-root``, then
``$SSL_DATA_DIR``, then ``../shared/data`` beside the project checkout, then ``./data``).

:class:`BatchIterator` yields shuffled, reproducible batches, gathered on the CPU and copied
to the device in one non-blocking transfer.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from core_ssl.checkpoint import CheckpointError, atomic_write, load_checkpoint

DATA_ENV_VAR = "SSL_DATA_DIR"
CACHE_ENV_VAR = "SSL_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/ssl-toolkit")
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DATASET_NAMES = ("cifar10", "cifar100", "stl10", "fashion-mnist")
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation", "unlabeled"})
_CACHE_FORMAT = 1
_RESIZE_CHUNK = 1024  # images resized per float32 chunk, to bound the temporary memory


# --------------------------------------------------------------------------------------------
# Where the data is
# --------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    """``../shared/data`` beside the project checkout (the folder holding ``core_ssl/``)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    """The folder that holds the datasets.

    Order: ``explicit`` (the ``--data-root`` flag) if given; else ``$SSL_DATA_DIR`` if set;
    else the first existing of ``../shared/data`` beside the checkout and ``./data``. An
    explicit or environment choice that does not exist is an error, never silently skipped.

    Raises:
        FileNotFoundError: listing every place looked at and how to point at the data.
    """
    if explicit is not None:
        candidates = [("--data-root", Path(explicit).expanduser())]
    elif os.environ.get(DATA_ENV_VAR):
        candidates = [(f"${DATA_ENV_VAR}", Path(os.environ[DATA_ENV_VAR]).expanduser())]
    else:
        candidates = [("beside the checkout", default_data_root()), ("working directory", Path("data"))]
    for _, path in candidates:
        if path.is_dir():
            return path.resolve()
    looked = "; ".join(f"{path.absolute()} ({origin})" for origin, path in candidates)
    raise FileNotFoundError(
        f"no data folder found; looked at: {looked}. Pass --data-root PATH or set "
        f"{DATA_ENV_VAR}=PATH to the folder that holds the datasets."
    )


def _data_root_for(root: str | Path | None, download: bool) -> Path:
    """:func:`resolve_data_root`, except that a download may create the folder it needs."""
    try:
        return resolve_data_root(root)
    except FileNotFoundError:
        if not download:
            raise
    path = Path(root if root is not None else os.environ.get(DATA_ENV_VAR) or "data").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def find_source(source: str | Path) -> Path:
    """``source`` as given if it exists, else relative to the data root."""
    path = Path(source).expanduser()
    if path.exists():
        return path.resolve()
    looked = [str(path.absolute())]
    if not path.is_absolute():
        try:
            candidate = resolve_data_root() / path
        except FileNotFoundError as err:
            looked.append(f"the data root, which was not found either ({err})")
        else:
            if candidate.exists():
                return candidate
            looked.append(str(candidate))
    raise FileNotFoundError(
        f"dataset source {str(source)!r} not found; looked at: {'; '.join(looked)}. Give an "
        f"existing folder or .zip path, or point --data-root / {DATA_ENV_VAR} at the folder holding it."
    )


# --------------------------------------------------------------------------------------------
# The in-memory dataset
# --------------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """A labelled image dataset held in memory.

    Attributes:
        images: uint8 tensor (N, C, H, W), contiguous.
        labels: int64 tensor (N,); ``labels[i]`` indexes ``classes`` (-1 marks unlabelled).
        classes: class names, ``classes[k]`` naming label ``k``.
        names: optional member names (relative to the folder read), one per image.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ImageSet.images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(
                f"ImageSet.labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}"
            )
        if self.names is not None and len(self.names) != len(self.images):
            raise ValueError(f"ImageSet.names has {len(self.names)} entries for {len(self.images)} images")
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64)
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (
            f"ImageSet({len(self)} images of {tuple(self.images.shape[1:])}, "
            f"{self.num_classes} classes, device={self.images.device})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageSet:
        """The images at ``indices`` (any int sequence or tensor), in that order, as a new set."""
        index = torch.as_tensor(indices, dtype=torch.int64, device=self.images.device)
        names = None if self.names is None else [self.names[i] for i in index.tolist()]
        return ImageSet(
            self.images.index_select(0, index),
            self.labels.index_select(0, index.to(self.labels.device)),
            self.classes,
            names,
        )

    def to(self, device: str | torch.device) -> ImageSet:
        """The same set with images and labels on ``device`` (e.g. the whole set on the GPU)."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))


# --------------------------------------------------------------------------------------------
# Folders and zip archives, read the same way
# --------------------------------------------------------------------------------------------


def _is_hidden(parts: Sequence[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


class _FolderReader:
    """Files of a folder, addressed by posix paths relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def subdirs(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(d.name for d in folder.iterdir() if d.is_dir() and not _is_hidden([d.name]))

    def files(self, prefix: str) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root / prefix):
            dirnames[:] = [d for d in dirnames if not _is_hidden([d])]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            found += [f"{rel}/{f}" if rel != "." else f for f in filenames if not f.startswith(".")]
        return sorted(found)

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def close(self) -> None:
        pass


class _ZipReader:
    """Members of a zip archive, read in place without unpacking."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            self.archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as err:
            raise ValueError(f"{path} is not a readable zip archive: {err}") from err
        self.names = sorted(
            info.filename
            for info in self.archive.infolist()
            if not info.is_dir() and not _is_hidden(info.filename.split("/"))
        )

    def subdirs(self, prefix: str) -> list[str]:
        rests = [n[len(prefix) :] for n in self.names if n.startswith(prefix)]
        return sorted({rest.split("/", 1)[0] for rest in rests if "/" in rest})

    def files(self, prefix: str) -> list[str]:
        return [n for n in self.names if n.startswith(prefix)]

    def read(self, name: str) -> bytes:
        try:
            return self.archive.read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ValueError(f"cannot read {name!r} in {self.location}: {err}") from err

    def close(self) -> None:
        self.archive.close()


def _open_source(path: Path) -> _FolderReader | _ZipReader:
    if path.is_dir():
        return _FolderReader(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return _ZipReader(path)
    raise ValueError(f"{path} is neither a folder nor a .zip archive of one")


def _dataset_prefix(reader: _FolderReader | _ZipReader, split: str | None) -> str:
    """The member prefix (``""`` or ``"top/"``) under which the split (or the classes) lie.

    Inside a zip a single top folder (``cifar10/``) is stepped into automatically.
    """
    top = reader.subdirs("")
    prefix = ""
    if isinstance(reader, _ZipReader) and len(top) == 1 and split not in top:
        inner = reader.subdirs(top[0] + "/")
        if inner:
            prefix, top = top[0] + "/", inner
    if split is not None and split not in top:
        raise ValueError(
            f"split {split!r} not found in {reader.location}; the splits there are: "
            f"{', '.join(top) or '(none: no sub-folders)'}"
        )
    if split is None and top and set(top) <= SPLIT_NAMES:
        raise ValueError(
            f"{reader.location} is split into {', '.join(top)}: pass split= one of them"
        )
    return prefix if split is None else f"{prefix}{split}/"


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Labelled folders and zips, with an on-disk cache
# --------------------------------------------------------------------------------------------


def _source_fingerprint(path: Path, split: str | None) -> str:
    """Changes whenever the source does: a zip's size and mtime; for a folder, a hash of
    (path, size, mtime) of every file under the split (a folder's own mtime misses edits)."""
    if not path.is_dir():
        stat = path.stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}"
    digest = hashlib.sha256()
    reader = _FolderReader(path)
    for name in reader.files(split or ""):
        stat = (path / name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_folder(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser()


def _read_cache(path: Path, key: dict[str, object]) -> ImageSet | None:
    """The cached set at ``path`` if it is there, readable and made for ``key``; else None."""
    if not path.is_file():
        return None
    try:
        payload = load_checkpoint(path)
        if payload.get("key") != key:
            raise CheckpointError("it was written for other settings")
        names = payload["names"].split("\0") if len(payload["images"]) else []  # one string: fast to unpickle
        return ImageSet(payload["images"], payload["labels"], payload["classes"], names)
    except (CheckpointError, KeyError, AttributeError, TypeError, ValueError) as err:
        warnings.warn(f"ignoring the image cache {path} and rebuilding it: {err}", stacklevel=3)
        return None


def _write_cache(path: Path, key: dict[str, object], data: ImageSet) -> None:
    payload = {"key": key, "images": data.images, "labels": data.labels,
               "classes": data.classes, "names": "\0".join(data.names or [])}  # fmt: skip
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as err:
        warnings.warn(f"could not write the image cache {path} ({err}); the next load decodes again",
                      stacklevel=3)  # fmt: skip


def load_image_folder(
    source: str | Path,
    split: str | None = None,
    size: int | None = None,
    channels: int | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> ImageSet:
    """Load ``<root>/<split>/<class>/<image>`` from a folder or a ``.zip`` of one.

    Class names are the sorted sub-folder names and labels index them; within a class,
    images are in sorted name order (found recursively). Inside a zip a single top folder
    (``cifar10/``) is stepped into. ``split=None`` reads ``<root>/<class>/<image>``.

    Args:
        source: folder or zip archive; a relative path is also looked for in the data root.
        split: sub-folder to read (``"train"``, ``"test"``, ...), or None.
        size: resize every image to ``size x size`` (bicubic, antialiased) when given;
            required when image sizes differ.
        channels: 1 (grey) or 3 (RGB); None keeps grey data grey and makes the rest RGB.
        cache: read/write the decoded tensors from/to a cache file, keyed by the source's
            absolute path, size and modification time (every file's, for a folder), split,
            size and channels. A corrupt cache file is ignored with a warning and rebuilt.
        cache_dir: cache folder; default ``$SSL_CACHE_DIR`` or ``~/.cache/ssl-toolkit``.

    Raises:
        FileNotFoundError: ``source`` does not exist (the message says where it looked).
        ValueError: the split is not there (the message lists those that are), an image
            cannot be decoded (naming the member and the archive), or sizes differ without
            ``size``.
    """
    path = find_source(source)
    cache_path, key = None, {}
    if cache:
        key = {"format": _CACHE_FORMAT, "source": str(path), "fingerprint": _source_fingerprint(path, split),
               "split": split, "size": size, "channels": channels}  # fmt: skip
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        tag = "-".join(str(part).replace("/", "_") for part in (path.stem, split or "all", size or "native"))
        cache_path = _cache_folder(cache_dir) / f"{tag}-{digest}.pt"
        cached = _read_cache(cache_path, key)
        if cached is not None:
            return cached

    reader = _open_source(path)
    try:
        prefix = _dataset_prefix(reader, split)
        classes = reader.subdirs(prefix)
        if not classes:
            raise ValueError(f"no class folders under {prefix or '/'} in {reader.location}: "
                             "expected <root>/<split>/<class>/<image>")  # fmt: skip
        members: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(classes):
            found = [m for m in reader.files(f"{prefix}{name}/") if _is_image(m)]
            if not found:
                raise ValueError(f"class folder {prefix}{name}/ in {reader.location} holds no images")
            members += found
            labels += [label] * len(found)
        decoded = _decode_all([reader.read(m) for m in members], members, reader.location)
        images = _to_tensor(decoded, members, reader.location, size, channels)
    finally:
        reader.close()

    names = [m[len(prefix):] for m in members]
    data = ImageSet(images, torch.tensor(labels, dtype=torch.int64), classes, names)
    if cache_path is not None:
        _write_cache(cache_path, key, data)
    return data


def read_image_files(
    source: str | Path, subfolder: str, size: int | None = None, channels: int | None = None
) -> tuple[list[str], torch.Tensor | list[torch.Tensor]]:
    """Read every image under ``subfolder`` (recursively) of a folder or zip, without labels.

    ``subfolder`` is looked up as given and, inside a zip with one top folder, under it too
    (``"trainA"`` finds ``catdog/trainA``). Returns the names relative to ``subfolder`` in
    sorted order, and the images: one uint8 (N, C, H, W) tensor when they share a size (or
    ``size`` is given), else a list of uint8 (C, H, W) tensors.
    """
    path = find_source(source)
    reader = _open_source(path)
    try:
        prefix = subfolder.strip("/") + "/"
        top = reader.subdirs("")
        if not reader.files(prefix) and len(top) == 1 and reader.files(f"{top[0]}/{prefix}"):
            prefix = f"{top[0]}/{prefix}"
        members = [m for m in reader.files(prefix) if _is_image(m)]
        if not members:
            raise ValueError(
                f"no images under {subfolder!r} in {reader.location}; its folders are: "
                f"{', '.join(top) or '(none)'}"
            )
        decoded = _decode_all([reader.read(m) for m in members], members, reader.location)
        images = _to_tensor(decoded, members, reader.location, size, channels, allow_ragged=True)
    finally:
        reader.close()
    return [m[len(prefix):] for m in members], images


# --------------------------------------------------------------------------------------------
# Named datasets
# --------------------------------------------------------------------------------------------


def load_cifar10(
    split: str = "train", root: str | Path | None = None, download: bool = False,
    cache_dir: str | Path | None = None,
) -> ImageSet:
    """CIFAR-10 (50,000 train / 10,000 test images of 3x32x32, 10 classes).

    Reads ``cifar10-jpeg.zip`` or a folder ``cifar10/`` (both ``<split>/<class>/<image>``) in
    the data root; else torchvision's ``cifar-10-batches-py`` there, downloaded first if
    ``download`` is set.
    """
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}")
    data_root = _data_root_for(root, download)
    candidates = [data_root / "cifar10-jpeg.zip", data_root / "cifar10"]
    for candidate in candidates:
        if candidate.exists():
            return load_image_folder(candidate, split=split, cache_dir=cache_dir)
    if download or (data_root / "cifar-10-batches-py").is_dir():
        return load_torchvision("cifar10", split, data_root, download=download)
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {candidates[0]}, {candidates[1]}/ and torchvision's "
        f"{data_root / 'cifar-10-batches-py'}/. Point --data-root (or {DATA_ENV_VAR}) at the "
        "folder holding cifar10-jpeg.zip, or pass --download to fetch it with torchvision."
    )


def _idx_dtypes() -> dict[int, np.dtype]:
    return {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
            0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip


def read_idx(path: str | Path, expected_ndim: int | None = None) -> torch.Tensor:
    """Read an idx file (the MNIST format), gzipped or not, into a tensor.

    Layout: magic ``00 00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the
    values big-endian in row-major order.

    Raises:
        ValueError: naming the file, when the magic number is wrong, the number of dimensions
            is not ``expected_ndim``, or the data is truncated or has trailing bytes.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read idx file {path}: {err}") from err
    dtypes = _idx_dtypes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise ValueError(f"{path} is not an idx file: bad magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(f"{path} holds a {ndim}-d array, expected {expected_ndim}-d (magic {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = dtypes[raw[2]]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: shape {shape} needs {expected} data bytes, "
            f"found {len(raw) - header}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def load_fashion_mnist(
    split: str = "train", root: str | Path | None = None, download: bool = False
) -> ImageSet:
    """Fashion-MNIST (60,000 train / 10,000 test images of 1x28x28, 10 classes).

    Reads the four original idx files (``.gz`` or not) from ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``) when there, else from the data root (itself, its
    ``fashion-mnist/`` or torchvision's ``FashionMNIST/raw/``), else downloads with
    torchvision if ``download`` is set.
    """
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip
    if split not in stems:
        raise ValueError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    folders = [FASHION_MNIST_SYSTEM_DIR]
    try:
        data_root = resolve_data_root(root)
        folders += [data_root, data_root / "fashion-mnist", data_root / "FashionMNIST" / "raw"]
    except FileNotFoundError:
        pass
    image_stem, label_stem = stems[split]
    for folder in folders:
        for suffix in (".gz", ""):
            image_file, label_file = folder / (image_stem + suffix), folder / (label_stem + suffix)
            if image_file.is_file() and label_file.is_file():
                images, labels = read_idx(image_file, expected_ndim=3), read_idx(label_file, expected_ndim=1)
                if images.dtype != torch.uint8 or labels.dtype != torch.uint8 or len(images) != len(labels):
                    raise ValueError(
                        f"{image_file} ({images.dtype}, {tuple(images.shape)}) and {label_file} "
                        f"({labels.dtype}, {tuple(labels.shape)}) do not form a uint8 image/label pair"
                    )
                return ImageSet(images.unsqueeze(1), labels.long(), FASHION_MNIST_CLASSES)
    if download:
        return load_torchvision("fashion-mnist", split, root, download=True)
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files ({image_stem}[.gz], {label_stem}[.gz]) not found in: "
        f"{', '.join(map(str, folders))}. Install them with `apt-get install dataset-fashion-mnist`, "
        f"put them in the data root (--data-root / {DATA_ENV_VAR}), or pass --download."
    )


def load_torchvision(
    name: str, split: str = "train", root: str | Path | None = None, download: bool = False
) -> ImageSet:
    """Load ``cifar10``, ``cifar100``, ``stl10`` or ``fashion-mnist`` with torchvision's classes.

    ``root`` (default: the data root) holds torchvision's own layout. The numpy arrays the
    classes hold are converted to uint8 (N, C, H, W) in one copy, without a per-image loop.
    Splits: ``train``/``test``; STL-10 also ``unlabeled`` and ``train+unlabeled`` (label -1).
    """
    from torchvision import datasets  # deferred: importing the dataset classes is slow

    key = _canonical_name(name)
    splits = {"stl10": ("train", "test", "unlabeled", "train+unlabeled")}.get(key, ("train", "test"))
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown torchvision dataset {name!r}: use one of {', '.join(DATASET_NAMES)}")
    if split not in splits:
        raise ValueError(f"{key} has splits {', '.join(splits)}, not {split!r}")
    data_root = str(_data_root_for(root, download))
    try:
        if key == "stl10":
            ds = datasets.STL10(data_root, split=split, download=download)
            images, labels = torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels)
        elif key == "fashion-mnist":
            ds = datasets.FashionMNIST(data_root, train=split == "train", download=download)
            images, labels = ds.data.unsqueeze(1), ds.targets
        else:
            cls = datasets.CIFAR10 if key == "cifar10" else datasets.CIFAR100
            ds = cls(data_root, train=split == "train", download=download)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # stored NHWC
            labels = torch.as_tensor(ds.targets)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{key} ({split}) not found in torchvision's layout under {data_root} ({err}); "
            "pass --download to fetch it (needs internet) or point --data-root at it."
        ) from err
    return ImageSet(images.to(torch.uint8).contiguous(), labels.long(), list(ds.classes))


def _canonical_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    aliases = {"cifar-10": "cifar10", "cifar-100": "cifar100", "stl-10": "stl10",
               "fashionmnist": "fashion-mnist"}  # fmt: skip
    return aliases.get(key, key)


def load_dataset(
    name_or_path: str | Path,
    split: str | None = "train",
    root: str | Path | None = None,
    download: bool = False,
    size: int | None = None,
    cache_dir: str | Path | None = None,
) -> ImageSet:
    """Load a named dataset (``cifar10``, ``cifar100``, ``stl10``, ``fashion-mnist``) or a
    folder / zip path (see :func:`load_image_folder`), optionally resized to ``size x size``."""
    key = _canonical_name(str(name_or_path)) if isinstance(name_or_path, str) else None
    if key in DATASET_NAMES:
        if split is None:
            raise ValueError(f"{key} needs a split, e.g. split='train'")
        if key == "cifar10":
            data = load_cifar10(split, root, download, cache_dir=cache_dir)
        elif key == "fashion-mnist":
            data = load_fashion_mnist(split, root, download)
        else:
            data = load_torchvision(key, split, root, download)
        return data if size is None else replace(data, images=resize_images(data.images, size))
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith(".zip")
    if looks_like_path or Path(text).exists():
        return load_image_folder(name_or_path, split=split, size=size, cache_dir=cache_dir)
    raise ValueError(
        f"unknown dataset {text!r}: use one of {', '.join(DATASET_NAMES)}, or a path to a "
        "folder or .zip archive laid out <split>/<class>/<image>"
    )


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def _epoch_seed(seed: int, epoch: int) -> int:
    """A per-epoch seed that differs for every (seed, epoch) pair in practice."""
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 1) % (2**63)


class BatchIterator:
    """Shuffled mini-batches over in-memory images, reproducible from a seed.

    Each pass yields ``(images, labels, indices)``: ``images`` uint8 (B, C, H, W) and
    ``labels`` int64 (B,) (None when there are none) and ``indices`` int64 (B,) (positions
    in the data), all on ``device``. Data held on the CPU is gathered there (into pinned
    memory when ``device`` is CUDA) and copied with one non-blocking transfer per tensor; data
    already on ``device`` is gathered in place.

    Pass ``k`` over the iterator uses epoch ``k`` (counted from :meth:`set_epoch`), whose order
    is ``randperm(N)`` under a generator seeded from ``(seed, epoch)``: the same seed and epoch
    give the same batches, so a resumed run calls ``set_epoch(epoch)`` and continues exactly.
    With ``world_size > 1`` each rank takes every ``world_size``-th position of the epoch's
    permutation (trimmed, or padded by wrapping when ``drop_last=False``), as
    ``DistributedSampler`` does.

    Example::

        batches = BatchIterator(load_cifar10("train"), batch_size=512, seed=0, device="cuda")
        for epoch in range(start_epoch, epochs):
            batches.set_epoch(epoch)
            for images, labels, indices in batches:
                ...
    """

    def __init__(
        self,
        data: ImageSet | torch.Tensor,
        batch_size: int,
        *,
        labels: torch.Tensor | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if isinstance(data, ImageSet):
            if labels is not None:
                raise TypeError("labels= is for plain tensors; an ImageSet brings its own")
            data, labels = data.images, data.labels
        if not isinstance(data, torch.Tensor) or data.ndim < 1:
            raise TypeError(
                f"data must be an ImageSet or a tensor with a batch dimension, got {type(data).__name__}"
            )
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"labels has {len(labels)} entries for {len(data)} images")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if seed is None:
            seed = 0 if generator is None else int(torch.randint(2**62, (1,), generator=generator))
        self.images = data
        self.labels = None if labels is None else labels.to(torch.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device) if device is not None else data.device
        self.epoch = 0
        per_rank = len(data) // world_size if drop_last else math.ceil(len(data) / world_size)
        self._per_rank = per_rank
        if len(self) == 0:
            raise ValueError(
                f"{len(data)} samples give no batch of {batch_size} per rank with drop_last=True"
            )

    def __len__(self) -> int:
        """Batches per epoch (on this rank)."""
        if self.drop_last:
            return self._per_rank // self.batch_size
        return math.ceil(self._per_rank / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``'s order (later passes count up from it)."""
        self.epoch = epoch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The positions this rank visits in ``epoch``, in order (CPU int64)."""
        n = len(self.images)
        if self.shuffle:
            generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self._per_rank * self.world_size
        if total > n:  # pad by wrapping so that every rank gets as many samples
            order = torch.cat([order, order[: total - n]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = self.epoch_order(epoch).to(self.images.device)
        for b in range(len(self)):
            yield self._gather(order[b * self.batch_size : (b + 1) * self.batch_size])

    def _gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        if self.images.device == self.device or self.images.device.type != "cpu":
            images = self.images.index_select(0, index).to(self.device)
            labels = None if self.labels is None else self.labels[index.to(self.labels.device)]
            return images, None if labels is None else labels.to(self.device), index.to(self.device)
        # CPU data for another device: gather straight into (pinned) host buffers, then copy.
        pin = self.device.type == "cuda"
        images = torch.empty((len(index), *self.images.shape[1:]), dtype=self.images.dtype, pin_memory=pin)
        torch.index_select(self.images, 0, index, out=images)
        rows = 1 if self.labels is None else 2  # indices and labels travel as one tensor
        meta = torch.empty((rows, len(index)), dtype=torch.int64, pin_memory=pin)
        meta[0] = index
        if self.labels is not None:
            torch.index_select(self.labels, 0, index, out=meta[1])
        images = images.to(self.device, non_blocking=pin)
        meta = meta.to(self.device, non_blocking=pin)
        return images, (None if self.labels is None else meta[1]), meta[0]
