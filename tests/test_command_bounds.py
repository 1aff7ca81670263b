"""Every command refuses a flag outside the bounds its config declares, before it writes any file.

The cases are generated from the declarations (``min`` / ``max`` / ``gt`` / ``lt`` /
``nonempty`` in each config field's metadata, :func:`core_ssl.config.field_rules`): one value
just outside each bound of each field of each command. Each must end with exit 2 and one line,
``error: --<flag> ...``, and leave the working folder and the run folder as they were.
"""

from __future__ import annotations

import importlib
import typing

import pytest
import torch

from core_ssl.cli import run_command
from core_ssl.config import _scalar_type, field_rules, out_of_bounds_values

# (command module [sub-command], config class, the flags it needs besides the one under test; {tmp} is the test's folder)
COMMANDS = {
    "vision_benchmarks.pretrain": ("vision_benchmarks.config:PretrainConfig", ["--device", "cpu", "--out", "{tmp}/run"]),
    "vision_benchmarks.evaluate": ("vision_benchmarks.evaluate:EvaluateConfig", ["--device", "cpu", "--run", "{tmp}/run"]),
    "vision_benchmarks.weights": ("vision_benchmarks.weights:ExportConfig", ["--run", "{tmp}/run"]),
    "vision_benchmarks.semisup": ("vision_benchmarks.evaluation.semisup:SemisupConfig",
                                  ["--device", "cpu", "--out", "{tmp}/out"]),
    "vision_benchmarks.ablate augmentations": ("vision_benchmarks.studies.ablation_configs:AugmentationsConfig",
                                               ["--device", "cpu", "--out", "{tmp}/out"]),
    "vision_benchmarks.ablate head": ("vision_benchmarks.studies.ablation_configs:HeadConfig",
                                      ["--device", "cpu", "--out", "{tmp}/out"]),
    "vision_benchmarks.ablate batch": ("vision_benchmarks.studies.ablation_configs:BatchConfig",
                                       ["--device", "cpu", "--out", "{tmp}/out"]),
    "rl_curl.train": ("rl_curl.train:TrainConfig", ["--env", "cartpole-swingup", "--device", "cpu",
                                                    "--run-dir", "{tmp}/run"]),
    "cut_translation.train": ("cut_translation.train:TrainConfig", ["--device", "cpu", "--run-dir", "{tmp}/run"]),
    "cut_translation.translate": ("cut_translation.translate:TranslateConfig",
                                  ["--device", "cpu", "--checkpoint", "{tmp}/g.safetensors", "--input", "{tmp}/in",
                                   "--output", "{tmp}/out"]),
    "cut_translation.evaluate": ("cut_translation.evaluate:EvaluateConfig", ["--device", "cpu", "--output", "{tmp}/e.json"]),
    "cut_translation.export": ("cut_translation.export:ExportConfig", ["--checkpoint", "{tmp}/best.pt",
                                                                       "--output", "{tmp}/g.safetensors"]),
    "rl_curl.evaluate": ("rl_curl.evaluate:EvaluateConfig", ["--device", "cpu", "--weights", "{tmp}/actor.safetensors"]),
    "core_ssl.demo": ("core_ssl.demo:DemoConfig", ["--device", "cpu", "--out", "{tmp}/demo"]),
    "rl_curl.report": ("rl_curl.report:ReportConfig", ["{tmp}/runs"]),
    "cut_translation.report": ("cut_translation.report:ReportConfig", ["{tmp}/run"]),
}


def _command_line(command: str, tmp_path) -> tuple[object, list[str]]:
    """(the command's ``main``, its sub-command and the flags it needs) for a key of COMMANDS."""
    module, *sub_command = command.split()
    flags = [part.replace("{tmp}", str(tmp_path)) for part in COMMANDS[command][1]]
    return importlib.import_module(module).main, [*sub_command, *flags]


def _class(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _cases() -> list:
    cases = []
    for command, (spec, _) in COMMANDS.items():
        cls = _class(spec)
        hints = typing.get_type_hints(cls)
        for name, rule in field_rules(cls).items():
            kind = _scalar_type(hints[name])[0]
            values = out_of_bounds_values(rule, kind) + ([""] if rule.get("nonempty") else [])
            cases += [pytest.param(command, name, value, id=f"{command}--{name}={value}") for value in values]
    return cases


CASES = _cases()


def test_every_command_declares_bounds():
    commands = {case.values[0] for case in CASES}
    assert commands == set(COMMANDS) and len(CASES) > 100


@pytest.mark.parametrize("command,name,value", CASES)
def test_a_flag_out_of_its_declared_bounds_is_refused_before_any_file_is_written(command, name, value, tmp_path,
                                                                               monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a default folder (runs/...) would appear here
    main, flags = _command_line(command, tmp_path)
    flag = "--" + name.replace("_", "-")
    with pytest.raises(SystemExit) as stopped:
        run_command(main, [*flags, f"{flag}={value}"])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2, err
    last = err.splitlines()[-1]
    assert last.startswith(f"error: {flag} must") or f"argument {flag}" in last, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [name for name, (_, flags) in COMMANDS.items() if "--device" in flags])
def test_device_cuda_without_a_gpu_is_one_line_before_any_file_is_written(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, on any machine
    monkeypatch.chdir(tmp_path)
    main, flags = _command_line(command, tmp_path)
    flags[flags.index("--device") + 1] = "cuda"
    with pytest.raises(SystemExit) as stopped:
        run_command(main, flags)
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1] == ("error: --device cuda was requested but CUDA is not available on this machine — "
                                    "use --device cpu or --device auto")
    assert list(tmp_path.iterdir()) == []
