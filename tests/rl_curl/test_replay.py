"""Frame replay: stacks rebuilt from single frames match the environment's, never span episodes."""

import numpy as np
import pytest
import torch

from rl_curl import envs
from rl_curl.replay import FrameReplayBuffer, StateReplayBuffer


def _synthetic_episodes(lengths, stack=3, size=4):
    """Episodes whose frame j of episode e is filled with a unique value; obs as the env stacks them."""
    value = 0
    for episode, length in enumerate(lengths):
        frames = []
        for _ in range(length + 1):
            value += 1
            frames.append(np.full((3, size, size), value % 256, np.uint8))
        stacked = [frames[0]] * stack
        obs = np.concatenate(stacked[-stack:])
        for t in range(length):
            stacked.append(frames[t + 1])
            next_obs = np.concatenate(stacked[-stack:])
            yield obs, np.array([episode, t], np.float32), float(t), next_obs, False, t == length - 1
            obs = next_obs


def _check_all(buffer, transitions):
    slots = (torch.arange(len(buffer)) + buffer.first_valid) % buffer.capacity
    batch = buffer.gather(slots)
    kept = transitions[-len(buffer):]
    for i, (obs, action, reward, next_obs, _, _) in enumerate(kept):
        assert np.array_equal(batch.obs[i].numpy(), obs)
        assert np.array_equal(batch.next_obs[i].numpy(), next_obs)
        assert np.array_equal(batch.action[i].numpy(), action) and batch.reward[i, 0] == reward
        assert np.array_equal(batch.next_obs[i, :6].numpy(), batch.obs[i, 3:].numpy())


def test_stacks_match_and_stay_inside_episodes():
    transitions = list(_synthetic_episodes([5, 1, 4, 2]))
    buffer = FrameReplayBuffer((9, 4, 4), 2, capacity=100)
    for t in transitions:
        buffer.add(*t)
    assert len(buffer) == len(transitions) == 12
    assert buffer.frames_added == 12 + 4  # one frame per transition plus one reset frame per episode
    _check_all(buffer, transitions)
    # the first obs of an episode is its reset frame three times, not frames of the last episode
    first_of_second = buffer.gather(torch.tensor([5])).obs[0]
    assert torch.equal(first_of_second[:3], first_of_second[6:])


def test_ring_wraps_and_drops_transitions_with_overwritten_frames():
    transitions = list(_synthetic_episodes([7, 3, 9, 2, 8, 6]))
    buffer = FrameReplayBuffer((9, 4, 4), 2, capacity=10, extra_frames=2)
    for t in transitions:
        buffer.add(*t)
    assert 0 < len(buffer) <= 10
    _check_all(buffer, transitions)
    sample = buffer.sample(64)
    assert sample.obs.shape == (64, 9, 4, 4) and sample.obs.dtype == torch.uint8
    assert sample.not_done.eq(1).all()


def test_real_environment_transitions_round_trip_through_state_dict():
    env = envs.make_env("cartpole-swingup", seed=0)
    buffer = FrameReplayBuffer(env.observation_space.shape, 1, capacity=200)
    obs, _ = env.reset(seed=0)
    transitions = []
    for _ in range(40):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        transitions.append((obs, action, reward, next_obs, terminated, truncated))
        buffer.add(*transitions[-1])
        obs = next_obs
    _check_all(buffer, transitions)
    restored = FrameReplayBuffer(env.observation_space.shape, 1, capacity=200)
    restored.load_state_dict(buffer.state_dict())
    _check_all(restored, transitions)
    assert restored.frames_added == buffer.frames_added and restored.added == 40


def test_saved_replay_size_follows_what_is_filled_not_capacity(tmp_path):
    buffer = FrameReplayBuffer((9, 16, 16), 1, capacity=5_000)
    frame = np.zeros((9, 16, 16), dtype=np.uint8)
    for i in range(10):
        buffer.add(frame, np.zeros(1), 0.0, frame, False, i == 9)
    path = tmp_path / "replay.pt"
    torch.save(buffer.state_dict(), path)
    capacity_bytes = buffer.frames.numel() * buffer.frames.element_size()
    assert path.stat().st_size < capacity_bytes / 50, "a partial ring must not be saved whole"


def test_100k_cheetah_transitions_fit_in_4_gb():
    buffer = FrameReplayBuffer((9, 100, 100), 6, capacity=100_000, device="meta")
    tensors = [buffer.frames, buffer.action, buffer.reward, buffer.not_done, buffer.newest_frame, buffer.episode_frame]
    total = sum(t.numel() * t.element_size() for t in tensors) + buffer._oldest_frame_host.nbytes
    assert total < 4e9, f"{total / 1e9:.2f} GB"


def test_state_buffer_and_empty_error():
    buffer = StateReplayBuffer((5,), 2, capacity=3)
    with pytest.raises(RuntimeError, match="empty"):
        buffer.sample(2)
    for i in range(5):
        buffer.add(np.full(5, i), np.zeros(2), float(i), np.full(5, i + 1), i == 4, False)
    batch = buffer.sample(8)
    assert torch.equal(batch.next_obs - batch.obs, torch.ones(8, 5))
    assert len(buffer) == 3
