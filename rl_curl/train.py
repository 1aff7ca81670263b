"""Train a SAC agent (CURL by default) on a DeepMind Control task.

    python -m rl_curl.train --env cheetah-run                 # the flagship run
    python -m rl_curl.train --env cartpole-swingup --agent pixel-sac
    python -m rl_curl.train --env walker-walk --aux byol --aug shift
    python -m rl_curl.train --run-dir runs/rl_curl/x --resume  # continue a killed run

Steps are environment steps (agent steps x action repeat), as in the paper. The loop, top to
bottom: act (uniformly random for the first ``init_steps`` agent steps, as the official
``init_steps``; no updates before), then update the agent once per agent step from a replay
batch, store the transition, and at the end of each episode log its return and,
when due, evaluate (10 episodes, centre crop, deterministic actions) and write an atomic
checkpoint (agent, optimisers, replay, RNG states, counters). Checkpoints are taken at episode
boundaries, so a resumed run starts the next episode exactly where the killed one would have.

The run folder holds ``config.json``, ``eval.csv`` / ``eval.jsonl`` (env_step, mean and std
return), ``episode.csv`` (training episode returns), ``train.csv`` (losses, alpha, frames/s),
``phases.csv`` (where the wall clock went: seconds and share per phase of the loop),
``tensorboard/``, ``learning_curve.png``, ``checkpoint.pt``, ``actor.safetensors`` and, with
``--video``, an animation of one evaluation episode per evaluation, and at the end
``summary.json``.

The run follows :mod:`core_ssl.run`: ``--resume`` continues the run in the folder given (also
a copied or moved one); flags given with it must match the saved config, except
``--total-env-steps`` (which may grow, extending even a finished run) and the runtime flags
``--device``, ``--threads`` and ``--progress-bar``. The folder is locked while a process trains
into it. SIGINT / SIGTERM save a checkpoint at the end of the current episode, then exit 130 /
143; a non-finite loss stops the run with the last good checkpoint kept.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from core_ssl.openmp import prefer_passive_waiting

prefer_passive_waiting()  # before torch loads: no OpenMP spin-waiting on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core_ssl.checkpoint import capture_rng_state, export_weights, restore_rng_state
from core_ssl.cli import UsageError, run_command
from core_ssl.config import config_to_dict, replace_config
from core_ssl.device import BF16_CHOICES, resolve_bf16, resolve_conv_micro_batch, resolve_device, tune_convolutions
from core_ssl.logger import RunLogger, progress
from core_ssl.plotting import pyplot, save_figure
from core_ssl.pipeline import ConfigPipeline
from core_ssl.run import RunFolder
from rl_curl import envs
from rl_curl.agent import AGENTS, AUGMENTATIONS, AUX_LOSSES, AgentSettings, SacAgent
from rl_curl.replay import make_replay
from rl_curl.video import save_episode_animation

COMMAND = "python -m rl_curl.train"
RUNTIME_FIELDS = ("device", "threads", "progress_bar", "conv_micro_batch", "cuda_graphs")  # may change on --resume
LENGTH_FIELDS = ("total_env_steps",)  # may grow on --resume
NAN_HINT = "lower the learning rate (--lr), or turn bf16 off (--bf16 off)"


@dataclass
class TrainConfig:
    """Train CURL / pixel SAC / state SAC on a DeepMind Control task (steps are environment steps)."""

    env: str = field(default="cheetah-run", metadata={"help": "task as domain-task, e.g. cheetah-run, cartpole-swingup"})
    agent: str = field(default="curl", metadata={"help": "agent", "choices": list(AGENTS)})
    aux: str = field(default="curl", metadata={"help": "auxiliary loss of the curl agent", "choices": list(AUX_LOSSES)})
    aug: str = field(default="crop", metadata={"help": "augmentation: CURL random crop or DrQ random shift",
                                              "choices": list(AUGMENTATIONS)})
    aug_backend: str = field(default="auto", metadata={"help": "augmentation backend: native gather or kornia (same distribution); auto = the device's default (docs/benchmarks.md)",
                                                      "choices": ["auto", "native", "kornia"]})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    seed: int = field(default=1, metadata={"help": "random seed (torch, numpy, environments)", "min": 0})
    total_env_steps: int = field(default=500_000, metadata={"help": "environment steps to train for "
                                                                    "(training stops at the first episode end at or after it)", "min": 0})
    init_steps: int = field(default=1000, metadata={
        "help": "AGENT steps (= stored transitions) of uniformly random actions before the first update, as the "
                "official code's init_steps; in environment steps this is init_steps x action repeat "
                "(8,000 on cartpole-swingup)", "min": 0})
    optimizers: str = field(default="joint", metadata={
        "help": "joint: one Adam step of the encoder per update on the summed critic + aux loss; official: the "
                "official CURL sequence (critic step, then the aux loss stepped by the encoder's and the aux "
                "head's own Adams: three encoder steps per update)", "choices": ["joint", "official"]})
    batch_size: int | None = field(default=None, metadata={
        "help": "replay batch size; None = the paper's (512 for cheetah-run, 128 for the other tasks)", "min": 1})
    lr: float | None = field(default=None, metadata={"help": "learning rate; None = the paper's (2e-4 cheetah-run, else 1e-3)", "gt": 0})
    alpha_lr: float = field(default=1e-4, metadata={"help": "temperature learning rate", "gt": 0})
    alpha_beta1: float = field(default=0.5, metadata={"help": "temperature Adam beta1", "min": 0, "lt": 1})
    init_temperature: float = field(default=0.1, metadata={"help": "initial entropy temperature alpha", "gt": 0})
    discount: float = field(default=0.99, metadata={"help": "discount gamma", "min": 0, "max": 1})
    critic_tau: float = field(default=0.01, metadata={"help": "EMA rate of the target Q heads", "min": 0, "max": 1})
    encoder_tau: float = field(default=0.05, metadata={"help": "EMA rate of the target (key) encoder", "min": 0, "max": 1})
    actor_update_freq: int = field(default=2, metadata={"help": "actor and alpha step every N updates", "min": 1})
    target_update_freq: int = field(default=2, metadata={"help": "target EMA every N updates", "min": 1})
    hidden_dim: int = field(default=1024, metadata={"help": "width of the actor and critic MLPs", "min": 1})
    feature_dim: int = field(default=50, metadata={"help": "encoder output size", "min": 1})
    num_layers: int = field(default=4, metadata={"help": "conv layers of the encoder", "min": 1})
    num_filters: int = field(default=32, metadata={"help": "filters per conv layer", "min": 1})
    image_size: int = field(default=100, metadata={"help": "rendered frame side", "min": 1})
    crop_size: int = field(default=84, metadata={"help": "encoder input side (random crop in training, centre crop in evaluation)", "min": 1})
    frame_stack: int = field(default=3, metadata={"help": "stacked frames per observation", "min": 1})
    action_repeat: int | None = field(default=None, metadata={"help": "None = the paper's per-task value", "min": 1})
    aux_weight: float = field(default=1.0, metadata={"help": "weight of the auxiliary loss", "min": 0})
    aux_temperature: float = field(default=0.1, metadata={"help": "temperature of --aux infonce", "gt": 0})
    queue_size: int = field(default=4096, metadata={"help": "key queue size of --aux infonce", "min": 1})
    replay_capacity: int = field(default=100_000, metadata={"help": "transitions kept in the replay buffer", "min": 1})
    bf16: str = field(default="auto", metadata={"help": "bf16 autocast of the conv encoder: auto (on where the device runs "
                                                       "bf16 natively: CUDA, CPUs with AVX512-BF16 or AMX) | on | off",
                                               "choices": list(BF16_CHOICES)})
    conv_micro_batch: str = field(default="auto", metadata={
        "help": "run the conv encoder on at most N observations at a time: auto (32 on a CPU, whose caches "
                "overflow on larger batches; the whole batch on CUDA) | off | N. Speed only: the same "
                "maths up to float rounding, and it may change on --resume"})
    cuda_graphs: bool = field(default=False, metadata={
        "help": "replay each update from a CUDA graph (one launch instead of hundreds; CUDA only, not with "
                "--aux infonce or --aug-backend kornia). Speed only, and it may change on --resume"})
    eval_every: int = field(default=10_000, metadata={"help": "evaluate every N environment steps (and at step 0)", "min": 1})
    eval_episodes: int = field(default=10, metadata={"help": "episodes per evaluation", "min": 1})
    checkpoint_every: int = field(default=50_000, metadata={"help": "checkpoint every N environment steps", "min": 1})
    log_every: int = field(default=2_000, metadata={"help": "log training losses every N environment steps", "min": 1})
    video: bool = field(default=False, metadata={"help": "save the first evaluation episode as mp4 (GIF when no ffmpeg is found)"})
    run_dir: Path | None = field(default=None, metadata={"help": "run folder; None = runs/rl_curl/<env>-<agent>-s<seed>", "nonempty": True})
    resume: bool = field(default=False, metadata={"help": "continue the run in --run-dir from its checkpoint"})
    progress_bar: bool = field(default=True, metadata={"help": "show a progress bar"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch; None = torch's default. "
                                                       "On a busy shared machine 1 can be much faster than 2", "min": 1})


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's settings (Table 3 of Srinivas et al. 2020: batch 512 for cheetah-run, 128 for
    # the rest, lr 2e-4 / 1e-3); the default with CUDA.
    "paper": {},
    # Practical on a few CPU cores: the paper's networks and settings, batch 128 (the official
    # script's), 100k environment steps, bf16 convs where the CPU runs bf16 natively, more frequent
    # evaluation and checkpoints.
    "cpu": {"batch_size": 128, "total_env_steps": 100_000, "eval_every": 10_000,
            "checkpoint_every": 10_000},
    # Minutes, for smoke tests: tiny networks and batches.
    "tiny": {"batch_size": 16, "hidden_dim": 64, "num_filters": 8, "num_layers": 2, "feature_dim": 16,
             "total_env_steps": 2_000, "init_steps": 50, "eval_every": 1_000, "eval_episodes": 1,
             "checkpoint_every": 1_000, "log_every": 400, "replay_capacity": 5_000, "bf16": "off"},
}


def paper_lr(task: str) -> float:
    """The paper's learning rate: 2e-4 for cheetah-run, 1e-3 for the other tasks."""
    return 2e-4 if envs.parse_task(task) == ("cheetah", "run") else 1e-3


