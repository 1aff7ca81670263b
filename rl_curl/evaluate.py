"""Watch a trained agent: evaluation episodes from a weights file, with a video.

    python -m rl_curl.evaluate --weights docs/weights/rl/cartpole-swingup-curl.safetensors
    python -m rl_curl.evaluate --weights runs/rl_curl/x/actor.safetensors --episodes 10 --video out/ep
    python -m rl_curl.evaluate --export runs/rl_curl/x --weights agent.safetensors   # from a checkpoint

A weights file is the actor's state dict as safetensors (fp16 or fp32) whose metadata holds the
run's full training config (``config``, JSON), so the actor and its environment (task, action
repeat, frame stack, render and crop sizes) are rebuilt exactly. Episodes use deterministic
actions (the policy mean) on the centre crop, as the training command's evaluation does; the
first is saved as mp4 (GIF without ffmpeg) when ``--video`` is given. ``--export RUN`` first
writes such a file from ``RUN/checkpoint.pt`` (fp16 unless ``--fp32``), for runs that predate
the metadata or to ship a small file.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from core_ssl.openmp import prefer_passive_waiting

prefer_passive_waiting()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core_ssl.checkpoint import (CheckpointError, export_weights, load_checkpoint, load_state, load_weights,  # noqa: E402
                                 read_safetensors_metadata)
from core_ssl.cli import UsageError, run_command  # noqa: E402
from core_ssl.config import parse_config, replace_config  # noqa: E402
from core_ssl.device import resolve_device  # noqa: E402
from rl_curl.video import save_episode_animation  # noqa: E402

__all__ = ["read_weights_config", "load_agent", "export_actor", "main"]


def _train_module():
    from rl_curl import train  # deferred: importing it sets up rendering (MUJOCO_GL)

    return train


def _config_from_dict(values: dict):
    train = _train_module()
    known = {f.name for f in dataclasses.fields(train.TrainConfig)}
    values = {k: v for k, v in values.items() if k in known and k not in ("run_dir", "resume")}
    return replace_config(train.TrainConfig(), **values)


def read_weights_config(path: str | Path):
    """The training config stored in a weights file's metadata (a :class:`CheckpointError` naming
    a missing or foreign file)."""
    path = Path(path)
    metadata = read_safetensors_metadata(path)
    if "config" not in metadata:
        raise CheckpointError(f"{path} has no training config in its metadata; re-export it with "
                              "python -m rl_curl.evaluate --export RUN_DIR --weights NEW_FILE")
    return _config_from_dict(json.loads(metadata["config"]))


def load_agent(path: str | Path, device: torch.device = torch.device("cpu")):
    """(config, environment for evaluation, agent with the file's actor weights)."""
    train = _train_module()
    cfg = read_weights_config(path)
    env = train.build_env(cfg, cfg.seed + 10_000)
    agent = train.build_agent(cfg, env, device)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(path, device).items()}
    load_state(agent.actor, state, path)
    return cfg, env, agent


def export_actor(run_dir: str | Path, path: str | Path, half: bool = True) -> Path:
    """Write the actor of ``run_dir/checkpoint.pt`` as safetensors with its config in the metadata."""
    checkpoint = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    cfg = _config_from_dict(checkpoint["config"])
    actor = {k: (v.half() if half and v.is_floating_point() else v)
             for k, v in checkpoint["agent"]["actor"].items()}
    return export_weights(actor, path, metadata=_train_module().weights_metadata(cfg, checkpoint["counters"]["env_step"]))


@dataclass
class EvaluateConfig:
    """Evaluation episodes of a trained agent from its weights file, with a video."""

    weights: Path | None = field(default=None, metadata={"help": "actor weights (.safetensors) to evaluate or to write (required)"})
    export: Path | None = field(default=None, metadata={"help": "RUN_DIR: first write --weights from RUN_DIR/checkpoint.pt"})
    fp32: bool = field(default=False, metadata={"help": "with --export: keep fp32 weights (default fp16)"})
    episodes: int = field(default=10, metadata={"help": "evaluation episodes", "min": 1})
    seed: int | None = field(default=None, metadata={"help": "seed of the first episode (default: the run's evaluation "
                                                             "seed, so the returns match its last evaluation)", "min": 0})
    video: Path | None = field(default=None, metadata={"help": "save the first episode as VIDEO.mp4 (or .gif)"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | cuda:N | auto"})


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_config(EvaluateConfig, list(sys.argv[1:] if argv is None else argv),
                        description=__doc__.split("\n\n")[0])
    if args.weights is None:
        raise UsageError("--weights is required", "give the actor weights (.safetensors) to evaluate or to write")
    device = resolve_device(args.device)
    if args.export is not None:
        export_actor(args.export, args.weights, half=not args.fp32)
        print(f"wrote {args.weights}", file=sys.stderr)
    cfg, env, agent = load_agent(args.weights, device)
    seed = cfg.seed + 10_000 if args.seed is None else args.seed
    returns, frames = _train_module().evaluate(agent, env, args.episodes, seed=seed, record=args.video is not None)
    print(json.dumps({"env": cfg.env, "agent": cfg.agent, "episodes": len(returns),
                      "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
                      "returns": [round(float(r), 2) for r in returns]}))
    if frames:
        print(f"video: {save_episode_animation(frames, args.video)}", file=sys.stderr)


if __name__ == "__main__":
    run_command(main)
