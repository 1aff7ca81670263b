"""Tests for core_ssl.data: folders, zips, caches, named datasets and the batch iterator.

Real data (CIFAR-10 zip, cat/dog zip) is found through the project's data-root logic; the
CIFAR-10 splits are decoded once per test module by module-scoped fixtures.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core_ssl
from core_ssl import data as data_mod
from core_ssl.data import (
    DATA_ENV_VAR,
    FASHION_MNIST_CLASSES,
    BatchIterator,
    ImageSet,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
    load_torchvision,
    read_idx,
    read_image_files,
    resize_images,
    resolve_data_root,
)
from tests.devices import needs_cuda

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _real_data_file(name: str) -> Path:
    try:
        path = resolve_data_root() / name
    except FileNotFoundError as err:
        pytest.skip(f"no data root for {name}: {err}")
    if not path.is_file():
        pytest.skip(f"{name} is not in the data root {path.parent}")
    return path


# ------------------------------------------------------------------------------ test data


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    big_endian = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, codes[big_endian.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + big_endian.tobytes()


def _make_folder_dataset(root: Path, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """root/train/<class>/<i>.png with 8x8 RGB images; classes created out of order."""
    written: dict[str, list[np.ndarray]] = {}
    for name, count in [("zebra", 2), ("ant", 3), ("moth", 1)]:
        written[name] = []
        for i in range(count):
            array = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            _write_png(root / "train" / name / f"{i}.png", array)
            written[name].append(array)
    _write_png(root / "test" / "ant" / "0.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return written


# ------------------------------------------------------------------------------ CIFAR-10 (real)


@pytest.fixture(scope="module")
def cifar_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("image-cache")


@pytest.fixture(scope="module")
def cifar_train(cifar_cache_dir) -> ImageSet:
    _real_data_file("cifar10-jpeg.zip")
    return load_cifar10("train", cache_dir=cifar_cache_dir)


@pytest.fixture(scope="module")
def cifar_test(cifar_cache_dir) -> ImageSet:
    _real_data_file("cifar10-jpeg.zip")
    return load_cifar10("test", cache_dir=cifar_cache_dir)


@pytest.mark.parametrize(("split", "per_class"), [pytest.param("train", 5000, marks=pytest.mark.needs("cifar-train")),
                                                 ("test", 1000)])
def test_cifar10_zip_counts_and_shapes(request, split, per_class):
    data = request.getfixturevalue(f"cifar_{split}")
    assert len(data) == 10 * per_class
    assert data.classes == CIFAR_CLASSES and data.num_classes == 10
    assert data.images.shape == (10 * per_class, 3, 32, 32)
    assert data.images.dtype == torch.uint8 and data.images.is_contiguous()
    assert data.labels.dtype == torch.int64
    assert data.labels.bincount().tolist() == [per_class] * 10
    folders = [name.split("/")[0] for name in data.names]
    assert folders == [data.classes[label] for label in data.labels.tolist()]


def test_cifar10_pixels_match_pil_decode(cifar_train):
    archive = zipfile.ZipFile(_real_data_file("cifar10-jpeg.zip"))
    for i in torch.randperm(len(cifar_train), generator=torch.Generator().manual_seed(0))[:16].tolist():
        with Image.open(io.BytesIO(archive.read(f"cifar10/train/{cifar_train.names[i]}"))) as img:
            reference = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
        # Both decoders are libjpeg(-turbo); allow for a different IDCT in another build.
        assert (cifar_train.images[i].int() - reference.int()).abs().max() <= 2


def test_cifar10_second_load_comes_from_cache(cifar_train, cifar_cache_dir, monkeypatch):
    assert any(cifar_cache_dir.glob("cifar10-jpeg-train-*.pt"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached load decoded images again")

    monkeypatch.setattr(data_mod.folders, "_decode_all", no_decoding)
    again = load_cifar10("train", cache_dir=cifar_cache_dir)
    assert torch.equal(again.images, cifar_train.images)
    assert torch.equal(again.labels, cifar_train.labels)
    assert again.classes == cifar_train.classes and again.names == cifar_train.names


def test_cifar10_absent_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download") as info:
        load_cifar10("train", root=tmp_path)
    assert str(tmp_path) in str(info.value)


# ------------------------------------------------------------------------------ Fashion-MNIST


@pytest.mark.parametrize(("split", "stem", "count"), [("train", "train", 60000), ("test", "t10k", 10000)])
def test_fashion_mnist_from_debian_files(split, stem, count):
    folder = data_mod.FASHION_MNIST_SYSTEM_DIR
    if not (folder / f"{stem}-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST idx files not in {folder} (apt-get install dataset-fashion-mnist)")
    data = load_fashion_mnist(split)
    assert data.images.shape == (count, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.classes == FASHION_MNIST_CLASSES and data.num_classes == 10
    assert data.labels.bincount().tolist() == [count // 10] * 10
    # Reference: the documented layout, 16-byte image header and 8-byte label header.
    raw_images = gzip.decompress((folder / f"{stem}-images-idx3-ubyte.gz").read_bytes())
    raw_labels = gzip.decompress((folder / f"{stem}-labels-idx1-ubyte.gz").read_bytes())
    for i in (0, 1, count - 1):
        expected = np.frombuffer(raw_images, np.uint8, 784, 16 + 784 * i).reshape(28, 28)
        assert np.array_equal(data.images[i, 0].numpy(), expected)
        assert data.labels[i].item() == raw_labels[8 + i]


def test_fashion_mnist_from_data_root_and_bad_files(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod.named, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "absent")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    data = load_fashion_mnist("test", root=tmp_path)
    assert torch.equal(data.images[:, 0], torch.from_numpy(images))
    assert data.labels.tolist() == labels.tolist()

    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)[:-2]))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*truncated"):
        load_fashion_mnist("test", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)


def test_read_idx_round_trip_and_errors(tmp_path):
    for array in [np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([-7, 0, 70000], dtype=np.int32),
                  np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)]:  # fmt: skip
        path = tmp_path / "a.idx"
        path.write_bytes(_idx_bytes(array))
        assert np.array_equal(read_idx(path).numpy(), array)
    path.write_bytes(b"\x08\x03\x00\x00" + bytes(20))
    with pytest.raises(ValueError, match="a.idx.*magic"):
        read_idx(path)
    path.write_bytes(_idx_bytes(np.zeros((2, 2), np.uint8)))
    with pytest.raises(ValueError, match="a.idx.*expected 3-d"):
        read_idx(path, expected_ndim=3)
    gz = tmp_path / "b.idx.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="b.idx.gz"):
        read_idx(gz)


# ------------------------------------------------------------------------------ folders and zips


def test_folder_dataset_labels_and_pixels(tmp_path):
    written = _make_folder_dataset(tmp_path, np.random.default_rng(1))
    data = load_image_folder(tmp_path, split="train", cache=False)
    assert data.classes == ["ant", "moth", "zebra"]
    assert data.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert data.names == ["ant/0.png", "ant/1.png", "ant/2.png", "moth/0.png", "zebra/0.png", "zebra/1.png"]
    for image, name in zip(data.images, data.names):
        cls, file = name.split("/")
        assert np.array_equal(image.permute(1, 2, 0).numpy(), written[cls][int(file[0])])
    subset = data.subset([4, 0])
    assert subset.names == ["zebra/0.png", "ant/0.png"] and subset.labels.tolist() == [2, 0]
    assert torch.equal(subset.images[1], data.images[0])


def test_folder_channels_and_sizes(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    _write_png(tmp_path / "a" / "0.png", grey)
    _write_png(tmp_path / "b" / "0.png", grey[:4, :4])
    with pytest.raises(ValueError, match="differ in size.*size="):
        load_image_folder(tmp_path, cache=False)
    data = load_image_folder(tmp_path, size=6, cache=False)
    assert data.images.shape == (2, 1, 6, 6)  # grey data stays grey
    rgb = load_image_folder(tmp_path, size=6, channels=3, cache=False)
    assert rgb.images.shape == (2, 3, 6, 6) and torch.equal(rgb.images[:, 0], rgb.images[:, 2])
    # Reference: a constant image stays constant under any resize.
    assert torch.equal(resize_images(torch.full((1, 3, 5, 7), 77, dtype=torch.uint8), 4),
                       torch.full((1, 3, 4, 4), 77, dtype=torch.uint8))  # fmt: skip


def test_rgb_to_grey_matches_pil(tmp_path):
    array = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    _write_png(tmp_path / "only" / "0.png", array)
    data = load_image_folder(tmp_path, channels=1, cache=False)
    reference = np.asarray(Image.fromarray(array).convert("L"))
    assert np.abs(data.images[0, 0].numpy().astype(int) - reference.astype(int)).max() <= 1


def test_zip_top_folder_is_found_and_missing_split_lists_splits(tmp_path):
    array = np.full((4, 4, 3), 9, dtype=np.uint8)
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for member in ["tiny/train/x/0.png", "tiny/train/y/0.png", "tiny/val/x/0.png"]:
            zf.writestr(member, _png_bytes(array))
    data = load_image_folder(archive, split="train", cache=False)
    assert data.classes == ["x", "y"] and data.images.shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="'test' not found.*train, val"):
        load_image_folder(archive, split="test", cache=False)
    with pytest.raises(ValueError, match="split="):
        load_image_folder(archive, split=None, cache=False)


@pytest.mark.parametrize("bad_bytes", [b"\xff\xd8\xff\xe0 truncated jpeg", b"this is not an image"])
def test_corrupt_zip_member_is_named(tmp_path, bad_bytes):
    archive = tmp_path / "broken.zip"
    good = _png_bytes(np.zeros((4, 4, 3), dtype=np.uint8))
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ds/train/cat/0000.jpg", bad_bytes)
        zf.writestr("ds/train/cat/0001.png", good)
        zf.writestr("ds/train/dog/0000.png", good)
    with pytest.raises(ValueError, match=r"cannot decode 'ds/train/cat/0000.jpg' in .*broken.zip"):
        load_image_folder(archive, split="train", cache=False, strict=True)
    with pytest.warns(data_mod.CorruptImageWarning, match=r"skipped 1 of 3 images .*ds/train/cat/0000.jpg"):
        rest = load_image_folder(archive, split="train", cache=False)
    assert rest.names == ["cat/0001.png", "dog/0000.png"] and rest.labels.tolist() == [0, 1]


def test_missing_source_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_image_folder("no-such-dataset.zip", split="train")
    message = str(info.value)
    assert "no-such-dataset.zip" in message and str(tmp_path / "no-such-dataset.zip") in message


def test_cache_rebuilds_when_corrupt_and_follows_edits(tmp_path):
    source, cache = tmp_path / "ds", tmp_path / "cache"
    _make_folder_dataset(source, np.random.default_rng(3))
    first = load_image_folder(source, split="train", cache_dir=cache)
    (cache_file,) = cache.glob("*.pt")
    cache_file.write_bytes(b"garbage, not a torch file")
    with pytest.warns(UserWarning, match="ignoring the image cache"):
        rebuilt = load_image_folder(source, split="train", cache_dir=cache)
    assert torch.equal(rebuilt.images, first.images)
    assert load_image_folder(source, split="train", cache_dir=cache).names == first.names  # no warning now

    new_pixels = np.full((8, 8, 3), 5, dtype=np.uint8)
    _write_png(source / "train" / "ant" / "0.png", new_pixels)
    edited = load_image_folder(source, split="train", cache_dir=cache)
    assert np.array_equal(edited.images[0].permute(1, 2, 0).numpy(), new_pixels)


def test_read_image_files_catdog():
    archive = _real_data_file("catdog-128.zip")
    names, images = read_image_files(archive, "trainA")
    assert len(names) == 1000 and images.shape == (1000, 3, 128, 128) and images.dtype == torch.uint8
    assert all(name.startswith("cat.") for name in names) and names == sorted(names)
    names_b, _ = read_image_files(archive, "catdog/trainB", size=32)
    assert len(names_b) == 1000 and names_b[0].startswith("dog.")


def test_read_image_files_ragged_without_size(tmp_path):
    _write_png(tmp_path / "domain" / "a.png", np.zeros((4, 6, 3), np.uint8))
    _write_png(tmp_path / "domain" / "b.png", np.zeros((5, 5, 3), np.uint8))
    names, images = read_image_files(tmp_path, "domain")
    assert names == ["a.png", "b.png"] and [tuple(i.shape) for i in images] == [(3, 4, 6), (3, 5, 5)]
    with pytest.raises(ValueError, match="no images under 'elsewhere'"):
        read_image_files(tmp_path, "elsewhere")


# ------------------------------------------------------------------------------ data root, dispatch


def test_resolve_data_root_order(tmp_path, monkeypatch):
    flag, env = tmp_path / "flag", tmp_path / "env"
    flag.mkdir(), env.mkdir()
    monkeypatch.setenv(DATA_ENV_VAR, str(env))
    assert resolve_data_root(flag) == flag.resolve()
    assert resolve_data_root() == env.resolve()
    with pytest.raises(FileNotFoundError, match="--data-root") as info:
        resolve_data_root(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)

    monkeypatch.delenv(DATA_ENV_VAR)
    monkeypatch.chdir(tmp_path)
    beside_checkout = Path(core_ssl.__file__).resolve().parents[2] / "shared" / "data"
    if beside_checkout.is_dir():
        assert resolve_data_root() == beside_checkout.resolve()
    else:
        with pytest.raises(FileNotFoundError, match=DATA_ENV_VAR) as info:
            resolve_data_root()
        assert str(beside_checkout) in str(info.value)
    monkeypatch.setattr(data_mod.roots, "default_data_root", lambda: tmp_path / "nowhere")
    (tmp_path / "data").mkdir()
    assert resolve_data_root() == (tmp_path / "data").resolve()


def test_load_dataset_dispatch(tmp_path):
    _make_folder_dataset(tmp_path, np.random.default_rng(4))
    data = load_dataset(tmp_path, split="test", size=4, cache_dir=tmp_path / "cache")
    assert data.classes == ["ant"] and data.images.shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="cifar10, cifar100, stl10, fashion-mnist"):
        load_dataset("imagenet-please")


def test_load_torchvision_conversions(tmp_path, monkeypatch):
    """torchvision's arrays become uint8 NCHW tensors with the right pixels and labels."""
    rng = np.random.default_rng(5)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([9, 0, 2], np.uint8)
    for stem in ("t10k", "train"):  # torchvision wants all four raw files
        (raw / f"{stem}-images-idx3-ubyte").write_bytes(_idx_bytes(images))
        (raw / f"{stem}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    fashion = load_torchvision("fashion-mnist", "test", root=tmp_path)
    assert fashion.images.shape == (3, 1, 28, 28)
    assert torch.equal(fashion.images[:, 0], torch.from_numpy(images))
    assert fashion.labels.tolist() == [9, 0, 2] and fashion.classes == FASHION_MNIST_CLASSES

    # CIFAR-10 batches in torchvision's pickle format: rows are 3072 bytes, channel-major.
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)  # fake files, no md5
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    rows = rng.integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8)
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({"data": rows, "labels": [1, 2, 3, 4]}, f)
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES}, f)
    cifar = load_torchvision("cifar10", "test", root=tmp_path)
    assert cifar.images.shape == (4, 3, 32, 32) and cifar.images.is_contiguous()
    assert torch.equal(cifar.images.reshape(4, -1), torch.from_numpy(rows))
    assert cifar.labels.tolist() == [1, 2, 3, 4] and cifar.classes == CIFAR_CLASSES