def paper_batch_size(task: str) -> int:
    """The paper's batch size (Table 3): 512 for cheetah-run, 128 for the other tasks (the
    official cartpole-swingup script also uses 128)."""
    return 512 if envs.parse_task(task) == ("cheetah", "run") else 128


# ---------------------------------------------------------------------------------------------
# building blocks of the loop
# ---------------------------------------------------------------------------------------------

def build_env(cfg: TrainConfig, seed: int) -> envs.DMControlEnv:
    return envs.make_env(cfg.env, seed=seed, from_pixels=cfg.agent != "state-sac", image_size=cfg.image_size,
                         frame_stack=cfg.frame_stack, action_repeat=cfg.action_repeat)


def agent_settings(cfg: TrainConfig, device: torch.device) -> AgentSettings:
    """The :class:`AgentSettings` of a training config on ``device`` (bf16 and the conv micro-batch
    resolved for it, the paper's learning rate when none is given)."""
    return AgentSettings(
        agent=cfg.agent, aux=cfg.aux, aug=cfg.aug, aug_backend=cfg.aug_backend, crop_size=cfg.crop_size,
        hidden_dim=cfg.hidden_dim, feature_dim=cfg.feature_dim, num_layers=cfg.num_layers, num_filters=cfg.num_filters,
        lr=cfg.lr or paper_lr(cfg.env), alpha_lr=cfg.alpha_lr, alpha_betas=(cfg.alpha_beta1, 0.999),
        critic_tau=cfg.critic_tau, encoder_tau=cfg.encoder_tau, actor_update_freq=cfg.actor_update_freq,
        target_update_freq=cfg.target_update_freq, discount=cfg.discount, init_temperature=cfg.init_temperature,
        aux_weight=cfg.aux_weight, optimizers=cfg.optimizers, aux_temperature=cfg.aux_temperature,
        queue_size=cfg.queue_size, bf16=resolve_bf16(cfg.bf16, device),
        conv_micro_batch=resolve_conv_micro_batch(cfg.conv_micro_batch, device), cuda_graphs=cfg.cuda_graphs)


