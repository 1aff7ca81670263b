"""scripts/sweep_lib.sh, the step every sweep script runs per (arm, seed): finished runs are
skipped, a run another process holds is left to it, a run with a checkpoint is resumed, and a
failing run is reported while the sweep goes on."""

import fcntl
import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "scripts" / "sweep_lib.sh"


def _run_cell(tmp_path, name, *command):
    script = f'source "{LIB}"; failed=0; run_cell "{tmp_path / name}" summary.json {" ".join(command)}; echo "failed=$failed"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    return done.stdout, done.stderr


def test_new_run_gets_its_folder_and_no_resume(tmp_path):
    out, _ = _run_cell(tmp_path, "a-s1", "echo", "train")
    assert f"train --run-dir {tmp_path / 'a-s1'}\n" in out and "--resume" not in out
    assert "failed=0" in out


def test_finished_run_is_skipped_and_checkpointed_run_resumed(tmp_path):
    (tmp_path / "done-s1").mkdir()
    (tmp_path / "done-s1" / "summary.json").write_text("{}")
    out, _ = _run_cell(tmp_path, "done-s1", "echo", "train")
    assert out.startswith(f"done: {tmp_path / 'done-s1'}") and "train" not in out
    (tmp_path / "half-s1").mkdir()
    (tmp_path / "half-s1" / "checkpoint.pt").write_bytes(b"")
    out, _ = _run_cell(tmp_path, "half-s1", "echo", "train")
    assert f"train --run-dir {tmp_path / 'half-s1'} --resume\n" in out


def test_locked_run_is_left_to_its_holder_and_failures_are_reported(tmp_path):
    (tmp_path / "busy-s1").mkdir()
    with open(tmp_path / "busy-s1" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out, _ = _run_cell(tmp_path, "busy-s1", "echo", "train")
    assert out.startswith(f"busy: {tmp_path / 'busy-s1'}") and "train" not in out
    out, err = _run_cell(tmp_path, "bad-s1", "false")
    assert "failed=1" in out and f"failed (1): {tmp_path / 'bad-s1'}" in err


def test_vision_evidence_script_lists_its_steps_and_refuses_unknown_ones():
    script = LIB.parent / "vision_evidence.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "ablate-head" in usage.stdout and "set -euo" not in usage.stdout
    wrong = subprocess.run(["bash", str(script), "tabel"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "unknown step 'tabel'" in wrong.stderr
