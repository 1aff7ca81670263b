"""Real (short) training runs on cartpole-swingup: the evaluation log, and SIGKILL + --resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core_ssl.checkpoint import CheckpointError, load_checkpoint
from rl_curl import video
from rl_curl.train import parse_args

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--env", "cartpole-swingup", "--preset", "tiny", "--device", "cpu", "--threads", "1",
        "--no-progress-bar", "--init-steps", "25", "--eval-episodes", "1"]


def _train(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "rl_curl.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _FirstUpdate(Exception):
    pass


@pytest.mark.parametrize("agent", ["state-sac", "curl"])
def test_seed_phase_stores_init_steps_random_transitions_before_the_first_update(tmp_path, monkeypatch, agent):
    """The official init_steps: that many agent steps (transitions), not environment steps."""
    from rl_curl import train as train_module

    replays, seen = [], {}
    real_make_replay = train_module.make_replay

    def make_replay(*args, **kwargs):
        replays.append(real_make_replay(*args, **kwargs))
        return replays[-1]

    def first_update(self, batch):
        seen["transitions"] = len(replays[0])
        raise _FirstUpdate

    monkeypatch.setattr(train_module, "make_replay", make_replay)
    monkeypatch.setattr(train_module.SacAgent, "update", first_update)
    cfg = parse_args(["--env", "cartpole-swingup", "--preset", "tiny", "--agent", agent, "--device", "cpu",
                      "--no-progress-bar", "--init-steps", "37", "--eval-every", "100000",
                      "--run-dir", str(tmp_path / "run")])
    with pytest.raises(_FirstUpdate):
        train_module.train(cfg)
    assert seen["transitions"] == 37  # 37 agent steps = 296 environment steps at action repeat 8


@pytest.mark.slow
def test_short_run_writes_its_evaluation_log(tmp_path):
    run = tmp_path / "run"
    proc = _train([*TINY, "--total-env-steps", "1000", "--eval-every", "1000", "--run-dir", str(run), "--video"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    rows = _rows(run / "eval.csv")
    assert [int(r["step"]) for r in rows] == [0, 1000]
    assert all(float(r["return_mean"]) >= 0 for r in rows)
    for name in ("config.json", "learning_curve.png", "checkpoint.pt", "actor.safetensors", "train.csv",
                 "episode.csv"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    assert list((run / "videos").glob(f"eval_00001000.{'mp4' if video.mp4_available() else 'gif'}"))
    assert json.loads((run / "config.json").read_text())["env"] == "cartpole-swingup"


def _checkpoint_step(path):
    try:
        return load_checkpoint(path)["counters"]["env_step"]
    except CheckpointError:
        return -1


@pytest.mark.slow
def test_killed_run_resumes_step_count_and_replay(tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "--total-env-steps", "3000", "--checkpoint-every", "1000", "--eval-every", "1000",
            "--run-dir", str(run)]
    proc = _train(args)
    deadline = time.time() + 240
    while _checkpoint_step(run / "checkpoint.pt") < 1000:  # wait for the checkpoint after episode 1
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = load_checkpoint(run / "checkpoint.pt")
    killed_step = killed["counters"]["env_step"]
    assert killed_step in (1000, 2000)

    resumed = _train(["--run-dir", str(run), "--resume", "--no-progress-bar", "--threads", "1"])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    final = load_checkpoint(run / "checkpoint.pt")
    assert final["counters"]["env_step"] == 3000 and final["counters"]["episode"] == 3
    # the replay continued: all 3000 / 8 transitions, the frames from before the kill kept as they were
    assert final["replay"]["added"] == 3000 // 8
    before = killed["replay"]["frames"]
    assert torch.equal(final["replay"]["frames"][:len(before)], before)
    # the curve continues without duplicated or missing rows
    assert [int(r["step"]) for r in _rows(run / "eval.csv")] == [0, 1000, 2000, 3000]
    assert [int(r["episode"]) for r in _rows(run / "episode.csv")] == [1, 2, 3]


def test_resume_keeps_the_saved_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env": "cartpole-swingup", "batch_size": 7,
                                                 "total_env_steps": 100}))
    cfg = parse_args(["--run-dir", str(run), "--resume", "--total-env-steps", "200", "--batch-size", "9"])
    assert cfg.batch_size == 7 and cfg.total_env_steps == 200 and cfg.resume


def test_unknown_task_fails_before_training():
    with pytest.raises(ValueError, match="Valid tasks"):
        parse_args(["--env", "cheetah-fly"])
