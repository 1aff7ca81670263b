"""List-valued config fields: several values after one flag, every value checked against the
field's declared rules, saved and loaded like the scalar fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core_ssl.cli import UsageError
from core_ssl.config import _scalar_type, field_rules, load_config, parse_config, save_config, validate_config


@dataclass
class GridConfig:
    """A grid of runs."""

    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds", "min": 0})
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1], metadata={"help": "fractions", "gt": 0, "max": 1})
    heads: list[str] = field(default_factory=lambda: ["linear"], metadata={"help": "heads", "choices": ["none", "linear"]})
    names: list[str] | None = field(default=None, metadata={"help": "names", "nargs": "*", "metavar": "NAME"})
    inputs: list[Path] = field(default_factory=list, metadata={"help": "inputs", "nargs": "*"})


def test_a_list_flag_takes_several_values_and_keeps_its_default_when_absent():
    cfg = parse_config(GridConfig, ["--seeds", "0", "1", "2", "--heads", "none", "--inputs", "a", "b/c"])
    assert cfg.seeds == [0, 1, 2] and cfg.fractions == [0.01, 0.1] and cfg.heads == ["none"]
    assert cfg.inputs == [Path("a"), Path("b/c")] and cfg.names is None
    assert parse_config(GridConfig, ["--names"]).names == []  # nargs "*": none at all
    assert parse_config(GridConfig, ["--seeds=3"]).seeds == [3]
    assert _scalar_type(list[int]) == (int, False) and _scalar_type(list[str] | None) == (str, True)
    assert field_rules(GridConfig)["fractions"] == {"gt": 0, "max": 1}


@pytest.mark.parametrize("flags,message", [
    (["--seeds", "0", "-1"], "--seeds must be >= 0, got -1 — give 0 or more"),
    (["--fractions", "0.1", "0"], "--fractions must be in (0, 1], got 0.0 — give a value in (0, 1]"),
])
def test_every_value_of_a_list_is_checked_against_the_fields_bounds(flags, message):
    with pytest.raises(UsageError) as info:
        parse_config(GridConfig, flags)
    assert str(info.value) == message and info.value.exit_code == 2


def test_list_choices_are_checked_by_the_parser_and_on_configs_built_in_code(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_config(GridConfig, ["--heads", "linear", "mlp"])
    assert stopped.value.code == 2 and "invalid choice: 'mlp'" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--heads must be one of none, linear, got 'mlp'"):
        validate_config(GridConfig(heads=["linear", "mlp"]))


def test_help_names_the_command_and_the_values(capsys):
    with pytest.raises(SystemExit):
        parse_config(GridConfig, ["--help"], prog="grid run")
    text = capsys.readouterr().out
    assert text.startswith("usage: grid run") and "--names [NAME ...]" in text and "(default: [0])" in text


def test_list_fields_are_saved_and_loaded(tmp_path):
    cfg = parse_config(GridConfig, ["--seeds", "1", "2", "--inputs", "x", "--names", "a"])
    save_config(cfg, tmp_path)
    assert load_config(GridConfig, tmp_path) == cfg
