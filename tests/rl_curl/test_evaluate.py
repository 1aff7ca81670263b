"""rl_curl.evaluate: weights files carry their config, load into an agent and run episodes."""

import json
from pathlib import Path

import pytest
import torch

from core_ssl.checkpoint import CheckpointError, export_weights, save_checkpoint
from core_ssl.cli import run_command
from core_ssl.config import config_to_dict
from rl_curl import train
from rl_curl.evaluate import export_actor, load_agent, main


@pytest.fixture(scope="module")
def tiny_agent():
    cfg = train.parse_args(["--env", "cartpole-swingup", "--preset", "tiny", "--device", "cpu", "--seed", "3"])
    env = train.build_env(cfg, 0)
    torch.manual_seed(0)
    return cfg, train.build_agent(cfg, env, torch.device("cpu"))


def test_weights_round_trip_and_episode_with_video(tiny_agent, tmp_path, capsys):
    cfg, agent = tiny_agent
    path = export_weights(agent.actor.state_dict(), tmp_path / "actor.safetensors",
                          metadata=train.weights_metadata(cfg, 2000))
    loaded_cfg, _, loaded = load_agent(path)
    assert (loaded_cfg.env, loaded_cfg.hidden_dim, loaded_cfg.num_filters) == ("cartpole-swingup", 64, 8)
    for name, value in agent.actor.state_dict().items():
        assert torch.equal(loaded.actor.state_dict()[name], value), name

    main(["--weights", str(path), "--episodes", "1", "--video", str(tmp_path / "episode")])
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 1 and result["env"] == "cartpole-swingup"
    assert 0.0 <= result["return_mean"] <= 1000.0
    assert list(tmp_path.glob("episode.*"))


def test_export_from_a_checkpoint_is_fp16_and_loads(tiny_agent, tmp_path):
    cfg, agent = tiny_agent
    run = tmp_path / "run"
    save_checkpoint({"config": config_to_dict(cfg), "counters": {"env_step": 2000}, "agent": agent.state_dict()},
                    run / "checkpoint.pt")
    path = export_actor(run, tmp_path / "small.safetensors")
    _, _, loaded = load_agent(path)
    for name, value in agent.actor.state_dict().items():
        assert torch.allclose(loaded.actor.state_dict()[name], value, rtol=1e-3, atol=1e-3), name


def test_a_file_without_config_is_refused_with_the_fix(tiny_agent, tmp_path, capsys):
    _, agent = tiny_agent
    path = export_weights(agent.actor.state_dict(), tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="--export"):
        load_agent(path)
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\nnot weights")
    with pytest.raises(SystemExit) as stopped:
        run_command(main, ["--weights", str(tmp_path / "photo.png")])
    assert stopped.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"error: {tmp_path / 'photo.png'} is not a safetensors weights file") and "\n" not in message


def test_weights_that_disagree_with_their_config_are_refused_in_one_line(tiny_agent, tmp_path, capsys):
    cfg, agent = tiny_agent
    path = export_weights(agent.actor.state_dict(), tmp_path / "actor.safetensors",
                          metadata=train.weights_metadata(train.replace_config(cfg, hidden_dim=32), 2000))
    with pytest.raises(SystemExit) as stopped:
        run_command(main, ["--weights", str(path), "--episodes", "1"])
    message = capsys.readouterr().err.strip()
    assert stopped.value.code == 1 and "\n" not in message
    assert message.startswith(f"error: the weights in {path} do not fit the network its settings describe (size "
                              "mismatch for ")


SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "weights" / "rl"


@pytest.mark.needs("rl-weights")
def test_shipped_state_sac_agent_plays_an_episode_like_its_run(capsys):
    """The shipped cartpole-swingup state-SAC actor (docs/weights/rl, fp16) reproduces its run's
    evaluation: first evaluation episode 777.6 (the run's 10-episode mean was 778.3)."""
    main(["--weights", str(SHIPPED / "cartpole-swingup-state-sac.safetensors"), "--episodes", "1"])
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == "state-sac" and result["env"] == "cartpole-swingup"
    assert result["return_mean"] == pytest.approx(777.6, abs=10.0)


@pytest.mark.parametrize("env, arm, first_episode", [("cartpole-swingup", "curl", 168.6),
                                                     ("cartpole-swingup", "pixel-sac", 162.4),
                                                     ("cheetah-run", "curl", 118.8)])
@pytest.mark.needs("rl-weights")
def test_shipped_pixel_agents_play_an_episode_from_pixels(env, arm, first_episode, capsys):
    """The shipped pixel actors (fp16: the CURL and pixel-SAC median seeds of the cartpole
    comparison, the cheetah-run flagship) render, crop and act from pixels: their first
    evaluation episode scores what it scored when they were exported (168.6, 162.4, 118.8)
    within what rendering differences between machines can move, far above an untrained agent
    (about 25 on cartpole-swingup, 0.3 on cheetah-run)."""
    main(["--weights", str(SHIPPED / f"{env}-{arm}.safetensors"), "--episodes", "1"])
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == arm and result["env"] == env
    assert result["return_mean"] == pytest.approx(first_episode, abs=40.0)
