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
from core_ssl.data.decode import _convert_channels, _decode_all, _to_tensor, handle_failures, resize_images
from core_ssl.data.imageset import ImageSet
from core_ssl.data.readers import SPLIT_NAMES, _dataset_prefix, _FolderReader, _is_image, _open_source, _ZipReader
from core_ssl.data.roots import find_source
from core_ssl.logger import progress

CACHE_ENV_VAR = "SSL_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/ssl-toolkit")
_CACHE_FORMAT = 1
_DECODE_CHUNK = 512  # images read and decoded (and resized) at a time: bounds the full-size copies held
_PROGRESS_MIN_IMAGES = 2000  # smaller loads finish in a few seconds and show no progress bar


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


def _read_cache(path: Path, key: dict[str, object]) -> tuple[ImageSet, dict[str, str]] | None:
    """The cached set at ``path`` and the unreadable files skipped when it was built (name ->
    reason), if it is there, readable and made for ``key``; else None."""
    if not path.is_file():
        return None
    try:
        payload = load_checkpoint(path)
        if payload.get("key") != key:
            raise CheckpointError("it was written for other settings")
        names = payload["names"].split("\0") if len(payload["images"]) else []  # one string: fast to unpickle
        data = ImageSet(payload["images"], payload["labels"], payload["classes"], names)
        skipped = json.loads(payload.get("skipped", "{}"))
    except (CheckpointError, KeyError, AttributeError, TypeError, ValueError) as err:
        warnings.warn(f"ignoring the image cache {path} and rebuilding it: {err}", stacklevel=3)
        return None
    return data, skipped


def _write_cache(path: Path, key: dict[str, object], data: ImageSet, skipped: dict[str, str]) -> None:
    payload = {"key": key, "images": data.images, "labels": data.labels, "classes": data.classes,
               "names": "\0".join(data.names or []), "skipped": json.dumps(skipped)}  # fmt: skip
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as err:
        warnings.warn(f"could not write the image cache {path} ({err}); the next load decodes again",
                      stacklevel=3)  # fmt: skip


