"""DeepMind Control tasks behind the gymnasium API, as CURL sees them.

:class:`DMControlEnv` wraps one ``dm_control.suite`` task:

* **actions** are a ``Box`` in the task's own bounds ([-1, 1] for every suite task);
* each agent action is repeated ``action_repeat`` times (the paper's value per task, see
  :data:`PAPER_ACTION_REPEAT`), the rewards of the repeated physics steps are **summed**;
* **pixels** (default): a 100x100 RGB frame is rendered **once per action-repeat block**, after
  its last physics step; the observation is the last ``frame_stack`` (3) frames stacked along
  the channels, ``uint8`` of shape ``(3 * frame_stack, 100, 100)``; after a reset the stack
  holds the first frame ``frame_stack`` times;
* **state** (``from_pixels=False``, for the ``state-sac`` baseline): the task's proprioceptive
  observation flattened to ``float32``;
* the episode lasts ``1000`` environment steps (physics control steps). The suite's tasks are
  infinite-horizon, so ``terminated`` is False (unless dm_control itself reports a terminal
  state with discount 0) and ``truncated`` is True at the time limit: an agent then bootstraps
  through it.
* ``info["env_steps"]`` counts environment steps in the episode; step counts in this package
  are always environment steps = agent steps x action repeat, as in the paper.

Every suite task is registered with gymnasium as ``rl_curl/<domain>-<task>-v0`` (for example
``rl_curl/cheetah-run-v0``, ``rl_curl/ball_in_cup-catch-v0``); :func:`make_env` builds one from
the short name ``cheetah-run``. MuJoCo reads ``MUJOCO_GL`` when dm_control is first imported, so
:func:`setup` (called by the commands first, and by every function here that needs dm_control)
picks a headless OpenGL backend when the variable is unset (:func:`select_gl_backend`: egl, then
osmesa, each probed in a subprocess) and registers the ids; if neither backend works, state
observations still work and pixel environments raise :class:`RenderingError`, which names the
fix. Importing this module does nothing of this.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections import deque
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from core_ssl.cli import CommandError

__all__ = [
    "PAPER_ACTION_REPEAT",
    "DEFAULT_ACTION_REPEAT",
    "DMControlEnv",
    "available_tasks",
    "parse_task",
    "make_env",
    "select_gl_backend",
    "register_envs",
    "setup",
    "RenderingError",
]

class _DropDeprecations(logging.Filter):
    """Drops MuJoCo's "compiler attribute ... is deprecated" notices about dm_control's own model
    files (``settotalmass`` in cheetah.xml): nothing a user of this package can change."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is deprecated and will be removed" not in record.getMessage()


@contextlib.contextmanager
def quiet_model_deprecations():
    """Within the block, absl's deprecation warnings about the suite's model files are not shown."""
    logger, dropped = logging.getLogger("absl"), _DropDeprecations()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


PAPER_ACTION_REPEAT: dict[str, int] = {
    "finger-spin": 2,
    "walker-walk": 2,
    "cartpole-swingup": 8,
    "reacher-easy": 4,
    "cheetah-run": 4,
    "ball_in_cup-catch": 4,
}
"""Action repeat of CURL's six benchmark tasks (paper, Table 3)."""

DEFAULT_ACTION_REPEAT = 4
"""Action repeat of every other suite task (the paper's value for 'the rest')."""

_GL_CANDIDATES = ("egl", "osmesa")
# quadruped's default camera looks at the floor; the official CURL code renders it from camera 2.
_CAMERA_BY_DOMAIN = {"quadruped": 2}


class RenderingError(CommandError, RuntimeError):
    """MuJoCo cannot render (or dm_control cannot start) with this process's ``MUJOCO_GL``."""


_GL_ERROR: RuntimeError | None = None  # why pixel environments cannot work; set by setup()
_READY = False


def setup() -> None:
    """Prepare this process for dm_control, once: choose ``MUJOCO_GL`` (a failure is kept and
    raised by pixel environments only), import Triton before the GL library loads, register the
    gymnasium ids. Call it before anything imports dm_control."""
    global _GL_ERROR, _READY
    if _READY:
        return
    _READY = True
    _GL_ERROR = _select_backend()
    _import_triton_before_gl()
    register_envs()


def _suite():
    """``dm_control.suite``, after :func:`setup`; an unusable ``MUJOCO_GL`` is a :class:`RenderingError`."""
    setup()
    try:
        from dm_control import suite
    except (RuntimeError, ImportError, OSError) as err:
        raise RenderingError(f"dm_control cannot start with MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}: {err}",
                             _GL_FIX) from err
    return suite


