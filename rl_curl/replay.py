"""Replay buffers that keep every rendered frame once.

:class:`FrameReplayBuffer` (pixels). The official CURL buffer stores ``obs`` and ``next_obs``
of every transition, i.e. each 100x100 frame 2 x 3 = 6 times (about 18 GB for 100k
transitions). Here each frame lives once in a ring ``frames`` (N_f, 3, H, W) uint8, and a
transition stores only the absolute number ``n`` of its newest frame (the last frame of
``next_obs``) and the number ``r`` of its episode's first (reset) frame. The stacks are
rebuilt by indexing, with k = 0 .. S-1 for a stack of S frames::

    obs[k]      = frames[max(n - S + k,     r)]
    next_obs[k] = frames[max(n - S + 1 + k, r)]

The clamp at ``r`` reproduces the environment's reset stack (the first frame repeated) and
guarantees that no stack spans two episodes. 100k transitions of cheetah-run take
(100k + 2%) x 30 kB = 3.1 GB. The frame ring holds a little more than ``capacity`` frames
(episodes also store their reset frame); a transition whose oldest frame has been
overwritten is no longer sampled (:attr:`FrameReplayBuffer.first_valid`).

:class:`StateReplayBuffer` stores float state vectors (``state-sac``), obs and next_obs.

Both keep their storage on ``device`` (on CUDA the frames live in GPU memory) and draw
batches there with a ``torch.Generator`` on that device, so sampling never synchronises with
the host. ``state_dict`` saves only the filled part, for checkpoints that a resumed run
continues from.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Batch", "FrameReplayBuffer", "StateReplayBuffer", "make_replay"]


class Batch(NamedTuple):
    """A batch of transitions on the buffer's device.

    ``obs`` / ``next_obs``: (B, 3S, H, W) uint8 for pixels or (B, D) float32 for states;
    ``action`` (B, A) float32; ``reward`` (B, 1) float32 (summed over the action repeat);
    ``not_done`` (B, 1) float32, 0 only after a true terminal state (never after a time limit).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    not_done: torch.Tensor


def _filled_copy(ring: torch.Tensor, filled: int) -> torch.Tensor:
    """The first ``filled`` rows of ``ring`` as a CPU tensor that owns only those rows.

    ``torch.save`` writes the whole storage behind a view, so saving ``ring[:filled]`` of a
    preallocated 3 GB ring would write 3 GB however little is filled: copy partial slices.
    """
    rows = ring[:filled]
    if rows.device.type != "cpu":
        return rows.cpu()
    return rows if filled == ring.shape[0] else rows.clone()