def _shrink(images: list[torch.Tensor | None], size: int, channels: int | None) -> list[torch.Tensor | None]:
    """Each shape group of a decoded chunk: channels converted (to ``channels``, or alpha
    dropped when None) and resized to ``size x size``, so only small copies outlive the chunk."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        if image is not None:
            groups.setdefault(tuple(image.shape), []).append(i)
    out = list(images)
    for shape, index in groups.items():
        batch = torch.stack([images[i] for i in index])
        if channels is not None:
            batch = _convert_channels(batch, channels)
        elif shape[0] in (2, 4):  # grey + alpha, RGBA: the alpha channel is dropped
            batch = batch[:, : shape[0] - 1]
        batch = resize_images(batch, size)
        for j, i in enumerate(index):
            out[i] = batch[j]
    return out


def _read_and_decode(
    reader: _FolderReader | _ZipReader, members: list[str], size: int | None, channels: int | None,
    strict: bool, allow_ragged: bool = False,
) -> tuple[list[int], torch.Tensor | list[torch.Tensor], dict[str, str]]:
    """Read, decode and (with ``size``) resize ``members`` chunk by chunk, with a progress bar
    for large loads. Unreadable files are skipped with a warning naming them (or, ``strict``,
    raise: :func:`core_ssl.data.decode.handle_failures`).

    Returns the positions in ``members`` that were loaded, their images (see ``_to_tensor``)
    and ``{member: reason}`` for the skipped ones.
    """
    decoded: list[torch.Tensor | None] = []
    failures: dict[str, str] = {}
    bar = progress(total=len(members), desc=f"decoding {Path(reader.location).name}", unit="img",
                   disable=len(members) < _PROGRESS_MIN_IMAGES)
    for start in range(0, len(members), _DECODE_CHUNK):
        chunk = members[start : start + _DECODE_CHUNK]
        blobs: list[bytes | None] = []
        for member in chunk:
            try:
                blobs.append(reader.read(member))
            except (OSError, ValueError) as err:
                failures[member] = f"cannot be read: {err}"
                blobs.append(None)
        images, bad = _decode_all(blobs, chunk, reader.location)
        failures.update(bad)
        if strict and failures:
            break
        decoded += _shrink(images, size, channels) if size is not None else images
        bar.update(len(chunk))
    bar.close()
    handle_failures(failures, reader.location, strict, len(members))
    kept = [i for i, image in enumerate(decoded) if image is not None]
    names = [members[i] for i in kept]
    images = _to_tensor([decoded[i] for i in kept], names, reader.location, size, channels, allow_ragged)
    return kept, images, failures


def load_image_folder(
    source: str | Path,
    split: str | None = None,
    size: int | None = None,
    channels: int | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    strict: bool = False,
) -> ImageSet:
    """Load ``<root>/<split>/<class>/<image>`` from a folder or a ``.zip`` of one.

    Class names are the sorted sub-folder names and labels index them; within a class,
    images are in sorted name order (found recursively). Inside a zip a single top folder
    (``cifar10/``) is stepped into. ``split=None`` reads ``<root>/<class>/<image>``.

    Args:
        source: folder or zip archive; a relative path is also looked for in the data root.
        split: sub-folder to read (``"train"``, ``"test"``, ...), or None.
        size: resize every image to ``size x size`` (bicubic, antialiased) when given;
            required when image sizes differ. Images are resized once, as they are decoded
            (in chunks), so a folder of large photos never sits in memory at full size.
        channels: 1 (grey) or 3 (RGB); None keeps grey data grey and makes the rest RGB.
        cache: read/write the decoded tensors from/to a cache file, keyed by the source's
            absolute path, size and modification time (every file's, for a folder), split,
            size and channels. A corrupt cache file is ignored with a warning and rebuilt.
        cache_dir: cache folder; default ``$SSL_CACHE_DIR`` or ``~/.cache/ssl-toolkit``.
        strict: raise at an unreadable image instead of skipping it. By default unreadable
            images (corrupt, truncated, empty) are left out with one
            :class:`~core_ssl.data.decode.CorruptImageWarning` that counts and names them
            (repeated when the set comes from the cache).

    Raises:
        FileNotFoundError: ``source`` does not exist (the message says where it looked).
        ValueError: the split is not there (the message lists those that are), an image
            cannot be decoded with ``strict`` or none can (naming the member and the
            archive), the zip archive is truncated (saying how to recover), or sizes differ
            without ``size``.
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
            data, skipped = cached
            handle_failures(skipped, str(path), strict, len(data) + len(skipped))
            return data

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
        kept, images, skipped = _read_and_decode(reader, members, size, channels, strict)
    finally:
        reader.close()

    names = [members[i][len(prefix):] for i in kept]
    data = ImageSet(images, torch.tensor([labels[i] for i in kept], dtype=torch.int64), classes, names)
    if cache_path is not None:
        _write_cache(cache_path, key, data, skipped)
    return data


def read_image_files(
    source: str | Path, subfolder: str, size: int | None = None, channels: int | None = None,
    strict: bool = False,
) -> tuple[list[str], torch.Tensor | list[torch.Tensor]]:
    """Read every image under ``subfolder`` (recursively) of a folder or zip, without labels.

    ``subfolder`` is looked up as given and, inside a zip with one top folder, under it too
    (``"trainA"`` finds ``catdog/trainA``). Returns the names relative to ``subfolder`` in
    sorted order, and the images: one uint8 (N, C, H, W) tensor when they share a size (or
    ``size`` is given), else a list of uint8 (C, H, W) tensors. Unreadable images are skipped
    with a warning naming them, or raise with ``strict`` (as :func:`load_image_folder`).
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
        kept, images, _ = _read_and_decode(reader, members, size, channels, strict, allow_ragged=True)
    finally:
        reader.close()
    return [members[i][len(prefix):] for i in kept], images


def list_splits(source: str | Path) -> list[str]:
    """The sub-folders at the top of a dataset folder or zip, as :func:`load_image_folder` sees
    them (inside a zip with one top folder, that folder's): e.g. ``["train", "val"]``, or the
    class names for a single folder of classes."""
    reader = _open_source(find_source(source))
    try:
        top = reader.subdirs("")
        if isinstance(reader, _ZipReader) and len(top) == 1 and top[0] not in SPLIT_NAMES:
            inner = reader.subdirs(top[0] + "/")
            if inner:
                return inner
        return top
    finally:
        reader.close()