def build_agent(cfg: TrainConfig, env: envs.DMControlEnv, device: torch.device) -> SacAgent:
    return SacAgent(env.observation_space.shape, env.action_space.shape[0], device, agent_settings(cfg, device))


def evaluate(agent: SacAgent, env: envs.DMControlEnv, episodes: int, seed: int,
             record: bool = False, show_progress: bool = False, label: str = "evaluation") -> tuple[list[float], list[np.ndarray]]:
    """Returns of ``episodes`` deterministic episodes (the same start states at every call) and,
    when ``record``, the frames (H, W, 3) of the first episode. ``show_progress``: a progress bar
    over the episodes (``label``), removed when they are done."""
    agent.train(False)
    returns, frames = [], []
    for episode in progress(range(episodes), desc=label, unit="episode", leave=False, disable=not show_progress):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            if record and episode == 0:
                frames.append(env.render())
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            total += reward
            done = terminated or truncated
        returns.append(total)
    agent.train(True)
    return returns, frames


def plot_learning_curve(rows: list[dict], path: Path, title: str) -> None:
    """Mean +- std evaluation return against environment steps, as a PNG (written atomically)."""
    steps = np.array([r["step"] for r in rows])
    mean = np.array([r["return_mean"] for r in rows])
    std = np.array([r["return_std"] for r in rows])
    fig, ax = pyplot().subplots(figsize=(6, 4))
    ax.plot(steps, mean, marker="o")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


