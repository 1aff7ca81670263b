"""Labelled folders and zip archives (``<root>/<split>/<class>/<image>``), with an on-disk
cache of the decoded tensors, and unlabelled image folders."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch

from core_ssl.checkpoint import CheckpointError, atomic_write, load_checkpoint
from core_ssl.data.decode import _decode_all, _to_tensor
from core_ssl.data.imageset import ImageSet
from core_ssl.data.readers import _dataset_prefix, _FolderReader, _is_image, _open_source
from core_ssl.data.roots import find_source

CACHE_ENV_VAR = "SSL_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/ssl-toolkit")
_CACHE_FORMAT = 1


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