def test_load_torchvision_absent_suggests_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        load_torchvision("cifar100", "train", root=tmp_path)


# ------------------------------------------------------------------------------ BatchIterator


def _toy_set(n: int = 23) -> ImageSet:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageSet(images, torch.arange(n) % 3, ["a", "b", "c"])


def test_batch_iterator_covers_every_index_once():
    data = _toy_set()
    batches = BatchIterator(data, batch_size=5, drop_last=False, seed=1)
    assert len(batches) == 5
    for _ in range(2):
        seen = []
        for images, labels, indices in batches:
            assert torch.equal(images, data.images[indices]) and torch.equal(labels, data.labels[indices])
            seen += indices.tolist()
        assert sorted(seen) == list(range(len(data)))

    dropping = BatchIterator(data, batch_size=5, seed=1)
    seen = torch.cat([indices for _, _, indices in dropping])
    assert len(dropping) == 4 and len(seen) == 20 and len(set(seen.tolist())) == 20


def test_batch_iterator_is_reproducible_and_resumable():
    data = _toy_set()

    def epoch_orders(iterator, epochs):
        return [torch.cat([i for _, _, i in iterator]).tolist() for _ in range(epochs)]

    orders = epoch_orders(BatchIterator(data, batch_size=4, seed=7), 3)
    assert orders == epoch_orders(BatchIterator(data, batch_size=4, seed=7), 3)
    assert orders[0] != orders[1]  # a new order every epoch
    assert orders != epoch_orders(BatchIterator(data, batch_size=4, seed=8), 3)
    resumed = BatchIterator(data, batch_size=4, seed=7)
    resumed.set_epoch(2)
    assert epoch_orders(resumed, 1) == [orders[2]]
    ordered = BatchIterator(data, batch_size=4, shuffle=False)
    assert epoch_orders(ordered, 1) == [list(range(20))]


def test_batch_iterator_ranks_and_plain_tensors():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    ranks = [
        BatchIterator(images, batch_size=2, drop_last=False, seed=3, rank=rank, world_size=3)
        for rank in range(3)
    ]
    per_rank = [torch.cat([i for _, labels, i in it if labels is None]).tolist() for it in ranks]
    assert [len(p) for p in per_rank] == [4, 4, 4]  # 10 padded to 12 by wrapping
    assert set(sum(per_rank, [])) == set(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(images, batch_size=0)
    with pytest.raises(ValueError, match="no batch"):
        BatchIterator(images, batch_size=11)


@needs_cuda
def test_batch_iterator_copies_to_cuda():
    data = _toy_set()
    images, labels, indices = next(iter(BatchIterator(data, batch_size=4, device="cuda")))
    assert images.is_cuda and labels.is_cuda and indices.is_cuda
    assert torch.equal(images.cpu(), data.images[indices.cpu()])
    assert torch.equal(labels.cpu(), data.labels[indices.cpu()])