class _TransitionStore:
    """Ring storage of actions, rewards and not-done flags shared by both buffers."""

    def __init__(self, capacity: int, action_dim: int, device: torch.device) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        self.action = torch.zeros(capacity, action_dim, dtype=torch.float32, device=self.device)
        self.reward = torch.zeros(capacity, 1, dtype=torch.float32, device=self.device)
        self.not_done = torch.zeros(capacity, 1, dtype=torch.float32, device=self.device)
        self.added = 0  # transitions ever added; slot of transition t is t % capacity

    def _write(self, action: np.ndarray, reward: float, terminated: bool) -> int:
        slot = self.added % self.capacity
        self.action[slot] = torch.as_tensor(action, dtype=torch.float32)
        self.reward[slot, 0] = float(reward)
        self.not_done[slot, 0] = 0.0 if terminated else 1.0
        self.added += 1
        return slot

    def _filled(self) -> int:
        return min(self.added, self.capacity)

    def _ring_state(self, tensors: dict[str, torch.Tensor], filled: int) -> dict[str, torch.Tensor]:
        return {name: _filled_copy(t, filled) for name, t in tensors.items()}

    def _load_ring(self, tensors: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
        for name, target in tensors.items():
            source = state[name]
            if source.shape[1:] != target.shape[1:] or source.shape[0] > target.shape[0]:
                raise ValueError(f"replay state {name!r} has shape {tuple(source.shape)}, which does "
                                 f"not fit this buffer's {tuple(target.shape)}: was it saved with "
                                 "another task, capacity or frame stack?")
            target[:source.shape[0]] = source.to(target.device)


class FrameReplayBuffer(_TransitionStore):
    """Pixel replay that stores each frame once; see the module docstring.

    Call :meth:`add` with what the environment returned; the buffer keeps only the newest
    frame of ``next_obs`` (and, for the first transition of an episode, the reset frame).

    Args:
        obs_shape: (3 * frame_stack, H, W) of the observations.
        action_dim: action size.
        capacity: transitions kept (100k in CURL).
        frame_stack: S, frames per observation.
        device: where the frames and the batches live.
        extra_frames: frame slots beyond ``capacity`` for the reset frames; default 2% + 2S.
    """

    def __init__(self, obs_shape: tuple[int, int, int], action_dim: int, capacity: int,
                 frame_stack: int = 3, device: torch.device | str = "cpu",
                 extra_frames: int | None = None) -> None:
        super().__init__(capacity, action_dim, torch.device(device))
        channels, height, width = obs_shape
        if channels != 3 * frame_stack:
            raise ValueError(f"obs_shape {tuple(obs_shape)} does not hold {frame_stack} RGB frames")
        self.frame_stack, self.obs_shape = frame_stack, tuple(obs_shape)
        self.frame_capacity = capacity + (capacity // 50 + 2 * frame_stack if extra_frames is None else extra_frames)
        self.frames = torch.zeros(self.frame_capacity, 3, height, width, dtype=torch.uint8, device=self.device)
        # absolute frame numbers of each transition's newest frame and its episode's reset frame
        self.newest_frame = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        self.episode_frame = torch.zeros(capacity, dtype=torch.int64, device=self.device)
        # host copies, to find the oldest sampleable transition without a device sync
        self._oldest_frame_host = np.zeros(capacity, dtype=np.int64)
        self.frames_added = 0
        self.first_valid = 0  # oldest transition (absolute number) whose frames are all stored
        self._episode_start: int | None = None  # reset frame of the running episode
        self._frame_offsets = torch.arange(frame_stack, device=self.device)

    def __len__(self) -> int:
        """Transitions that can be sampled."""
        return self.added - self.first_valid

    def _store_frame(self, frame: np.ndarray | torch.Tensor) -> int:
        number = self.frames_added
        self.frames[number % self.frame_capacity] = torch.as_tensor(frame)
        self.frames_added += 1
        return number

    def new_episode(self) -> None:
        """Mark an episode boundary (call after every ``env.reset()``; ``add`` also does it
        after a terminated or truncated transition)."""
        self._episode_start = None

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            terminated: bool, truncated: bool) -> None:
        """Store one transition (the arrays the environment returned)."""
        if self._episode_start is None:  # first transition of an episode: keep its reset frame
            self._episode_start = self._store_frame(obs[-3:])
        newest = self._store_frame(next_obs[-3:])
        slot = self._write(action, reward, terminated)
        self.newest_frame[slot] = newest
        self.episode_frame[slot] = self._episode_start
        self._oldest_frame_host[slot] = max(newest - self.frame_stack, self._episode_start)
        if terminated or truncated:
            self._episode_start = None
        self._drop_overwritten()

    def _drop_overwritten(self) -> None:
        first_alive_frame = self.frames_added - self.frame_capacity
        self.first_valid = max(self.first_valid, self.added - self.capacity)
        while self.first_valid < self.added and \
                self._oldest_frame_host[self.first_valid % self.capacity] < first_alive_frame:
            self.first_valid += 1

    def _stack(self, newest: torch.Tensor, episode_start: torch.Tensor, shift: int) -> torch.Tensor:
        """(B,) frame numbers -> (B, 3S, H, W): frames max(newest - S + shift + k, start), k < S."""
        numbers = newest[:, None] - self.frame_stack + shift + self._frame_offsets[None, :]
        numbers = torch.maximum(numbers, episode_start[:, None]) % self.frame_capacity
        stacked = self.frames[numbers.flatten()]
        return stacked.view(len(newest), 3 * self.frame_stack, *self.frames.shape[2:])

    def sample_indices(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform slots of sampleable transitions, (B,) int64 on the buffer's device."""
        if len(self) == 0:
            raise RuntimeError("cannot sample from an empty replay buffer; add transitions first")
        offsets = torch.randint(len(self), (batch_size,), generator=generator, device=self.device)
        return (offsets + self.first_valid) % self.capacity

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A uniform batch of transitions, stacks rebuilt from the frame ring (uint8)."""
        slots = self.sample_indices(batch_size, generator)
        return self.gather(slots)

    def gather(self, slots: torch.Tensor) -> Batch:
        """The transitions at ring ``slots`` as a :class:`Batch`."""
        newest, start = self.newest_frame[slots], self.episode_frame[slots]
        return Batch(self._stack(newest, start, 0), self.action[slots], self.reward[slots],
                     self._stack(newest, start, 1), self.not_done[slots])

    def state_dict(self) -> dict:
        """Counters and the filled part of every ring, as CPU tensors (for checkpoints)."""
        filled, frames_filled = self._filled(), min(self.frames_added, self.frame_capacity)
        return {
            "kind": "frames", "added": self.added, "frames_added": self.frames_added,
            "first_valid": self.first_valid, "episode_start": -1 if self._episode_start is None else self._episode_start,
            "frames": _filled_copy(self.frames, frames_filled),
            "oldest_frame": torch.from_numpy(self._oldest_frame_host[:filled].copy()),
            **self._ring_state({"action": self.action, "reward": self.reward, "not_done": self.not_done,
                                "newest_frame": self.newest_frame, "episode_frame": self.episode_frame}, filled),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved into a buffer built with the same settings."""
        if state.get("kind") != "frames":
            raise ValueError("this replay state was not saved by a FrameReplayBuffer")
        self._load_ring({"frames": self.frames, "action": self.action, "reward": self.reward,
                         "not_done": self.not_done, "newest_frame": self.newest_frame,
                         "episode_frame": self.episode_frame}, state)
        oldest = state["oldest_frame"].numpy()
        self._oldest_frame_host[:len(oldest)] = oldest
        self.added, self.frames_added, self.first_valid = state["added"], state["frames_added"], state["first_valid"]
        self._episode_start = None if state["episode_start"] < 0 else state["episode_start"]


class StateReplayBuffer(_TransitionStore):
    """Replay of float state vectors (obs and next_obs stored; they are small)."""

    def __init__(self, obs_shape: tuple[int], action_dim: int, capacity: int,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(capacity, action_dim, torch.device(device))
        self.obs = torch.zeros(capacity, *obs_shape, dtype=torch.float32, device=self.device)
        self.next_obs = torch.zeros_like(self.obs)

    def __len__(self) -> int:
        return self._filled()

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            terminated: bool, truncated: bool) -> None:
        """Store one transition."""
        slot = self.added % self.capacity
        self.obs[slot] = torch.as_tensor(obs, dtype=torch.float32)
        self.next_obs[slot] = torch.as_tensor(next_obs, dtype=torch.float32)
        self._write(action, reward, terminated)

    def new_episode(self) -> None:
        """Episode boundaries need no bookkeeping for states (kept for a common interface)."""

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A uniform batch of stored transitions."""
        if len(self) == 0:
            raise RuntimeError("cannot sample from an empty replay buffer; add transitions first")
        slots = torch.randint(len(self), (batch_size,), generator=generator, device=self.device)
        return Batch(self.obs[slots], self.action[slots], self.reward[slots], self.next_obs[slots],
                     self.not_done[slots])

    def state_dict(self) -> dict:
        """Counters and the filled part of every ring, as CPU tensors."""
        return {"kind": "states", "added": self.added,
                **self._ring_state({"obs": self.obs, "next_obs": self.next_obs, "action": self.action,
                                    "reward": self.reward, "not_done": self.not_done}, self._filled())}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved."""
        if state.get("kind") != "states":
            raise ValueError("this replay state was not saved by a StateReplayBuffer")
        self._load_ring({"obs": self.obs, "next_obs": self.next_obs, "action": self.action,
                         "reward": self.reward, "not_done": self.not_done}, state)
        self.added = state["added"]


def make_replay(observation_space, action_dim: int, capacity: int, frame_stack: int,
                device: torch.device | str) -> FrameReplayBuffer | StateReplayBuffer:
    """The right buffer for a gymnasium observation space (uint8 images -> frames)."""
    if observation_space.dtype == np.uint8 and len(observation_space.shape) == 3:
        return FrameReplayBuffer(observation_space.shape, action_dim, capacity, frame_stack, device)
    return StateReplayBuffer(observation_space.shape, action_dim, capacity, device)
