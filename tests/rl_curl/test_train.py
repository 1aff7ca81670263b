"""Real (short) training runs on cartpole-swingup: the evaluation log, and SIGKILL + --resume."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core_ssl.checkpoint import CheckpointError, load_checkpoint
from core_ssl.logger import read_jsonl
from rl_curl import video
from rl_curl.train import parse_args
from tests.spawn import project_env
from tests.user_folder import contents, make_user_folder
from tests.devices import needs_cuda

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--env", "cartpole-swingup", "--preset", "tiny", "--device", "cpu", "--threads", "1",
        "--no-progress-bar", "--init-steps", "25", "--eval-episodes", "1"]


def _train(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "rl_curl.train", *args], cwd=ROOT, env=project_env(),
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
    phases = _rows(run / "phases.csv")
    assert phases and all(float(r["env_steps_per_second"]) > 0 for r in phases)
    for row in phases:  # the shares cover the elapsed time (other_share is what no phase covers)
        shares = [float(v) for k, v in row.items() if k.endswith("_share")]
        assert abs(sum(shares) - 1.0) < 1e-3 and float(row["update_s"]) > 0 and float(row["render_s"]) > 0
    for name in ("config.json", "learning_curve.png", "checkpoint.pt", "actor.safetensors", "train.csv",
                 "episode.csv", "phases.csv"):
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


STATE_SAC = ["--env", "cartpole-swingup", "--preset", "tiny", "--agent", "state-sac", "--device", "cpu",
             "--threads", "1", "--no-progress-bar", "--init-steps", "25", "--eval-episodes", "1", "--eval-every", "1000"]


def _files(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".jsonl", ".csv", ".json")}


def test_copied_run_resumes_in_place_refuses_changed_flags_and_extends(tmp_path):
    from rl_curl.train import main
    from core_ssl.run import ConfigMismatch

    original, copy = tmp_path / "original", tmp_path / "copy"
    main([*STATE_SAC, "--total-env-steps", "1000", "--run-dir", str(original)])
    shutil.copytree(original, copy)
    before = _files(original)

    main([*STATE_SAC, "--total-env-steps", "1000", "--run-dir", str(copy), "--resume"])  # the same flags again
    assert _files(copy)["eval.jsonl"] == before["eval.jsonl"]  # a finished run: nothing appended
    assert _files(copy)["episode.csv"] == before["episode.csv"]

    with pytest.raises(ConfigMismatch, match="--batch-size: saved 16, given 8; --discount: saved 0.99, given 0.9"):
        main([*STATE_SAC, "--run-dir", str(copy), "--resume", "--batch-size", "8", "--discount", "0.9"])

    main(["--run-dir", str(copy), "--resume", "--total-env-steps", "2000", "--threads", "1", "--no-progress-bar"])
    assert [int(r["step"]) for r in _rows(copy / "eval.csv")] == [0, 1000, 2000]
    assert load_checkpoint(copy / "checkpoint.pt")["counters"]["env_step"] == 2000
    saved = json.loads((copy / "config.json").read_text())
    assert saved["run_dir"] == str(copy) and saved["total_env_steps"] == 2000
    assert _files(original) == before  # the original folder was not touched


def test_sigint_saves_at_the_episode_end_and_the_resumed_run_is_bit_identical(tmp_path, monkeypatch, capsys):
    from core_ssl.cli import run_command
    from rl_curl import train as train_module

    flags = [*STATE_SAC, "--total-env-steps", "2000", "--checkpoint-every", "100000"]
    train_module.main([*flags, "--run-dir", str(tmp_path / "reference")])

    real_log, sent = train_module.RunLogger.log, []

    def log_then_interrupt(self, stream, step, **metrics):
        real_log(self, stream, step, **metrics)
        if stream == "train" and not sent:  # in the first episode, no checkpoint due before step 100000
            sent.append(step)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train_module.RunLogger, "log", log_then_interrupt)
    run = tmp_path / "interrupted"
    with pytest.raises(SystemExit) as stopped:
        run_command(train_module.main, [*flags, "--run-dir", str(run)])
    assert stopped.value.code == 130 and sent
    assert capsys.readouterr().err.strip().endswith(
        f"error: stopped by SIGINT; checkpoint saved at environment step 1000 — continue with: "
        f"python -m rl_curl.train --run-dir {run} --resume")
    assert load_checkpoint(run / "checkpoint.pt")["counters"]["env_step"] == 1000
    monkeypatch.setattr(train_module.RunLogger, "log", real_log)

    train_module.main(["--run-dir", str(run), "--resume", "--no-progress-bar"])
    resumed, reference = (load_checkpoint(r / "checkpoint.pt") for r in (run, tmp_path / "reference"))
    assert resumed["counters"]["env_step"] == reference["counters"]["env_step"] == 2000
    for part in ("critic", "actor"):
        for name, tensor in reference["agent"][part].items():
            assert torch.equal(resumed["agent"][part][name], tensor), (part, name)
    assert read_jsonl(run / "eval.jsonl")[-1]["return_mean"] == read_jsonl(tmp_path / "reference" / "eval.jsonl")[-1]["return_mean"]
    assert [r["step"] for r in read_jsonl(run / "eval.jsonl")] == [0, 1000, 2000]


def test_invalid_settings_fail_before_anything_starts(tmp_path):
    from core_ssl.cli import UsageError

    with pytest.raises(UsageError, match="--batch-size must be >= 1, got 0"):
        parse_args([*STATE_SAC, "--batch-size", "0", "--run-dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_a_folder_of_another_tools_files_is_refused_and_left_as_it_was(tmp_path):
    from core_ssl.run import NotARunFolder
    from rl_curl.train import train

    user = tmp_path / "u"
    files = make_user_folder(user)  # its tensorboard/ too
    with pytest.raises(NotARunFolder, match="is not a run folder of this toolkit"):
        train(parse_args([*STATE_SAC, "--run-dir", str(user)]))
    assert contents(user) == files


def test_importing_sets_nothing_up_and_an_unusable_renderer_leaves_no_run_folder(tmp_path):
    """One fresh process: importing the command chooses no renderer and registers nothing; the
    command with an unusable MUJOCO_GL then fails with one line naming the fix, and no folder."""
    run = tmp_path / "run"
    script = ("import os, sys, gymnasium\n"
              "from rl_curl import train\n"
              "assert 'dm_control' not in sys.modules and 'MUJOCO_GL' not in os.environ\n"
              "assert not any(i.startswith('rl_curl/') for i in gymnasium.registry)\n"
              "os.environ['MUJOCO_GL'] = 'nonsense'\n"
              "from core_ssl.cli import run_command\n"
              f"run_command(train.main, {[*TINY, '--run-dir', str(run)]!r})\n")
    env = {k: v for k, v in project_env().items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    failed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert failed.stderr.strip().startswith("error: dm_control cannot start with MUJOCO_GL='nonsense'")
    assert failed.stderr.strip().endswith("— unset MUJOCO_GL (rl_curl then picks egl or osmesa, whichever works) or "
                                          "set MUJOCO_GL=egl or osmesa; state-only runs (--agent state-sac) need no "
                                          "rendering")
    assert not run.exists()


def test_unknown_task_fails_before_training():
    from core_ssl.cli import UsageError

    with pytest.raises(UsageError, match="--env: unknown task 'cheetah-fly'. Valid tasks") as info:
        parse_args(["--env", "cheetah-fly"])
    assert info.value.exit_code == 2


def test_an_evaluation_shows_its_progress_over_the_episodes(capsys):
    from rl_curl import train as train_module

    cfg = parse_args([*STATE_SAC, "--eval-episodes", "2"])
    env = train_module.build_env(cfg, 0)
    agent = train_module.build_agent(cfg, env, torch.device("cpu"))
    returns, _ = train_module.evaluate(agent, env, 2, seed=0, show_progress=True, label="evaluation at env step 0")
    assert len(returns) == 2
    err = capsys.readouterr().err
    assert "evaluation at env step 0" in err and "2/2" in err and "episode" in err


def test_paper_preset_uses_the_papers_batch_per_task():
    """Table 3 of the CURL paper: batch 512 for cheetah-run, 128 for the other tasks; a flag or
    another preset overrides it."""
    assert parse_args(["--env", "cheetah-run", "--preset", "paper", "--device", "cpu"]).batch_size == 512
    assert parse_args(["--env", "cartpole-swingup", "--preset", "paper", "--device", "cpu"]).batch_size == 128
    assert parse_args(["--env", "cheetah-run", "--preset", "cpu", "--device", "cpu"]).batch_size == 128
    assert parse_args(["--env", "cheetah-run", "--preset", "paper", "--batch-size", "64",
                       "--device", "cpu"]).batch_size == 64


@needs_cuda
@pytest.mark.parametrize("graphs", [False, True])
def test_a_short_run_on_cuda_trains_evaluates_and_resumes(tmp_path, graphs):
    """The command's CUDA path end to end (the replay and crops on the GPU, cuDNN autotuning; with
    --cuda-graphs each update replayed from its graph), then resumed on the GPU."""
    cuda = [a if a != "cpu" else "cuda" for a in TINY] + (["--cuda-graphs"] if graphs else [])
    run = tmp_path / "run"
    proc = _train([*cuda, "--total-env-steps", "2000", "--eval-every", "1000", "--run-dir", str(run)])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert [int(r["step"]) for r in _rows(run / "eval.csv")] == [0, 1000, 2000]  # at episode ends
    assert all(float(r["critic_loss"]) == float(r["critic_loss"]) for r in _rows(run / "train.csv"))  # no NaN
    proc = _train([*cuda, "--total-env-steps", "3000", "--eval-every", "1000", "--run-dir", str(run), "--resume"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert [int(r["step"]) for r in _rows(run / "eval.csv")] == [0, 1000, 2000, 3000]
