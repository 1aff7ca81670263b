"""Dataclass configs from the command line; metric streams; device selection."""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import torch

from core_ssl.cli import UsageError

from core_ssl.config import load_config, parse_config, save_config
from core_ssl.device import resolve_device
from core_ssl.logger import RunLogger


@dataclass
class Example:
    """An example config."""
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    batch_size: int = 256
    method: Literal["simclr", "byol"] = "simclr"
    augment: bool = True
    data_root: Path | None = None
    name: str = "run"


PRESETS = {"cpu": {"batch_size": 64, "lr": 3e-4}}


def test_defaults_presets_and_flags_in_that_order():
    assert parse_config(Example, []) == Example()
    cfg = parse_config(Example, ["--preset", "cpu", "--lr", "0.5", "--no-augment", "--method", "byol",
                                 "--data-root", "/tmp/x"], presets=PRESETS)
    assert cfg == Example(lr=0.5, batch_size=64, method="byol", augment=False, data_root=Path("/tmp/x"))



@dataclass
class Chooser:
    """A config whose own field is named preset (it picks another command's preset)."""
    preset: str = "cpu"


def test_a_field_named_preset_is_a_plain_flag_where_the_command_has_no_presets():
    assert parse_config(Chooser, ["--preset", "paper"]) == Chooser(preset="paper")
    assert parse_config(Chooser, []) == Chooser()


def test_bad_flags_are_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_config(Example, ["--method", "mocov9"])
    assert "invalid choice: 'mocov9'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(Example, ["--batch-size", "many"])


def test_help_lists_every_field_with_its_default(capsys):
    with pytest.raises(SystemExit):
        parse_config(Example, ["--help"], presets=PRESETS)
    text = capsys.readouterr().out
    for flag in ("--lr", "--batch-size", "--method", "--augment", "--no-augment", "--data-root", "--preset"):
        assert flag in text
    assert "learning rate" in text and "default: 0.001" in text


def test_config_saved_and_loaded(tmp_path):
    cfg = Example(lr=0.1, data_root=Path("/data"))
    save_config(cfg, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["data_root"] == "/data"
    assert load_config(Example, tmp_path) == cfg
    with pytest.raises(FileNotFoundError, match="no config at"):
        load_config(Example, tmp_path / "missing")


def test_logger_writes_csv_jsonl_tensorboard_and_truncates_on_resume(tmp_path):
    with RunLogger(tmp_path) as logger:
        for step in range(0, 50, 10):
            logger.log("train", step, loss=torch.tensor(1.0 / (step + 1)), lr=0.1)
        logger.log("eval", 40, knn_top1=0.5)
        with pytest.raises(ValueError, match="new column"):
            logger.log("train", 60, loss=1.0, surprise=2)
        logger.truncate_after(20)
        assert [r["step"] for r in logger.read("train")] == [0, 10, 20]
        assert logger.read("eval") == []
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 10, 20] and float(rows[1]["loss"]) == pytest.approx(1 / 11)
    assert any((tmp_path / "tensorboard").iterdir())
    # a second logger (a resumed run) keeps appending under the same columns
    RunLogger(tmp_path, tensorboard=False).log("train", 30, loss=0.1)
    with open(tmp_path / "train.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [0, 10, 20, 30]


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available on this machine — use --device cpu"):
            resolve_device("cuda")
    if torch.cuda.is_available():
        with pytest.raises(UsageError, match="this machine has .* CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_a_logger_that_logs_nothing_leaves_no_tensorboard_file(tmp_path):
    """A resume of a finished run logs no row: it must not add an empty events file each time."""
    with RunLogger(tmp_path):
        pass
    assert not (tmp_path / "tensorboard").exists()
    with RunLogger(tmp_path) as logger:
        logger.log("train", 1, loss=0.5)
    assert len(list((tmp_path / "tensorboard").glob("events.*"))) == 1
