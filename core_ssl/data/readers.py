"""Folders and zip archives, read the same way: members by posix path, bytes on demand."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation", "unlabeled"})


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
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ValueError(_damaged_zip_message(path, str(err))) from err
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


def _damaged_zip_message(path: Path, detail: str) -> str:
    size = path.stat().st_size
    return (
        f"{path} is a damaged or truncated zip archive ({detail}; the file has {size:,} bytes): "
        "it was probably cut short while downloading or copying. Copy or download it again and "
        "compare its size and checksum (sha256sum) with the original; to salvage what is in it, "
        f"run `zip -FF {path} --out repaired.zip` and load repaired.zip."
    )


def open_zip(path: str | Path) -> zipfile.ZipFile:
    """``zipfile.ZipFile(path)``; a damaged or truncated archive is a ``ValueError`` naming it
    and how to recover (not ``BadZipFile``)."""
    path = Path(path)
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ValueError(_damaged_zip_message(path, str(err))) from None


def _open_source(path: Path) -> _FolderReader | _ZipReader:
    """A reader for a folder or a zip archive.

    Raises:
        ValueError: ``path`` is a truncated or damaged zip (a ``.zip`` name or a ``PK`` header
            without a readable central directory: the message names it and how to recover),
            or neither a folder nor a zip.
    """
    if path.is_dir():
        return _FolderReader(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return _ZipReader(path)
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(4)
        if path.suffix.lower() == ".zip" or head[:2] == b"PK":
            raise ValueError(_damaged_zip_message(path, "its end-of-archive directory is missing"))
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
