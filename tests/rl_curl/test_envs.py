"""The dm_control wrapper: spaces, dtypes, action repeat, frame stack, truncation, registration."""

import os

import gymnasium
import numpy as np
import pytest

from rl_curl import envs


@pytest.fixture(scope="module")
def cartpole():
    env = envs.make_env("cartpole-swingup", seed=0)
    yield env
    env.close()


def test_backend_is_chosen_and_ids_are_registered():
    envs.setup()  # what the commands call first; importing the module does none of it
    assert os.environ.get("MUJOCO_GL") in ("egl", "osmesa", "glfw")
    assert "rl_curl/cheetah-run-v0" in gymnasium.registry
    env = gymnasium.make("rl_curl/cheetah-run-v0", seed=3)
    assert isinstance(env.unwrapped, envs.DMControlEnv)
    assert env.unwrapped.action_repeat == 4


def test_spaces_shapes_and_dtypes(cartpole):
    assert cartpole.observation_space == gymnasium.spaces.Box(0, 255, (9, 100, 100), np.uint8)
    assert cartpole.action_space.shape == (1,) and cartpole.action_space.dtype == np.float32
    obs, info = cartpole.reset(seed=1)
    assert obs.shape == (9, 100, 100) and obs.dtype == np.uint8 and info["env_steps"] == 0
    assert cartpole.observation_space.contains(obs)
    # after a reset the stack holds the first frame three times
    assert np.array_equal(obs[0:3], obs[3:6]) and np.array_equal(obs[3:6], obs[6:9])
    assert obs.std() > 0  # a real rendered image, not a blank one


def test_action_repeat_frame_stack_and_single_render(cartpole, monkeypatch):
    assert cartpole.action_repeat == envs.PAPER_ACTION_REPEAT["cartpole-swingup"] == 8
    obs, _ = cartpole.reset(seed=2)
    time_before = cartpole._env.physics.data.time
    renders = []
    original = cartpole._env.physics.render
    monkeypatch.setattr(cartpole._env.physics, "render", lambda *a, **k: renders.append(1) or original(*a, **k))
    next_obs, reward, terminated, truncated, info = cartpole.step(np.ones(1, np.float32))
    elapsed = cartpole._env.physics.data.time - time_before
    assert elapsed == pytest.approx(8 * cartpole._env.control_timestep())
    assert len(renders) == 1  # once per action-repeat block
    assert info["env_steps"] == 8 and isinstance(reward, float) and 0.0 <= reward <= 8.0
    assert not terminated and not truncated
    # the stack shifts by one frame: the old last two frames come first
    assert np.array_equal(next_obs[0:6], obs[3:9])
    assert not np.array_equal(next_obs[6:9], obs[6:9])


def test_reward_is_summed_over_the_repeat():
    repeated = envs.make_env("cartpole-swingup", seed=5, action_repeat=4, from_pixels=False)
    single = envs.make_env("cartpole-swingup", seed=5, action_repeat=1, from_pixels=False)
    repeated.reset(seed=5)
    single.reset(seed=5)
    action = np.array([0.3], np.float32)
    total = sum(single.step(action)[1] for _ in range(4))
    assert repeated.step(action)[1] == pytest.approx(total)


def test_truncated_at_1000_env_steps_never_terminated(cartpole):
    cartpole.reset(seed=4)
    steps = 0
    while True:
        _, _, terminated, truncated, info = cartpole.step(cartpole.action_space.sample())
        steps += 1
        assert not terminated
        if truncated:
            break
    assert steps == 1000 // 8 and info["env_steps"] == 1000


def test_state_observations_and_seeding():
    env = envs.make_env("cheetah-run", from_pixels=False, seed=0)
    obs, _ = env.reset(seed=7)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape == (17,)
    again, _ = env.reset(seed=7)
    assert np.array_equal(obs, again)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="cheetah-run") as info:
        envs.make_env("cheetah-walk")
    assert "unknown task 'cheetah-walk'" in str(info.value)


def test_the_suites_own_model_deprecations_are_not_shown(capfd):
    """cheetah.xml's ``settotalmass`` makes MuJoCo log a deprecation a user cannot act on."""
    import logging

    envs.setup()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("absl").addHandler(handler)
    try:
        envs.make_env("cheetah-run", seed=0, from_pixels=False)
    finally:
        logging.getLogger("absl").removeHandler(handler)
    assert not [r for r in records if "deprecated" in r.getMessage()]
    assert "deprecated" not in capfd.readouterr().err