_GL_FIX = ("unset MUJOCO_GL (rl_curl then picks egl or osmesa, whichever works) or set MUJOCO_GL=egl or osmesa; "
           "state-only runs (--agent state-sac) need no rendering")


def _gl_backend_works(backend: str) -> bool:
    """True when a fresh Python process can create a MuJoCo GL context with ``backend``.

    Probed in a subprocess because MuJoCo reads ``MUJOCO_GL`` once, at import time.
    """
    probe = ("from dm_control import _render\n"
             "ctx = _render.Renderer(max_width=8, max_height=8)\n"
             "ctx.free()\n")
    try:
        result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "MUJOCO_GL": backend},
                                capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def select_gl_backend() -> str:
    """Set ``MUJOCO_GL`` to the first working headless backend (egl, then osmesa) when unset.

    A value already in the environment is kept as it is (the user chose it, or an earlier
    call did; child processes inherit it, so the probe runs once per process tree). Returns
    the backend in use. Raises ``RuntimeError`` naming the fix when neither works.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if "dm_control" in sys.modules or "mujoco" in sys.modules:
        # Too late to choose: MuJoCo fixed its backend at import. Say so instead of guessing.
        raise RuntimeError("MUJOCO_GL is unset and MuJoCo is already imported; import "
                           "rl_curl.envs before dm_control, or set MUJOCO_GL=egl (or osmesa).")
    for backend in _GL_CANDIDATES:
        if _gl_backend_works(backend):
            os.environ["MUJOCO_GL"] = backend
            if backend != "egl":  # PyOpenGL must agree with MuJoCo on the platform
                os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    raise RenderingError(
        "no headless OpenGL backend works for MuJoCo rendering (tried MUJOCO_GL=egl and MUJOCO_GL=osmesa)",
        "install EGL (e.g. apt-get install libegl1) or OSMesa (apt-get install libosmesa6), or set MUJOCO_GL "
        "yourself; state-only runs (--agent state-sac) need no rendering")


def available_tasks() -> list[str]:
    """Every dm_control suite task as ``domain-task`` (e.g. ``cheetah-run``), sorted."""
    suite = _suite()
    return sorted(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)


def parse_task(name: str) -> tuple[str, str]:
    """``'cheetah-run'`` or ``'rl_curl/cheetah-run-v0'`` -> ``('cheetah', 'run')``.

    Raises ``ValueError`` listing the valid names when the task is unknown.
    """
    short = name.removeprefix("rl_curl/").removesuffix("-v0")
    valid = available_tasks()
    if short not in valid:
        raise ValueError(
            f"unknown task {name!r}. Valid tasks (domain-task): {', '.join(valid)}. "
            f"The paper's six: {', '.join(PAPER_ACTION_REPEAT)}."
        )
    domain, task = short.split("-", 1)
    return domain, task


class DMControlEnv(gymnasium.Env):
    """One dm_control suite task as a gymnasium ``Env`` (see the module docstring).

    Args:
        domain, task: the suite task, e.g. ``"cheetah", "run"``.
        from_pixels: stacked RGB frames (True) or the flattened proprioceptive state (False).
        image_size: rendered frame side in pixels (100 in CURL; the agent crops to 84).
        frame_stack: number of stacked frames.
        action_repeat: physics steps per agent action; None = the paper's value for the task.
        episode_env_steps: episode length in environment steps (1000 in the suite).
        camera_id: MuJoCo camera; None = 2 for quadruped, else 0 (as in CURL).
        seed: seed of the task's random state (initial positions, targets); ``reset(seed=...)``
            reseeds it.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, domain: str, task: str, from_pixels: bool = True, image_size: int = 100,
                 frame_stack: int = 3, action_repeat: int | None = None,
                 episode_env_steps: int = 1000, camera_id: int | None = None,
                 seed: int | None = None, render_mode: str | None = "rgb_array") -> None:
        domain, task = parse_task(f"{domain}-{task}")
        if frame_stack < 1 or image_size < 1 or episode_env_steps < 1:
            raise ValueError("frame_stack, image_size and episode_env_steps must be >= 1")
        suite = _suite()
        if from_pixels and _GL_ERROR is not None:
            raise _GL_ERROR

        self.task_name = f"{domain}-{task}"
        self.action_repeat = int(action_repeat or PAPER_ACTION_REPEAT.get(self.task_name, DEFAULT_ACTION_REPEAT))
        if self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {self.action_repeat}")
        self.from_pixels, self.image_size, self.frame_stack = from_pixels, image_size, frame_stack
        self.episode_env_steps = episode_env_steps
        self.camera_id = _CAMERA_BY_DOMAIN.get(domain, 0) if camera_id is None else camera_id
        self.render_seconds = 0.0  # total time spent rendering, for the training loop's time shares
        self.render_mode = render_mode
        self._seed = seed
        with quiet_model_deprecations():
            self._env = suite.load(domain, task, task_kwargs={"random": seed},
                                   environment_kwargs={"flat_observation": False})
        spec = self._env.action_spec()
        self.action_space = spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                       dtype=np.float32, seed=seed)
        if from_pixels:
            self.observation_space = spaces.Box(0, 255, (3 * frame_stack, image_size, image_size), np.uint8)
        else:
            state_dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        self._frames: deque[np.ndarray] = deque(maxlen=frame_stack)
        self._env_steps = 0

    # -- helpers ---------------------------------------------------------------------------

    def render(self) -> np.ndarray:
        """The current frame, (image_size, image_size, 3) uint8 (height, width, RGB)."""
        started = time.perf_counter()
        frame = self._env.physics.render(self.image_size, self.image_size, camera_id=self.camera_id)
        self.render_seconds += time.perf_counter() - started
        return frame

    def check_rendering(self) -> None:
        """Render one frame now, so that a renderer that cannot work fails before a run starts."""
        try:
            self.render()
        except Exception as err:  # mujoco.FatalError, GL errors: not importable without loading GL
            raise RenderingError(f"MuJoCo cannot render with MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}: {err}",
                                 _GL_FIX) from err

    def _frame_chw(self) -> np.ndarray:
        return np.ascontiguousarray(self.render().transpose(2, 0, 1))

    def _state(self, time_step) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float32).ravel() for v in time_step.observation.values()])

    def _observation(self, time_step) -> np.ndarray:
        if not self.from_pixels:
            return self._state(time_step)
        return np.concatenate(list(self._frames), axis=0)

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; ``seed`` reseeds the task's random state (and the action space)."""
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
            self.action_space.seed(seed)
        time_step = self._env.reset()
        self._env_steps = 0
        if self.from_pixels:
            frame = self._frame_chw()
            for _ in range(self.frame_stack):
                self._frames.append(frame)
        return self._observation(time_step), {"env_steps": 0}

    def step(self, action: np.ndarray):
        """Repeat ``action`` for ``action_repeat`` physics steps; render once at the end.

        Returns ``(obs, summed reward, terminated, truncated, info)``.
        """
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"{self.task_name} takes actions of shape {self.action_space.shape}, "
                             f"got {action.shape}")
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            self._env_steps += 1
            reward += time_step.reward or 0.0
            if time_step.last():
                terminated = time_step.discount == 0.0  # a true terminal state, rare in the suite
                truncated = not terminated
                break
            if self._env_steps >= self.episode_env_steps:
                truncated = True
                break
        if self.from_pixels:
            self._frames.append(self._frame_chw())
        return self._observation(time_step), float(reward), bool(terminated), bool(truncated), \
            {"env_steps": self._env_steps}

    def close(self) -> None:
        self._env.close()


