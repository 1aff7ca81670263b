"""The one configuration pipeline: parse once, merge on resume, resolve, validate declared bounds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core_ssl.cli import UsageError
from core_ssl.config import describe_bounds, field_rules, save_config, validate_config
from core_ssl.pipeline import ConfigPipeline
from core_ssl.run import ConfigMismatch


@dataclass
class Config:
    lr: float | None = field(default=None, metadata={"gt": 0})
    discount: float = field(default=0.99, metadata={"min": 0, "max": 1})
    warmup: float = field(default=0.1, metadata={"min": 0, "lt": 1})
    batch_size: int = field(default=32, metadata={"min": 1})
    epochs: int = field(default=10, metadata={"min": 0})
    device: str = "cpu"
    run_dir: Path | None = field(default=None, metadata={"nonempty": True})
    resume: bool = False


PRESETS = {"small": {"batch_size": 4}, "big": {"batch_size": 256}}


def fill_lr(cfg: Config) -> Config:
    return cfg if cfg.lr is not None else dataclasses.replace(cfg, lr=0.01 * cfg.batch_size)


PIPELINE = ConfigPipeline(Config, presets=PRESETS, run_dir_field="run_dir", runtime=("device",),
                          extendable=("epochs",), resolve=fill_lr)


def test_one_parse_gives_the_config_and_the_fields_named():
    cfg, given = PIPELINE.read(["--preset", "small", "--epochs", "3"])
    assert (cfg.batch_size, cfg.epochs, cfg.lr) == (4, 3, None)
    assert given == {"batch_size", "epochs"}
    assert PIPELINE.finish(cfg, given).lr == pytest.approx(0.04)


def test_a_default_preset_chosen_from_the_flags_is_not_a_flag_given():
    pipeline = ConfigPipeline(Config, presets=PRESETS, default_preset=lambda flags: "big" if flags.get("device") == "cuda" else "small")
    cfg, given = pipeline.read(["--device", "cuda"])
    assert cfg.batch_size == 256 and given == {"device"}
    assert pipeline.read(["--device", "cuda", "--batch-size", "8"])[0].batch_size == 8


def test_resume_continues_the_saved_config_and_refuses_other_settings(tmp_path):
    save_config(Config(batch_size=8, epochs=5, lr=0.5, run_dir=tmp_path), tmp_path)
    cfg = PIPELINE.parse(["--run-dir", str(tmp_path), "--resume", "--device", "cuda", "--epochs", "9"])
    assert (cfg.batch_size, cfg.lr, cfg.epochs, cfg.device, cfg.resume) == (8, 0.5, 9, "cuda", True)
    with pytest.raises(ConfigMismatch, match="--batch-size: saved 8, given 16"):
        PIPELINE.parse(["--run-dir", str(tmp_path), "--resume", "--batch-size", "16"])
    with pytest.raises(UsageError, match="--resume needs --run-dir"):
        PIPELINE.parse(["--resume"])


def test_the_values_given_are_checked_before_defaults_are_derived_from_them():
    def resolve(cfg):
        assert cfg.batch_size >= 1, "resolve must not see an out-of-bounds value"
        return cfg

    with pytest.raises(UsageError, match="--batch-size must be >= 1, got 0"):
        ConfigPipeline(Config, resolve=resolve).parse(["--batch-size", "0"])


@pytest.mark.parametrize("flags,message", [
    (["--lr", "0"], "--lr must be > 0, got 0.0 — give a value > 0"),
    (["--discount", "1.5"], "--discount must be in [0, 1], got 1.5 — give a value in [0, 1]"),
    (["--warmup", "1"], "--warmup must be in [0, 1), got 1.0 — give a value in [0, 1)"),
    (["--epochs", "-1"], "--epochs must be >= 0, got -1 — give 0 or more"),
    (["--discount", "nan"], "--discount must be in [0, 1], got nan — give a value in [0, 1]"),
])
def test_each_declared_bound_is_refused_with_the_flag_the_value_and_the_fix(flags, message):
    with pytest.raises(UsageError) as info:
        PIPELINE.parse(flags)
    assert str(info.value) == message and info.value.exit_code == 2


def test_declared_rules_are_listed_and_checked_on_configs_built_in_code():
    rules = field_rules(Config)
    assert rules["discount"] == {"min": 0, "max": 1} and rules["run_dir"] == {"nonempty": True}
    assert "device" not in rules and "resume" not in rules
    assert [describe_bounds(rules[n]) for n in ("lr", "warmup", "batch_size")] == ["> 0", "in [0, 1)", ">= 1"]
    validate_config(Config(lr=None))  # None is always accepted
    with pytest.raises(UsageError, match="--batch-size must be >= 1"):
        validate_config(Config(batch_size=0))
    with pytest.raises(SystemExit):  # an empty path is no folder (the parser refuses it, exit 2)
        PIPELINE.read(["--run-dir", ""])
