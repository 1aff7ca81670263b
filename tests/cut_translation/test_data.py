"""Unpaired data: the cat/dog zip, folders with grey / colour domains, held-out splits,
augmentation and epochs."""

import pytest
import torch
from PIL import Image

from core_ssl.data import resize_images
from cut_translation.data import (UnpairedBatches, UnpairedData, augment_batch, default_load_size, load_unpaired,
                                  parse_data_spec, to_model_range, to_uint8)


def write_images(folder, count, mode, size=(40, 36), seed=0):
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    channels = 1 if mode == "L" else 3
    for i in range(count):
        pixels = torch.randint(0, 256, (size[1], size[0], channels), generator=generator, dtype=torch.uint8)
        Image.fromarray(pixels.squeeze(-1).numpy(), mode=mode).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def catdog():
    return load_unpaired("catdog-128.zip", size=64, holdout=100, seed=0)


def test_catdog_zip_with_held_out_split(catdog):
    data = catdog
    assert data.train_a.shape == (900, 3, 72, 72) and data.train_b.shape == (900, 3, 72, 72)
    assert data.test_a.shape == (100, 3, 64, 64) and data.test_b.shape == (100, 3, 64, 64)
    assert data.train_a.dtype == torch.uint8 and data.load_size == default_load_size(64) == 72


def test_grey_and_colour_domains(tmp_path):
    write_images(tmp_path / "grey" / "trainA", 5, "L")
    write_images(tmp_path / "grey" / "trainB", 6, "L", seed=1)
    grey = load_unpaired(tmp_path / "grey", size=32, holdout=2)
    assert grey.channels == 1 and grey.train_a.shape == (3, 1, 36, 36) and grey.test_b.shape == (2, 1, 32, 32)

    write_images(tmp_path / "mixed" / "trainA", 4, "L")
    write_images(tmp_path / "mixed" / "trainB", 4, "RGB", seed=1)
    mixed = load_unpaired(tmp_path / "mixed", size=32, holdout=1)
    assert mixed.channels == 3 and mixed.train_a.shape[1] == 3
    assert torch.equal(mixed.train_a[:, 0], mixed.train_a[:, 2])  # grey expanded to colour


def test_test_folders_are_the_held_out_split(tmp_path):
    for name, count in (("trainA", 4), ("trainB", 5), ("testA", 2), ("testB", 3)):
        write_images(tmp_path / name, count, "RGB", seed=count)
    data = load_unpaired(tmp_path, size=32, holdout=999)
    assert (len(data.train_a), len(data.train_b), len(data.test_a), len(data.test_b)) == (4, 5, 2, 3)


def test_clear_errors(tmp_path):
    write_images(tmp_path / "trainA", 3, "RGB")
    with pytest.raises(ValueError, match="no trainB/"):
        load_unpaired(tmp_path, size=32)
    write_images(tmp_path / "trainB", 3, "RGB")
    with pytest.raises(ValueError, match="--holdout"):
        load_unpaired(tmp_path, size=32, holdout=3)
    with pytest.raises(ValueError, match="divisible by 4"):
        load_unpaired(tmp_path, size=50, holdout=1)
    with pytest.raises(FileNotFoundError):
        load_unpaired(tmp_path / "missing", size=32)


def test_augment_and_epochs(catdog):
    images = torch.arange(2 * 3 * 10 * 10, dtype=torch.int64).remainder(256).to(torch.uint8).view(2, 3, 10, 10)
    out = augment_batch(images, 8, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 8, 8) and out.min() >= -1 and out.max() <= 1
    assert torch.equal(to_uint8(to_model_range(images)), images)

    batches = UnpairedBatches(catdog, batch_size=4, seed=0)
    assert batches.steps_per_epoch == 900 // 4
    first = [pair for pair, _ in zip(batches.epoch(), range(3))]
    assert all(a.shape == b.shape == (4, 3, 64, 64) for a, b in first)
    replay = UnpairedBatches(catdog, batch_size=4, seed=0)
    assert torch.equal(next(replay.epoch())[0], first[0][0])  # seeded order and augmentation


