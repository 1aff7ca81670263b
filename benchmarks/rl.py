"""CURL update speed and environment throughput on the CPU.

Prints one JSON line per measurement:

1. ``rl_update``: one call of :meth:`rl_curl.agent.SacAgent.update` (CURL agent, the paper's
   network sizes: 4 convs of 32 filters on 84x84 crops of 9x100x100 uint8 stacks, feature 50,
   MLPs 1024; crops included) at each ``--batch-sizes``, fp32 and bf16 autocast of the convs.
   The update alternates between full updates (critic + CURL, actor, alpha, target EMA) and
   critic-only ones, as in training, so the median of ``--repeats`` (5) consecutive calls is
   reported with the full-update and critic-only medians beside it.
2. ``rl_update_official_style``: the official code's call sequence, rebuilt from the same
   modules, on the same machine: numpy crops of obs, next_obs and positives
   (``view_as_windows`` + fancy indexing), critic forward with gradients, actor and target on
   next_obs, critic step; actor step with two more conv passes (actor and critic on obs); the
   CURL step re-encoding the anchor with gradients and the positives with the key encoder,
   stepping the encoder a second time with its own Adam. Same median. This gives the speed-up
   on the machine at hand; the official code itself measured 0.94 s (batch 128) and 6.98 s
   (batch 512) on these machines.
3. ``rl_bf16_numerics``: on one fixed batch with the same weights and random draws, the
   relative difference of the critic and CURL losses and of the critic's gradient between
   fp32 and bf16 convs.
4. ``rl_env``: environment throughput of cheetah-run from pixels with random actions
   (environment steps per second; one 100x100 render per action-repeat block of 4).

``python benchmarks/rl.py`` takes a few minutes on two cores (batch 512 official-style
alone is about 7 s per update); ``--quick`` checks the script in seconds with small batches.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rl_curl import envs  # noqa: E402  (chooses MUJOCO_GL before dm_control is imported)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core_ssl import losses  # noqa: E402
from core_ssl.device import machine_facts  # noqa: E402
from core_ssl.momentum import ema_update_  # noqa: E402
from rl_curl.agent import SacAgent  # noqa: E402
from rl_curl.replay import Batch  # noqa: E402

ACTION_DIM = 6  # cheetah-run


def emit(record: dict) -> None:
    record.setdefault("torch_threads", torch.get_num_threads())
    print(json.dumps(record), flush=True)


def random_batch(batch_size: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    frames = lambda: torch.randint(0, 256, (batch_size, 9, 100, 100), dtype=torch.uint8, generator=g)  # noqa: E731
    return Batch(frames(), torch.rand(batch_size, ACTION_DIM, generator=g) * 2 - 1,
                 torch.rand(batch_size, 1, generator=g), frames(), torch.ones(batch_size, 1))


def median_seconds(step, repeats: int, warmup: int = 2) -> tuple[float, list[float]]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# ------------------------------------------------------------------------------ 1. our update

def bench_update(batch_size: int, bf16: bool, repeats: int) -> None:
    torch.manual_seed(0)
    agent = SacAgent((9, 100, 100), ACTION_DIM, torch.device("cpu"), aux="curl", bf16=bf16)
    batch = random_batch(batch_size)
    median, times = median_seconds(lambda: agent.update(batch), repeats)
    # the warm-up ran 2 updates, so the measured calls start with a full one (even index)
    full, critic_only = times[0::2], times[1::2]
    emit({"bench": "rl_update", "batch": batch_size, "precision": "bf16" if bf16 else "fp32",
          "median_s": round(median, 4), "full_update_median_s": round(statistics.median(full), 4),
          "critic_only_median_s": round(statistics.median(critic_only), 4) if critic_only else None,
          "times_s": [round(t, 4) for t in times]})


# ------------------------------------------------------------------------------ 2. official sequence

def numpy_random_crop(images: np.ndarray, size: int = 84) -> np.ndarray:
    """The official CURL crop: ``view_as_windows`` over the batch, then fancy indexing."""
    from skimage.util.shape import view_as_windows

    n, _, height, _ = images.shape
    offsets = height - size + 1
    w1 = np.random.randint(0, offsets, n)
    h1 = np.random.randint(0, offsets, n)
    windows = view_as_windows(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), (1, size, size, 1))[..., 0, :, :, 0]
    return windows[np.arange(n), w1, h1]


class OfficialStyleUpdate:
    """The official CURL update's passes and optimiser steps, with this package's modules."""

    def __init__(self, agent: SacAgent) -> None:
        self.agent = agent
        self.encoder_optimizer = torch.optim.Adam(agent.critic.encoder.parameters(), lr=1e-3)
        self.cpc_optimizer = torch.optim.Adam(agent.aux_head.parameters(), lr=1e-3)
        self.step = 0

    def __call__(self, obs_np: np.ndarray, next_np: np.ndarray, batch: Batch) -> None:
        agent = self.agent
        obs = torch.as_tensor(numpy_random_crop(obs_np))
        next_obs = torch.as_tensor(numpy_random_crop(next_np))
        positive = torch.as_tensor(numpy_random_crop(obs_np))
        critic, actor, target = agent.critic, agent.actor, agent.critic_target
        # critic
        with torch.no_grad():
            _, next_action, next_log_pi, _ = actor(actor.encoder(next_obs))
            target_q = torch.min(*target.q_values(target.encoder(next_obs), next_action))
            target_value = batch.reward + 0.99 * (target_q - agent.alpha.detach() * next_log_pi)
        q1, q2 = critic.q_values(critic.encoder(obs), batch.action)
        critic_loss = F.mse_loss(q1, target_value) + F.mse_loss(q2, target_value)
        agent.critic_optimizer.zero_grad()
        critic_loss.backward()
        agent.critic_optimizer.step()
        # actor and alpha, every 2 steps: two more conv passes over obs
        if self.step % 2 == 0:
            _, pi, log_pi, _ = actor(actor.encoder(obs, detach_conv=True))
            q = torch.min(*critic.q_values(critic.encoder(obs, detach_conv=True), pi))
            actor_loss = (agent.alpha.detach() * log_pi - q).mean()
            agent.actor_optimizer.zero_grad()
            actor_loss.backward()
            agent.actor_optimizer.step()
            alpha_loss = (agent.alpha * (-log_pi - agent.target_entropy).detach()).mean()
            agent.alpha_optimizer.zero_grad()
            alpha_loss.backward()
            agent.alpha_optimizer.step()
            ema_update_(target.q_heads, critic.q_heads, 0.99)
            ema_update_(target.encoder, critic.encoder, 0.95)
        # CURL: the anchor encoded again with gradients, the encoder stepped a second time
        anchor = critic.encoder(obs)
        with torch.no_grad():
            key = target.encoder(positive)
        cpc_loss = losses.curl_bilinear(anchor, key, agent.aux_head.weight)
        self.encoder_optimizer.zero_grad()
        self.cpc_optimizer.zero_grad()
        cpc_loss.backward()
        self.encoder_optimizer.step()
        self.cpc_optimizer.step()
        self.step += 1


def bench_official_style(batch_size: int, repeats: int) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    agent = SacAgent((9, 84, 84), ACTION_DIM, torch.device("cpu"), aux="curl")
    update = OfficialStyleUpdate(agent)
    batch = random_batch(batch_size)
    obs_np, next_np = batch.obs.numpy(), batch.next_obs.numpy()
    median, times = median_seconds(lambda: update(obs_np, next_np, batch), repeats)
    emit({"bench": "rl_update_official_style", "batch": batch_size, "precision": "fp32",
          "median_s": round(median, 4), "times_s": [round(t, 4) for t in times]})


# ------------------------------------------------------------------------------ 3. bf16 numerics

def bench_bf16_numerics(batch_size: int) -> None:
    torch.manual_seed(0)
    reference = SacAgent((9, 100, 100), ACTION_DIM, torch.device("cpu"), aux="curl")
    batch = random_batch(batch_size, seed=1)
    results = {}
    for bf16 in (False, True):
        agent = copy.deepcopy(reference)
        agent.bf16 = bf16
        agent.critic_optimizer.step = lambda *a, **k: None  # keep the weights: compare gradients only
        torch.manual_seed(123)
        metrics = agent.update(batch)
        grad = torch.cat([p.grad.flatten() for p in agent.critic.parameters() if p.grad is not None])
        results[bf16] = (metrics["critic_loss"].item(), metrics["aux_loss"].item(), grad)
    (c32, a32, g32), (c16, a16, g16) = results[False], results[True]
    emit({"bench": "rl_bf16_numerics", "batch": batch_size,
          "critic_loss_rel_diff": abs(c16 - c32) / abs(c32), "curl_loss_rel_diff": abs(a16 - a32) / abs(a32),
          "critic_grad_rel_diff": ((g16 - g32).norm() / g32.norm()).item(),
          "critic_grad_cosine": F.cosine_similarity(g16, g32, dim=0).item()})


# ------------------------------------------------------------------------------ 4. environment

def bench_env(agent_steps: int) -> None:
    env = envs.make_env("cheetah-run", seed=0)
    env.reset(seed=0)
    start = time.perf_counter()
    env_steps = 0
    for _ in range(agent_steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        env_steps += env.action_repeat
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    emit({"bench": "rl_env", "task": "cheetah-run", "action_repeat": env.action_repeat,
          "env_steps_per_s": round(env_steps / seconds, 1), "renders_per_s": round(agent_steps / seconds, 1),
          "mujoco_gl": envs.os.environ.get("MUJOCO_GL")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per setting (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--env-steps", type=int, default=500, help="agent steps for the environment throughput")
    parser.add_argument("--skip-official", action="store_true", help="skip the official-style sequence")
    parser.add_argument("--quick", action="store_true", help="batch 16, 2 repeats, 50 env steps: checks the script")
    args = parser.parse_args()
    if args.quick:
        args.batch_sizes, args.repeats, args.env_steps = [16], 2, 50
    torch.set_num_threads(args.threads)
    emit({"bench": "rl_machine", **machine_facts()})
    for batch_size in args.batch_sizes:
        for bf16 in (False, True):
            bench_update(batch_size, bf16, args.repeats)
        if not args.skip_official:
            bench_official_style(batch_size, args.repeats)
    bench_bf16_numerics(min(args.batch_sizes))
    bench_env(args.env_steps)


if __name__ == "__main__":
    main()