class PhaseTimes:
    """Wall-clock seconds per phase of the loop, for ``phases.csv``: ``with phases("update"):``.

    Phases: ``act`` (policy forward for the next action), ``sample`` (replay batch), ``update``,
    ``env`` (physics), ``render``, ``replay_add``, ``eval``, ``checkpoint``. On CUDA the update
    runs asynchronously, so its time shows up where the host next waits for the GPU.
    """

    NAMES = ("act", "sample", "update", "env", "render", "replay_add", "eval", "checkpoint")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.NAMES, 0.0)
        self._started = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def move(self, source: str, target: str, seconds: float) -> None:
        """Re-attribute ``seconds`` measured inside ``source`` to ``target``."""
        self.seconds[source] -= seconds
        self.seconds[target] += seconds

    def drain(self) -> dict[str, float]:
        """Seconds and share of the elapsed time per phase since the last drain (then reset);
        ``other_share`` is what no phase covers (logging, the progress bar, Python)."""
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        row = {f"{name}_s": round(s, 3) for name, s in self.seconds.items()}
        row.update({f"{name}_share": round(s / elapsed, 4) for name, s in self.seconds.items()})
        row["other_share"] = round(1.0 - sum(self.seconds.values()) / elapsed, 4)
        self.seconds = dict.fromkeys(self.NAMES, 0.0)
        self._started = time.perf_counter()
        return row


@dataclass
class Counters:
    """Where the run stands; saved in every checkpoint."""

    env_step: int = 0
    episode: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    last_return: float = float("nan")
    train_seconds: float = 0.0


def weights_metadata(cfg: TrainConfig, env_step: int) -> dict[str, str]:
    """What ``rl_curl.evaluate --weights`` needs to rebuild the actor and its environment."""
    return {"env": cfg.env, "agent": cfg.agent, "env_steps": str(env_step),
            "config": json.dumps(config_to_dict(cfg), default=str)}


def save_run(run: RunFolder, cfg: TrainConfig, counters: Counters, agent: SacAgent, replay,
             metrics: dict[str, torch.Tensor]) -> None:
    """Atomic checkpoint, after checking the last update's losses: NaN weights are never saved."""
    run.save({"config": config_to_dict(cfg), "counters": vars(counters), "agent": agent.state_dict(),
              "replay": replay.state_dict(), "rng": capture_rng_state()},
             f"environment step {counters.env_step}", losses=metrics)


