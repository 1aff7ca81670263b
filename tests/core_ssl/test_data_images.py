"""Image decoding edge cases: 16-bit PNGs, unreadable files (skip or strict), damaged zips,
images of many sizes resized once, seeded splits and dataset layouts."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core_ssl import data as data_mod
from core_ssl.data import (
    CorruptImageWarning,
    ImageSet,
    list_splits,
    load_dataset,
    load_image_folder,
    read_image_files,
    resize_images,
    scale_16bit,
    split_by_fraction,
)
from core_ssl.data.decode import _decode_with_pil


def png_16bit(array: np.ndarray) -> bytes:
    """A 16-bit PNG written by hand (grey: (H, W); RGB: (H, W, 3)), filter 0 on every row."""
    colour_type = 0 if array.ndim == 2 else 2
    height, width = array.shape[:2]
    rows = array.reshape(height, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def expected_8bit(values: np.ndarray) -> np.ndarray:
    """round(v / 257) with halves rounded up, computed in exact rationals."""
    return np.floor(values.astype(np.float64) / 257 + 0.5).astype(np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_scale_16bit_formula_on_hand_values():
    values = np.array([0, 128, 129, 257, 385, 386, 32896, 40000, 65278, 65535])
    # 128/257 = 0.498 -> 0; 129/257 = 0.502 -> 1; 385/257 = 1.498 -> 1; 386 -> 2; 40000/257 = 155.6 -> 156
    assert scale_16bit(values).tolist() == [0, 0, 1, 1, 1, 2, 128, 156, 254, 255]
    every_byte = np.arange(256) * 257  # an 8-bit value stored as 16 bits comes back exactly
    assert scale_16bit(every_byte).tolist() == list(range(256))


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 3)], ids=["grey-I;16", "rgb-48bit"])
def test_16bit_png_decodes_to_rounded_8bit(tmp_path, shape):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 65536, shape, dtype=np.uint16)
    array.flat[:4] = [0, 65535, 40000, 128]
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "a" / "img.png").write_bytes(png_16bit(array))
    data = load_image_folder(tmp_path / "ds", cache=False)
    want = expected_8bit(array)
    got = data.images[0].permute(1, 2, 0).numpy()
    assert np.array_equal(got.squeeze(-1) if array.ndim == 2 else got, want)
    assert (got == 255).mean() < 0.05  # not clipped to white


def test_16bit_grey_through_pil_is_scaled_not_clipped():
    array = np.array([[0, 257, 40000], [65535, 1000, 32768]], dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        assert img.mode.startswith("I")  # PIL's 16-bit grey mode: what .convert("L") used to clip
    assert np.array_equal(_decode_with_pil(buffer.getvalue())[0].numpy(), expected_8bit(array))


def _folder_with_one_corrupt_file(root: Path) -> None:
    rng = np.random.default_rng(1)
    for cls in ("cat", "dog"):
        for i in range(3):
            write_png(root / "train" / cls / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (root / "train" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")


def test_corrupt_file_is_skipped_with_a_warning_naming_it(tmp_path):
    _folder_with_one_corrupt_file(tmp_path / "ds")
    with pytest.warns(CorruptImageWarning, match=r"skipped 1 of 6 images .*: train/dog/1\.png \(not a readable image"):
        data = load_image_folder(tmp_path / "ds", split="train", cache_dir=tmp_path / "cache")
    assert data.names == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/2.png"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1] and data.images.shape == (5, 3, 8, 8)
    with pytest.warns(CorruptImageWarning, match=r"dog/1\.png"):  # again when read from the cache
        cached = load_image_folder(tmp_path / "ds", split="train", cache_dir=tmp_path / "cache")
    assert torch.equal(cached.images, data.images)
    with pytest.warns(CorruptImageWarning, match=r"dog/1\.png"):
        names, _ = read_image_files(tmp_path / "ds", "train/dog")
    assert names == ["0.png", "2.png"]


def test_strict_raises_naming_the_corrupt_file(tmp_path):
    _folder_with_one_corrupt_file(tmp_path / "ds")
    with pytest.raises(ValueError, match=r"cannot decode 'train/dog/1\.png' in .*ds.*Remove or replace"):
        load_image_folder(tmp_path / "ds", split="train", cache=False, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptImageWarning)
        load_image_folder(tmp_path / "ds", split="train", cache_dir=tmp_path / "cache")  # cache, skipped kept
    with pytest.raises(ValueError, match=r"dog/1\.png"):  # strict also refuses a cache built without it
        load_dataset(tmp_path / "ds", "train", cache_dir=tmp_path / "cache", strict=True)


def test_truncated_zip_names_the_file_and_the_fix(tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(f"photos/train/a/{i}.png", b"x" * 2000)
    archive.write_bytes(archive.read_bytes()[:3000])  # cut short, as by an interrupted download
    with pytest.raises(ValueError, match=r"photos\.zip is a damaged or truncated zip archive") as info:
        load_image_folder(archive, split="train", cache=False)
    assert "download it again" in str(info.value) and "zip -FF" in str(info.value)


def test_images_of_many_sizes_are_resized_once_at_load(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    shapes = [(40, 60, 3), (33, 33), (17, 90, 3), (40, 60, 3), (120, 80)]
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]
    for i, array in enumerate(arrays):
        write_png(tmp_path / "ds" / ("a" if i < 3 else "b") / f"{i}.png", array)
    monkeypatch.setattr(data_mod.folders, "_DECODE_CHUNK", 2)  # several chunks
    calls = []
    real = data_mod.folders.resize_images
    monkeypatch.setattr(data_mod.folders, "resize_images", lambda x, s: calls.append(tuple(x.shape)) or real(x, s))
    data = load_image_folder(tmp_path / "ds", size=16, cache=False)
    assert data.images.shape == (5, 3, 16, 16)
    assert sum(shape[0] for shape in calls) == 5  # every image went through the resize exactly once
    for i, array in enumerate(arrays):  # each equals its own resize (grey replicated after resizing)
        tensor = torch.from_numpy(array).permute(2, 0, 1) if array.ndim == 3 else torch.from_numpy(array)[None]
        want = resize_images(tensor[None], 16)[0].expand(3, -1, -1)
        assert torch.equal(data.images[i], want)


def test_split_by_fraction_is_seeded_stratified_and_disjoint():
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 3)
    images = torch.arange(33, dtype=torch.uint8).view(33, 1, 1, 1)
    data = ImageSet(images, labels, ["a", "b", "c"])
    train, test = split_by_fraction(data, 0.2, seed=4)
    assert test.labels.bincount().tolist() == [2, 4, 1]  # round(0.2 n) per class, at least one
    assert train.labels.bincount().tolist() == [8, 16, 2]
    ids = train.images.flatten().tolist() + test.images.flatten().tolist()
    assert sorted(ids) == list(range(33))
    again_train, again_test = split_by_fraction(data, 0.2, seed=4)
    assert torch.equal(again_test.images, test.images)
    other_test = split_by_fraction(data, 0.2, seed=5)[1]
    assert not torch.equal(other_test.images, test.images)
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_fraction(data, 1.0)


def test_list_splits_sees_the_layout(tmp_path):
    write_png(tmp_path / "f" / "train" / "x" / "0.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "f" / "val" / "x" / "0.png", np.zeros((4, 4), np.uint8))
    assert list_splits(tmp_path / "f") == ["train", "val"]
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/cats/0.png", b"")
        zf.writestr("top/dogs/0.png", b"")
    assert list_splits(archive) == ["cats", "dogs"]
