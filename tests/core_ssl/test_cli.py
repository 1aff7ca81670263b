"""The command-line error wrapper: one line `error: <what> — <what to do>`, exit codes, --debug."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import torch

from core_ssl import checkpoint
from core_ssl.cli import CommandError, RunInterrupted, UsageError, run_command


def _run(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_command(main, argv)
    return exit_info.value.code, capsys.readouterr().err


def test_success_exits_0_with_the_arguments_passed_on(capsys):
    seen = []
    code, err = _run(seen.append, ["--a", "1"], capsys)
    assert code == 0 and seen == [["--a", "1"]] and err == ""


@pytest.mark.parametrize("error, expected_code", [(CommandError("the thing broke", "do this"), 1),
                                                  (UsageError("--batch-size 0", "give a positive size"), 2),
                                                  (ValueError("--lr must be > 0"), 1)])
def test_expected_failures_are_one_line_without_traceback(capsys, error, expected_code):
    def main(argv):
        raise error

    code, err = _run(main, [], capsys)
    assert code == expected_code
    assert err.strip().splitlines() == [f"error: {error}"] and "Traceback" not in err
    if isinstance(error, CommandError):
        assert err.strip() == f"error: {error.what} — {error.fix}"


def test_debug_shows_the_traceback_and_is_not_passed_on(capsys):
    seen = []

    def main(argv):
        seen.append(argv)
        raise CommandError("broken", "fix it")

    code, err = _run(main, ["--x", "--debug"], capsys)
    assert code == 1 and seen == [["--x"]]
    assert "Traceback" in err and err.strip().endswith("error: broken — fix it")


def test_a_bug_keeps_its_traceback():
    def main(argv):
        raise KeyError("programming error")

    with pytest.raises(KeyError):
        run_command(main, [])


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interruption_exits_128_plus_the_signal_with_how_to_resume(capsys, signum, code):
    def main(argv):
        raise RunInterrupted(signum, "runs/x", "checkpoint saved at step 7", "continue with: cmd --run-dir runs/x --resume")

    exit_code, err = _run(main, [], capsys)
    assert exit_code == code
    assert err.strip() == (f"error: stopped by {signal.Signals(signum).name}; checkpoint saved at step 7 — "
                           "continue with: cmd --run-dir runs/x --resume")


def test_disk_full_during_a_checkpoint_save(tmp_path, monkeypatch, capsys):
    """A checkpoint saved onto a full disk (simulated with /dev/full, which answers every write
    with ENOSPC): the user reads which file could not be written and how to go on, and the
    previous checkpoint is intact."""
    target = tmp_path / "checkpoint.pt"
    checkpoint.save_checkpoint({"step": 1}, target)
    real_mkstemp = checkpoint.tempfile.mkstemp

    def mkstemp_on_full_disk(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", mkstemp_on_full_disk)
    monkeypatch.setattr(checkpoint.os, "fchmod", lambda fd, mode: None)  # /dev/full keeps its mode

    def main(argv):
        checkpoint.save_checkpoint({"step": 2, "weights": torch.zeros(100_000)}, target)

    code, err = _run(main, [], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (f"error: no space left on the device writing {target} — free some disk space (or choose "
                           "a folder on another disk), then run the same command again (add --resume if the run "
                           "folder holds a checkpoint.pt, to continue from it)")
    assert checkpoint.load_checkpoint(target) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary left


def test_disk_full_inside_torch_save(capsys):
    """torch.save's own zip writer reports a short write only as 'unexpected pos'."""
    def main(argv):
        torch.save({"weights": torch.zeros(1000)}, open("/dev/full", "wb"))

    code, err = _run(main, [], capsys)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "unexpected pos" in err and "the disk is most likely full — free some disk space" in err


def test_disk_full_on_a_plain_write(capsys):
    def main(argv):
        with open("/dev/full", "w") as f:
            f.write("x" * 100_000)

    code, err = _run(main, [], capsys)
    assert code == 1 and err.startswith("error: no space left on the device") and "Traceback" not in err


def test_read_only_folder(tmp_path, monkeypatch, capsys):
    """The answer of a read-only file system (EROFS) to the first file a run writes."""
    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(dir) / "config.json"))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only)

    def main(argv):
        checkpoint.atomic_write(tmp_path / "run" / "config.json", lambda f: f.write(b"{}"))

    code, err = _run(main, [], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (f"error: {tmp_path / 'run' / 'config.json'} is on a read-only file system — "
                           "choose a writable folder (--run-dir / --out / --output)")


def test_a_file_where_a_folder_should_be(tmp_path, capsys):
    (tmp_path / "runs").write_text("not a folder")

    def main(argv):
        (tmp_path / "runs" / "x").mkdir(parents=True, exist_ok=True)

    code, err = _run(main, [], capsys)
    assert code == 1 and "Traceback" not in err
    assert "is a file where a folder is needed — remove or rename that file" in err


def test_an_image_given_as_a_checkpoint_is_called_an_image(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    code, err = _run(lambda argv: checkpoint.load_checkpoint(tmp_path / "cat.png"), [], capsys)
    assert code == 1 and "pickled code" not in err
    assert err.strip() == (f"error: {tmp_path / 'cat.png'} is not a PyTorch checkpoint (a PNG image): give a "
                           "checkpoint written by this toolkit (a run's checkpoint.pt or best.pt)")


def test_a_closed_output_pipe_exits_quietly_with_141(tmp_path):
    """``python -m <command> --help | head``: the reader leaves early; no error line, no traceback."""
    import subprocess
    import sys

    script = ("from core_ssl.cli import run_command\n"
              "def main(argv):\n"
              "    for _ in range(100000):\n"
              "        print('a line of help text')\n"
              "run_command(main)\n")
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.readline()
    reader.stdout.close()  # what head does after its lines
    assert reader.wait(timeout=60) == 128 + signal.SIGPIPE
    assert reader.stderr.read() == b""


def test_help_into_a_pipe_already_closed_exits_141(tmp_path):
    """``python -m <command> --help | true``: the reader is gone before the help is written."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "cut_translation.translate", "--help"], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 128 + signal.SIGPIPE and done.stderr == b""
