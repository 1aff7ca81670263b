"""Transfer evaluation: folder layouts, grey and odd-sized images, the CLI's files and table."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core_ssl import data as data_mod
from core_ssl.checkpoint import save_checkpoint
from core_ssl.config import save_config
from core_ssl.data import load_dataset, resize_images
from vision_benchmarks import evaluate
from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods import build_method
from vision_benchmarks.evaluation.transfer import dataset_tag, encoder_input_channels, load_transfer_data


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data_mod.CACHE_ENV_VAR, str(tmp_path / "cache"))


def make_run(run: Path, seed: int = 0) -> Path:
    """A run folder holding a randomly initialised SimCLR ConvNet (width 4) as pre-training leaves it."""
    torch.manual_seed(seed)
    method = build_method(PretrainConfig(method="simclr", width=4, proj_hidden=16, bf16=False, device="cpu",
                                         out=run, seed=seed), 10, 1)
    run.mkdir(parents=True)
    save_config(method.cfg, run)
    save_checkpoint({"method": method.state_dict()}, run / "last.pt")
    return run


def write_class_images(folder: Path, count: int, rng: np.random.Generator, grey: bool = False,
                       sizes: tuple[tuple[int, int], ...] = ((40, 40),)) -> None:
    """``folder/dark/*`` and ``folder/bright/*``: noisy images around 50 or 200 (separable by any encoder)."""
    for level, name in ((50, "dark"), (200, "bright")):
        for i in range(count):
            height, width = sizes[i % len(sizes)]
            shape = (height, width) if grey else (height, width, 3)
            array = np.clip(level + rng.integers(-30, 31, shape), 0, 255).astype(np.uint8)
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(folder / name / f"{i:03d}.png")


def test_train_val_folder_of_grey_images_of_many_sizes(tmp_path):
    rng = np.random.default_rng(0)
    sizes = ((40, 40), (57, 31), (96, 64))
    write_class_images(tmp_path / "grey" / "train", 12, rng, grey=True, sizes=sizes)
    write_class_images(tmp_path / "grey" / "val", 5, rng, grey=True, sizes=sizes)
    data = load_transfer_data(str(tmp_path / "grey"), image_size=32, channels=3)
    assert data.layout == "train / val" and data.train.classes == ["bright", "dark"]
    assert data.train.images.shape == (24, 3, 32, 32) and data.test.images.shape == (10, 3, 32, 32)
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 1])  # grey replicated to RGB
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])
    # resized once, from the full-size image, straight to the encoder's side
    original = torch.from_numpy(np.array(Image.open(tmp_path / "grey" / "train" / "bright" / "002.png")))
    assert original.shape == (96, 64)
    assert torch.equal(data.train.images[2, :1], resize_images(original[None, None], 32)[0])
    grey = load_transfer_data(str(tmp_path / "grey"), image_size=16, channels=1)
    assert grey.train.images.shape == (24, 1, 16, 16)


def test_train_test_layout_aligns_classes_by_name(tmp_path):
    rng = np.random.default_rng(1)
    write_class_images(tmp_path / "ds" / "train", 4, rng)
    write_class_images(tmp_path / "ds" / "test", 3, rng)
    for extra in ("zebra",):  # a class only in training: test labels still index train.classes
        (tmp_path / "ds" / "train" / extra).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "train" / extra / "0.png")
    data = load_transfer_data(str(tmp_path / "ds"), image_size=32, channels=3)
    assert data.layout == "train / test" and data.train.classes == ["bright", "dark", "zebra"]
    assert data.test.classes == data.train.classes and data.test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "ds" / "test" / "yak").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "test" / "yak" / "0.png")
    with pytest.raises(ValueError, match="classes that training lacks: yak"):
        load_transfer_data(str(tmp_path / "ds"), image_size=32, channels=3)


def test_single_folder_is_split_by_a_seeded_stratified_fraction(tmp_path):
    rng = np.random.default_rng(2)
    write_class_images(tmp_path / "flat", 10, rng)
    data = load_transfer_data(str(tmp_path / "flat"), image_size=32, channels=3, test_fraction=0.3, seed=5)
    assert data.test.labels.bincount().tolist() == [3, 3] and data.train.labels.bincount().tolist() == [7, 7]
    assert set(data.train.names).isdisjoint(data.test.names) and len(set(data.train.names + data.test.names)) == 20
    again = load_transfer_data(str(tmp_path / "flat"), image_size=32, channels=3, test_fraction=0.3, seed=5)
    assert again.test.names == data.test.names
    other = load_transfer_data(str(tmp_path / "flat"), image_size=32, channels=3, test_fraction=0.3, seed=6)
    assert other.test.names != data.test.names
    (tmp_path / "only_val" / "val" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no train/ folder"):
        load_transfer_data(str(tmp_path / "only_val"), image_size=32, channels=3)


def test_fashion_mnist_becomes_rgb_at_the_encoder_size():
    test = load_dataset("fashion-mnist", "test", size=32, channels=3)
    assert test.images.shape == (10000, 3, 32, 32)
    assert torch.equal(test.images[:, 0], test.images[:, 2])
    raw = load_dataset("fashion-mnist", "test")
    assert torch.equal(test.images[:5, :1], resize_images(raw.images[:5], 32))


def test_catdog_photos_split_into_train_and_test():
    data = load_transfer_data("catdog", image_size=32, channels=3, test_fraction=0.2, seed=0)
    assert data.train.classes == ["cat", "dog"] and data.train.images.shape == (1600, 3, 32, 32)
    assert data.test.labels.bincount().tolist() == [200, 200]


def test_cli_transfers_to_several_datasets_and_writes_json_csv_and_table(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    rng = np.random.default_rng(3)
    write_class_images(tmp_path / "grey_tv" / "train", 30, rng, grey=True, sizes=((28, 28), (50, 40)))
    write_class_images(tmp_path / "grey_tv" / "val", 10, rng, grey=True)
    write_class_images(tmp_path / "flat photos", 20, rng, sizes=((64, 48),))
    results = evaluate.main(["--run", str(run), "--dataset", str(tmp_path / "grey_tv"),
                             f"--dataset={tmp_path / 'flat photos'}", "--device", "cpu"])
    assert set(results) == {"grey_tv", "flat-photos"}
    for tag, record in results.items():
        assert set(record["protocols"]) == {"linear", "knn"}
        assert record["protocols"]["linear"]["top1"] > 0.9  # dark vs bright: separable by any encoder
        assert record["image_size"] == 32 and record["channels"] == 3
        saved = json.loads((run / f"eval_transfer_{tag}.json").read_text())
        assert saved["protocols"]["knn"]["top1"] == record["protocols"]["knn"]["top1"]
        rows = list(csv.DictReader((run / f"eval_transfer_{tag}.csv").open()))
        assert [row["protocol"] for row in rows] == ["linear", "knn"]
        assert float(rows[0]["top1"]) == pytest.approx(record["protocols"]["linear"]["top1"], abs=1e-6)
    assert results["grey_tv"]["layout"] == "train / val" and results["grey_tv"]["test_images"] == 20
    assert results["flat-photos"]["train_images"] == 32 and results["flat-photos"]["test_images"] == 8
    table = capsys.readouterr().out
    assert "grey_tv" in table and "flat photos" in table and "linear" in table and "knn" in table


def test_a_dataset_of_one_class_is_refused_not_scored_one(tmp_path, capsys):
    from core_ssl.cli import run_command

    run = make_run(tmp_path / "run")
    rng = np.random.default_rng(4)
    for split in ("train", "val"):
        write_class_images(tmp_path / "one" / split, 6, rng)
        shutil.rmtree(tmp_path / "one" / split / "bright")
    with pytest.raises(SystemExit) as stopped:
        run_command(evaluate.main, ["--run", str(run), "--dataset", str(tmp_path / "one"), "--device", "cpu"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: the evaluation's training images hold 1 class(es) (dark): a classifier would be right by "
        "construction (top-1 1.0). Give a dataset with at least two classes (one sub-folder per class)")
    assert not list(run.glob("eval_transfer_*"))


def test_helpers():
    assert dataset_tag("fashion-mnist") == "fashion-mnist" and dataset_tag("/x/my photos.zip") == "my-photos"
    assert evaluate.gather_repeated(["--run", "r", "--dataset", "a", "--dataset=b", "--seed", "1"], "--dataset") \
        == ["--run", "r", "--seed", "1", "--dataset", "a,b"]
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    assert encoder_input_channels(conv) == 1


def test_zip_of_a_folder_and_the_strict_flag(tmp_path):
    import shutil
    import warnings

    rng = np.random.default_rng(4)
    write_class_images(tmp_path / "pets" / "train", 6, rng)
    write_class_images(tmp_path / "pets" / "val", 2, rng)
    (tmp_path / "pets" / "train" / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    archive = Path(shutil.make_archive(str(tmp_path / "pets"), "zip", tmp_path, "pets"))
    with pytest.warns(data_mod.CorruptImageWarning, match=r"pets/train/dark/broken\.png"):
        data = load_transfer_data(str(archive), image_size=32, channels=3)
    assert data.layout == "train / val" and len(data.train) == 12 and len(data.test) == 4
    run = make_run(tmp_path / "run")
    with warnings.catch_warnings(), pytest.raises(ValueError, match=r"cannot decode 'pets/train/dark/broken\.png'"):
        warnings.simplefilter("ignore")
        evaluate.main(["--run", str(run), "--dataset", str(archive), "--strict", "--device", "cpu"])