# ---------------------------------------------------------------------------------------------
# the training loop
# ---------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, given: Iterable[str] | None = None) -> Path:
    """Run (or resume) one training run in ``cfg.run_dir`` (locked meanwhile); returns its folder.
    ``cfg`` goes through :data:`PIPELINE` first (merged with the saved config on resume, the run
    folder filled in, validated); ``given``: the fields named on the command line (None = those
    set away from the defaults)."""
    cfg = PIPELINE.finish(cfg, given)
    device = resolve_device(cfg.device)
    tune_convolutions(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    # the environments first: a renderer that cannot work fails before the run folder exists
    env = build_env(cfg, cfg.seed)
    eval_env = build_env(cfg, cfg.seed + 10_000)
    if env.from_pixels:
        env.check_rendering()
    with RunFolder(run_dir, cfg.resume, COMMAND, hint=NAN_HINT) as run:
        _train(cfg, run, env, eval_env, device)
    return run_dir


def _train(cfg: TrainConfig, run: RunFolder, env: envs.DMControlEnv, eval_env: envs.DMControlEnv,
           device: torch.device) -> None:
    """The loop, top to bottom; see the module docstring."""
    run_dir = run.path
    checkpoint = run.load() if cfg.resume else None
    run.save_config(cfg)
    agent = build_agent(cfg, env, device)
    replay = make_replay(env.observation_space, env.action_space.shape[0], cfg.replay_capacity,
                         cfg.frame_stack, device)
    counters = Counters()
    logger = RunLogger(run_dir)
    if checkpoint is not None:
        agent.load_state_dict(checkpoint["agent"])
        replay.load_state_dict(checkpoint["replay"])
        restore_rng_state(checkpoint["rng"])
        counters = Counters(**checkpoint["counters"])
        logger.truncate_after(counters.env_step)  # the curve continues from the checkpoint
        del checkpoint
    evaluated = {row["step"] for row in logger.read("eval")}  # a resumed finished run is not evaluated again

    bar = progress(total=cfg.total_env_steps, initial=counters.env_step, desc=f"{cfg.env} {cfg.agent}",
                   unit="step", disable=not cfg.progress_bar)
    metrics: dict[str, torch.Tensor] = {}
    phases = PhaseTimes()
    last_log_step = counters.env_step
    start_time = last_log_time = time.perf_counter()
    obs, _ = env.reset(seed=cfg.seed * 100_003 + counters.episode)
    replay.new_episode()
    episode_return, at_episode_start = 0.0, True
    while True:
        # -- at an episode boundary: evaluate and checkpoint when due -----------------------
        if at_episode_start:
            done_training = counters.env_step >= cfg.total_env_steps
            counters.train_seconds += time.perf_counter() - start_time
            start_time = time.perf_counter()
            if (counters.env_step >= counters.next_eval or done_training) and counters.env_step not in evaluated:
                with phases("eval"):
                    run_evaluation(cfg, agent, eval_env, logger, run_dir, counters.env_step, counters.train_seconds)
                evaluated.add(counters.env_step)
                counters.next_eval = (counters.env_step // cfg.eval_every + 1) * cfg.eval_every
            if counters.env_step >= counters.next_checkpoint or done_training:
                counters.next_checkpoint = (counters.env_step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
                with phases("checkpoint"):
                    save_run(run, cfg, counters, agent, replay, metrics)
            elif run.stop_signal is not None:  # SIGINT / SIGTERM: this boundary is the next safe point
                save_run(run, cfg, counters, agent, replay, metrics)
            if done_training:
                break
            if run.stop_signal is not None:
                logger.close()
                raise run.interrupted()

        # -- one agent step ------------------------------------------------------------------
        if counters.env_step // env.action_repeat < cfg.init_steps:
            action = env.action_space.sample()
        else:
            with phases("act"):
                action = agent.act(obs)
            with phases("sample"):
                batch = replay.sample(cfg.batch_size)
            with phases("update"):
                metrics.update(agent.update(batch))
        rendered = env.render_seconds
        with phases("env"):
            next_obs, reward, terminated, truncated, info = env.step(action)
        phases.move("env", "render", env.render_seconds - rendered)
        with phases("replay_add"):
            replay.add(obs, action, reward, next_obs, terminated, truncated)
        obs = next_obs
        episode_return, at_episode_start = episode_return + reward, False
        counters.env_step += env.action_repeat
        bar.update(env.action_repeat)

        if metrics and counters.env_step - last_log_step >= cfg.log_every:
            now = time.perf_counter()
            fps = (counters.env_step - last_log_step) / max(now - last_log_time, 1e-9)
            values = {k: v.item() for k, v in metrics.items()}
            run.check_finite(f"environment step {counters.env_step}", **values)
            logger.log("train", counters.env_step, fps=fps, **values)
            logger.log("phases", counters.env_step, env_steps_per_second=fps, **phases.drain())
            last_log_step, last_log_time = counters.env_step, now
        if terminated or truncated:
            counters.episode += 1
            counters.last_return = episode_return
            logger.log("episode", counters.env_step, episode=counters.episode, episode_return=episode_return)
            bar.set_postfix(fps=f"{bar.format_dict.get('rate') or 0:.0f}", episode_return=f"{episode_return:.1f}")
            obs, _ = env.reset(seed=cfg.seed * 100_003 + counters.episode)
            replay.new_episode()
            episode_return, at_episode_start = 0.0, True
    bar.close()
    export_weights({k: v.detach().clone() for k, v in agent.actor.state_dict().items()}, run_dir / "actor.safetensors",
                   metadata=weights_metadata(cfg, counters.env_step))
    final = [row for row in logger.read("eval") if row["step"] == counters.env_step]
    run.write_summary({"env": cfg.env, "agent": cfg.agent, "seed": cfg.seed, "env_steps": counters.env_step,
                       "episodes": counters.episode, "train_seconds": round(counters.train_seconds, 1),
                       "final_eval": final[-1] if final else None})
    logger.close()


def run_evaluation(cfg: TrainConfig, agent: SacAgent, eval_env: envs.DMControlEnv, logger: RunLogger,
                   run_dir: Path, env_step: int, train_seconds: float) -> None:
    """Evaluate, log to eval.csv / TensorBoard, redraw the learning curve, save a video if asked."""
    returns, frames = evaluate(agent, eval_env, cfg.eval_episodes, seed=cfg.seed + 10_000, record=cfg.video,
                               show_progress=cfg.progress_bar, label=f"evaluation at env step {env_step}")
    logger.log("eval", env_step, return_mean=float(np.mean(returns)), return_std=float(np.std(returns)),
               return_min=float(np.min(returns)), return_max=float(np.max(returns)), episodes=len(returns),
               wall_seconds=round(train_seconds, 1))
    logger.flush()
    plot_learning_curve(logger.read("eval"), run_dir / "learning_curve.png", f"{cfg.env} ({cfg.agent})")
    if frames:
        save_episode_animation(frames, run_dir / "videos" / f"eval_{env_step:08d}")
    tqdm_write(f"[eval] env step {env_step}: return {np.mean(returns):.1f} +- {np.std(returns):.1f}")


def tqdm_write(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

def check(cfg: TrainConfig) -> None:
    """The checks across fields, after every field's declared bounds (:class:`UsageError`, exit 2)."""
    try:
        envs.parse_task(cfg.env)  # unknown task: a clear error before anything starts
    except ValueError as err:
        raise UsageError(f"--env: {err}", "give one of the valid tasks, e.g. --env cheetah-run") from None
    if cfg.crop_size > cfg.image_size:
        raise UsageError(f"--crop-size {cfg.crop_size} is larger than --image-size {cfg.image_size}",
                         "give a crop no larger than the rendered frame")
    try:
        resolve_conv_micro_batch(cfg.conv_micro_batch, torch.device("cpu"))
    except ValueError as err:
        raise UsageError(str(err), "give --conv-micro-batch auto, off or a positive integer") from None
    if cfg.cuda_graphs:
        problem = agent_settings(cfg, torch.device("cpu")).cuda_graph_problem(resolve_device(cfg.device))
        if problem:
            raise UsageError(f"--cuda-graphs: {problem}", "leave --cuda-graphs off, or run with --device cuda "
                             "and an aux loss other than infonce and the native augmentation backend")


def _device_preset(flags: dict[str, Any]) -> str:
    """The preset when none is named: ``paper`` with CUDA, ``cpu`` without."""
    return "paper" if resolve_device(flags.get("device", "auto")).type == "cuda" else "cpu"


def _resolve_defaults(cfg: TrainConfig) -> TrainConfig:
    """The defaults that depend on other fields, resolved so that config.json records the values
    used: the paper's batch size for the task, the run folder ``runs/rl_curl/<env>-<agent>-s<seed>``."""
    if cfg.batch_size is None:
        cfg = replace_config(cfg, batch_size=paper_batch_size(cfg.env))
    if cfg.run_dir is None:
        cfg = replace_config(cfg, run_dir=Path("runs/rl_curl") / f"{cfg.env}-{cfg.agent}-s{cfg.seed}")
    return cfg


PIPELINE = ConfigPipeline(TrainConfig, presets=PRESETS, default_preset=_device_preset,
                          description=__doc__.split("\n\n")[0], run_dir_field="run_dir", runtime=RUNTIME_FIELDS,
                          extendable=LENGTH_FIELDS, resolve=_resolve_defaults, check=check)
"""Flags -> validated config (:mod:`core_ssl.pipeline`): defaults, then the preset (``paper``
with CUDA, ``cpu`` without, unless --preset is given), then the flags; with --resume the run's
saved config, which the flags given must match except the runtime ones and a longer
--total-env-steps (:func:`core_ssl.run.resume_config`); every field within its declared bounds."""


def validate(cfg: TrainConfig) -> None:
    """Refuse settings that cannot work before anything starts (:class:`UsageError`, exit 2)."""
    PIPELINE.validate(cfg)


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The validated config of a command line (:data:`PIPELINE`)."""
    return PIPELINE.parse(list(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None) -> Path:
    envs.setup()  # MUJOCO_GL and the gymnasium ids, before anything imports dm_control
    run_dir = train(*PIPELINE.read(list(sys.argv[1:] if argv is None else argv)))
    print(f"run folder: {run_dir}")
    return run_dir


if __name__ == "__main__":
    run_command(main)