def make_env(name: str, seed: int | None = None, **kwargs: Any) -> DMControlEnv:
    """Build ``name`` (``cheetah-run`` or ``rl_curl/cheetah-run-v0``) with :class:`DMControlEnv`'s options."""
    domain, task = parse_task(name)
    return DMControlEnv(domain, task, seed=seed, **kwargs)


def _entry_point(domain: str, task: str, **kwargs: Any) -> DMControlEnv:
    return DMControlEnv(domain, task, **kwargs)


def register_envs() -> list[str]:
    """Register every suite task as ``rl_curl/<domain>-<task>-v0``; returns the ids."""
    suite = _suite()

    ids = []
    for domain, task in suite.ALL_TASKS:
        env_id = f"rl_curl/{domain}-{task}-v0"
        if env_id not in gymnasium.registry:
            # The dm_control task ends the episode itself; no gymnasium TimeLimit on top.
            gymnasium.register(env_id, entry_point=_entry_point, kwargs={"domain": domain, "task": task},
                               disable_env_checker=True, order_enforce=False)
        ids.append(env_id)
    return ids


def _select_backend() -> RuntimeError | None:
    try:
        select_gl_backend()
    except RuntimeError as err:
        return err
    return None


def _import_triton_before_gl() -> None:
    """Import Triton (if installed) before dm_control loads the GL library.

    With ``MUJOCO_GL=egl`` on Mesa, importing Triton *after* the EGL library is loaded crashes
    the process (a segmentation fault: both bring their own LLVM). torch imports Triton lazily
    (e.g. through torchvision.ops), so load it now, while it is still safe.
    """
    try:
        import triton  # noqa: F401
    except ImportError:
        pass

