"""The run lifecycle: resume rules, fresh starts, the lock, signals and non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from core_ssl.checkpoint import load_checkpoint, save_checkpoint
from core_ssl.cli import CommandError
from core_ssl.logger import RunLogger
from core_ssl.run import (CHECKPOINT_FILE, LOCK_FILE, ConfigMismatch, NonFiniteLoss, NotARunFolder, RunFolder, RunLocked,
                          find_checkpoint, given_fields, is_run_folder, resume_config)
from tests.user_folder import contents, make_user_folder
from tests.spawn import project_env


@dataclass
class Config:
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    minutes: float | None = None
    threads: int | None = None
    run_dir: Path = field(default=Path("runs/x"))
    resume: bool = False


PRESETS = {"tiny": {"batch_size": 4, "epochs": 1}}


def test_given_fields_are_the_flags_and_the_named_presets_fields():
    assert given_fields(Config, ["--lr", "0.1", "--no-resume"]) == {"lr", "resume"}
    assert given_fields(Config, ["--preset", "tiny", "--threads", "1"], PRESETS) == {"batch_size", "epochs", "threads"}


def _resume(saved, argv):
    from core_ssl.config import parse_config

    requested = parse_config(Config, argv, presets=PRESETS)
    return resume_config(saved, requested, given_fields(Config, argv, PRESETS), "run_dir",
                         runtime=["threads"], extendable=["epochs", "minutes"])


def test_resume_continues_in_the_given_folder_with_the_saved_settings():
    saved = Config(lr=0.5, batch_size=8, run_dir=Path("/old/place"))
    cfg = _resume(saved, ["--run-dir", "/new/place", "--resume", "--threads", "2"])
    assert cfg == Config(lr=0.5, batch_size=8, run_dir=Path("/new/place"), resume=True, threads=2)
    # the same flags again are accepted (the preset's values are overridden by the flags, as at the start)
    assert _resume(saved, ["--preset", "tiny", "--batch-size", "8", "--lr", "0.5", "--epochs", "10",
                           "--run-dir", "d", "--resume"]).batch_size == 8


def test_resume_may_lengthen_training_but_not_shorten_it():
    saved = Config(epochs=10, minutes=2.0)
    assert (_resume(saved, ["--epochs", "15", "--minutes", "3"]).epochs, _resume(saved, ["--minutes", "3"]).minutes) == (15, 3.0)
    with pytest.raises(ConfigMismatch, match=r"--epochs: saved 10, given 5 \(training may be lengthened, not shortened\)"):
        _resume(saved, ["--epochs", "5"])


def test_resume_refuses_changed_settings_listing_every_difference():
    with pytest.raises(ConfigMismatch) as info:
        _resume(Config(batch_size=32), ["--lr", "0.1", "--preset", "tiny", "--epochs", "10"])
    message = str(info.value)
    assert "--batch-size: saved 32, given 4; --lr: saved 0.001, given 0.1" in message
    assert "--epochs" not in message.split(" — ")[0]  # equal values are no difference
    assert info.value.exit_code == 2


def _write_run(path: Path, step: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    save_checkpoint({"step": step}, path / CHECKPOINT_FILE)


def test_fresh_start_refuses_a_folder_with_a_checkpoint_and_resume_needs_one(tmp_path):
    _write_run(tmp_path / "run", 3)
    with pytest.raises(CommandError, match="already holds a run .* pass --resume"):
        RunFolder(tmp_path / "run", resume=False, command="cmd").open()
    with pytest.raises(CommandError, match="holds no checkpoint"):
        RunFolder(tmp_path / "empty", resume=True, command="cmd").open()
    assert not (tmp_path / "empty").exists()


def test_legacy_checkpoint_names_are_found(tmp_path):
    save_checkpoint({"step": 1}, tmp_path / "last.pt")
    assert find_checkpoint(tmp_path) == tmp_path / "last.pt"
    with RunFolder(tmp_path, resume=True, command="cmd") as run:
        assert run.load() == {"step": 1}
        run.save({"step": 2}, "step 2")
    assert find_checkpoint(tmp_path) == tmp_path / CHECKPOINT_FILE


def test_a_restart_before_the_first_checkpoint_starts_new_logs(tmp_path):
    run_dir = tmp_path / "run"
    with RunFolder(run_dir, resume=False, command="cmd") as run:  # a run killed before its first checkpoint
        run.save_config(Config(run_dir=run_dir))
        logger = RunLogger(run_dir)
        logger.log("train", 1, loss=1.0)
        logger.close()
    (run_dir / "notes.txt").write_text("the user's own file")
    with RunFolder(run_dir, resume=False, command="cmd"):
        pass
    assert sorted(p.name for p in run_dir.iterdir()) == [".core_ssl_run", ".lock", "notes.txt"]


def test_a_folder_that_is_not_a_run_is_refused_and_nothing_in_it_changes(tmp_path):
    user = tmp_path / "u"
    files = make_user_folder(user)
    with pytest.raises(NotARunFolder) as info:
        RunFolder(user, resume=False, command="cmd").open()
    assert str(info.value) == (
        f"--run-dir {user} is not empty (config.json, metrics.jsonl, tensorboard/, train.csv) and is not a run "
        "folder of this toolkit (no .core_ssl_run marker), so a run there could overwrite files it did not write "
        f"— give a new or empty folder as --run-dir; nothing in {user} was changed")
    assert info.value.exit_code == 2
    assert contents(user) == files  # not even a lock file was added
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotARunFolder, match="is a file, not a folder"):
        RunFolder(tmp_path / "file", resume=False, command="cmd").open()


def test_an_empty_folder_becomes_a_marked_run_and_an_unused_one_is_removed_again(tmp_path):
    (tmp_path / "empty").mkdir()
    with RunFolder(tmp_path / "empty", resume=False, command="python -m app.train"):
        pass
    assert is_run_folder(tmp_path / "empty")
    assert json.loads((tmp_path / "empty" / ".core_ssl_run").read_text())["command"] == "python -m app.train"
    with RunFolder(tmp_path / "new", resume=False, command="cmd"):
        assert is_run_folder(tmp_path / "new")
    assert not (tmp_path / "new").exists()  # created here and left without a file of its own


def test_a_folder_created_and_left_empty_is_removed(tmp_path):
    with pytest.raises(RuntimeError, match="data missing"):
        with RunFolder(tmp_path / "new", resume=False, command="cmd"):
            raise RuntimeError("data missing")
    assert not (tmp_path / "new").exists()


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    run = tmp_path / "run"
    second = ("import sys\n"
              "from core_ssl.cli import run_command\n"
              "from core_ssl.run import RunFolder\n"
              "run_command(lambda argv: RunFolder(argv[0], resume=False, command='cmd').open())\n")
    root = Path(__file__).resolve().parents[2]
    with RunFolder(run, resume=False, command="cmd"):
        refused = subprocess.run([sys.executable, "-c", second, str(run)], cwd=root, capture_output=True, text=True,
                                 env=project_env(), timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (f"error: {run} is in use: process {os.getpid()} is training into it — wait "
                                      "for it to finish (or stop it), or choose another --run-dir")
    with RunFolder(run, resume=False, command="cmd"):  # released on close
        with pytest.raises(RunLocked):  # and held against this process's own second attempt too
            RunFolder(run, resume=False, command="cmd").open()


def test_other_ranks_leave_the_folder_to_the_main_process(tmp_path):
    """Under torchrun, rank 1 may look while rank 0 is between writing its lock and its marker:
    only rank 0 checks and claims the folder, the other ranks neither refuse nor write."""
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text("")  # rank 0 has locked the folder, its marker is not written yet
    with RunFolder(run, resume=False, command="cmd", main_process=False):
        pass
    assert contents(run) == {LOCK_FILE: ""}


def test_the_first_signal_asks_for_a_stop_the_second_stops_at_once(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with RunFolder(tmp_path / "run", resume=False, command="python -m app.train") as run:
        os.kill(os.getpid(), signal.SIGTERM)
        assert run.stop_signal == signal.SIGTERM
        run.save({"step": 4}, "step 4")
        error = run.interrupted()
        assert error.exit_code == 143
        assert str(error) == (f"stopped by SIGTERM; checkpoint saved at step 4 — continue with: python -m app.train "
                              f"--run-dir {tmp_path / 'run'} --resume")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    with RunFolder(tmp_path / "run", resume=False, command="cmd") as run:
        run.save({"w": torch.ones(2)}, "step 10", losses={"loss": torch.tensor(0.5)})
        run.check_finite("step 15", loss=0.4, aux=torch.tensor(1.0))
        with pytest.raises(NonFiniteLoss) as info:
            run.save({"w": torch.full((2,), float("nan"))}, "step 20", losses={"loss": 0.3, "critic_loss": torch.tensor(float("inf"))})
    assert str(info.value) == ("critic_loss became inf at step 20; the run stopped and the last good checkpoint "
                               "(checkpoint.pt, step 10) is kept — lower the learning rate (--lr), or turn bf16 off "
                               "(--bf16 off), in a new run in another --run-dir (--resume continues only with this run's "
                               "saved settings)")
    assert torch.equal(load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["w"], torch.ones(2))
    with RunFolder(tmp_path / "fresh", resume=False, command="cmd") as run, pytest.raises(NonFiniteLoss) as info:
        run.check_finite("step 3", loss=float("nan"))
    assert str(info.value).endswith("no checkpoint was written — lower the learning rate (--lr), or turn bf16 off "
                                    "(--bf16 off), and start again (the same --run-dir may be used: it holds no "
                                    "checkpoint)")


def test_config_and_summary_are_written_whole(tmp_path):
    with RunFolder(tmp_path / "run", resume=False, command="cmd") as run:
        run.save_config(Config(run_dir=tmp_path / "run"))
        run.write_summary({"steps": 3, "loss": 0.25})
    assert json.loads((tmp_path / "run" / "config.json").read_text())["run_dir"] == str(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == {"steps": 3, "loss": 0.25}
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_every_start_and_resume_records_the_machine(tmp_path):
    """machine.jsonl gets one line of machine facts per start or resume (config.json written)."""
    import json

    from core_ssl.device import machine_facts
    from core_ssl.run import MACHINE_FILE, RunFolder

    run_dir = tmp_path / "run"
    for resume in (False, True):
        with RunFolder(run_dir, resume=resume, command="python -m x") as run:
            run.save_config(Config(run_dir=run_dir))
            if not resume:
                run.save({"step": 1}, "step 1")
    lines = [json.loads(line) for line in (run_dir / MACHINE_FILE).read_text().splitlines()]
    assert [line["resume"] for line in lines] == [False, True]
    assert set(machine_facts()) <= set(lines[0]) and lines[0]["cpu_capability"] == machine_facts()["cpu_capability"]