def write_class_zip(path, classes, counts, size=32):
    """A zip laid out like cifar10-jpeg.zip: ``cifar10/{train,test}/<class>/NNNN.png``."""
    import io
    import zipfile

    generator = torch.Generator().manual_seed(0)
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in counts.items():
            for label, name in enumerate(classes):
                for i in range(count):
                    pixels = torch.full((size, size, 3), 40 * label, dtype=torch.uint8)
                    pixels += torch.randint(0, 20, pixels.shape, generator=generator, dtype=torch.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(pixels.numpy()).save(buffer, format="PNG")
                    archive.writestr(f"cifar10/{split}/{name}/{i:04d}.png", buffer.getvalue())
    return path


def test_class_pair_spec_takes_two_classes_with_the_test_split_held_out(tmp_path):
    archive = write_class_zip(tmp_path / "classes.zip", ["cat", "horse", "truck"], {"train": 6, "test": 3})
    assert parse_data_spec(f"{archive}:horse,truck") == (str(archive), ("horse", "truck"))
    assert parse_data_spec("catdog-128.zip") == ("catdog-128.zip", None)
    data = load_unpaired(f"{archive}:horse,truck", size=32, holdout=999)
    assert (len(data.train_a), len(data.train_b), len(data.test_a), len(data.test_b)) == (6, 6, 3, 3)
    assert data.train_a.shape[-1] == default_load_size(32) and data.test_a.shape[-1] == 32
    # domain A is the horse class (value 40 + noise), domain B the truck class (80 + noise)
    assert 40 <= data.test_a.float().mean() < 60 and 80 <= data.test_b.float().mean() < 100
    with pytest.raises(ValueError, match="classes are: cat, horse, truck"):
        load_unpaired(f"{archive}:horse,zebra", size=32)
    with pytest.raises(ValueError, match="two different class names"):
        parse_data_spec(f"{archive}:horse,horse")


def test_batches_draw_b_with_replacement_and_resize_in_the_decay_epochs():
    count = 30
    index_images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 3, 36, 36)
    data = UnpairedData(train_a=index_images.clone(), train_b=index_images.clone(), test_a=index_images[:2, :, :32, :32],
                        test_b=index_images[:2, :, :32, :32], size=32, load_size=36, channels=3)
    batches = UnpairedBatches(data, batch_size=1, seed=0)
    seen_a, seen_b = [], []
    for a, b in batches.epoch():
        seen_a.append(round(to_uint8(a)[0, 0, 0, 0].item()))
        seen_b.append(round(to_uint8(b)[0, 0, 0, 0].item()))
    assert sorted(seen_a) == list(range(count))  # A: one shuffled pass
    assert len(set(seen_b)) < count  # B: uniform draws with replacement repeat some images
    # decay epochs: the whole load_size image resized to size, not cropped (up to the flip)
    gradient = torch.arange(36, dtype=torch.uint8).mul(7).view(1, 1, 1, 36).expand(1, 3, 36, 36).contiguous()
    resized = to_uint8(augment_batch(gradient, 32, torch.Generator().manual_seed(1), crop=False))
    expected = resize_images(gradient, 32)
    assert torch.equal(resized, expected) or torch.equal(resized, expected.flip(3))


def test_a_truncated_zip_is_named_with_how_to_recover(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "whole.zip", "w") as archive:
        for domain in ("trainA", "trainB"):
            for i in range(3):
                archive.writestr(f"{domain}/{i}.txt", "x" * 2000)
    (tmp_path / "cut.zip").write_bytes((tmp_path / "whole.zip").read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"cut.zip is a damaged or truncated zip archive .*zip -FF"):
        load_unpaired(tmp_path / "cut.zip", size=32)


def test_strict_loading_stops_at_an_unreadable_image(tmp_path):
    write_images(tmp_path / "trainA", 6, "RGB")
    write_images(tmp_path / "trainB", 6, "RGB")
    (tmp_path / "trainB" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    with pytest.raises(ValueError, match="cannot decode 'trainB/broken.png'"):
        load_unpaired(tmp_path, size=32, holdout=2, strict=True)
    from core_ssl.data import CorruptImageWarning

    with pytest.warns(CorruptImageWarning, match="--strict"):
        assert len(load_unpaired(tmp_path, size=32, holdout=2).train_b) == 4
