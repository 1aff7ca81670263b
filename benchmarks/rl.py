"""CURL update speed against the reference code, FLOP/s against the machine's peak, and
environment throughput, on the CPU or, with --device cuda, a GPU. Prints one JSON line per
measurement, each with the machine and device facts (:func:`benchmarks.reference.run_facts`:
CPU model, family/model, SIMD level, native bf16, threads, load average; the device, GPU name,
torch / CUDA versions):

1. ``rl_update``: seconds per update, the paper's network sizes (4 convs of 32 filters on 84x84
   crops of 9x100x100 uint8 stacks, feature 50, MLPs 1024), each update sampling its batch
   from a filled replay buffer (``--capacity`` transitions of random frames) and cropping it.
   Contenders: ours (:meth:`rl_curl.agent.SacAgent.update` on
   :meth:`rl_curl.replay.FrameReplayBuffer.sample`) in fp32 and, where the CPU runs bf16
   natively (or ``--precisions bf16``), with bf16 convs, each with the conv micro-batch of
   ``--conv-micro-batch`` (default auto: 32 on a CPU; ``off 32`` times both) and each optimiser
   sequence of ``--optimizers`` (default ``joint``, the training default: one encoder step per
   update; ``joint official`` adds the official sequence's three, the like-for-like contender of
   the reference); with ``--reference CURL_TREE`` the
   official ``CurlSacAgent.update(replay_buffer, logger, step)`` of a MishaLaskin/curl
   checkout on its own ``ReplayBuffer`` (``sample_cpc``: numpy crops); with
   ``--official-style`` the official call sequence rebuilt from our modules. They run in
   alternating rounds in this one process (:func:`benchmarks.reference.alternate`), each turn
   two consecutive updates (one with the actor / alpha / target step, one critic-only), and
   the speed-up is the median of the per-round ratios. Without ``--reference`` a
   ``reference: not measured`` line says so; no quoted figure is divided by.
   With ``--device cuda`` every contender runs on the same GPU, in the same alternating
   rounds, each turn bracketed by ``torch.cuda.synchronize``: ours with its replay buffer in GPU
   memory (as ``rl_curl.train`` keeps it there on CUDA) and the whole batch through the convs,
   the reference on its own replay (numpy crops on the host, then copied to the GPU) as its
   ``train.py`` runs it; bf16 is timed by default where the GPU runs it natively.
   Every contender's FLOPs per update (``torch.utils.flop_counter``) and achieved GFLOP/s
   come with it, and with ``--peak peak.json`` (``benchmarks/peak.py``) the fraction of the
   machine's peak. ``--profile`` adds each contender's operator profile (``rl_profile``).
2. ``rl_bf16_numerics``: on one fixed batch with the same weights and random draws, the
   relative difference of the critic and CURL losses and of the critic's gradient between
   fp32 and bf16 convs (only when bf16 is among the precisions).
3. ``rl_env``: environment throughput of cheetah-run from pixels with random actions
   (environment steps per second; one 100x100 render per action-repeat block of 4).

    python benchmarks/rl.py --reference CURL_TREE --peak peak.json   # a few minutes, quiet machine
    python benchmarks/rl.py --device cuda --reference CURL_TREE --rounds 5 --skip-env   # one GPU
    python benchmarks/rl.py --quick                                   # checks the script in seconds
"""


from __future__ import annotations

import argparse
import copy
import itertools
import os
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rl_curl import envs  # noqa: E402  (chooses MUJOCO_GL before dm_control is imported)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.reference import (REFERENCE, Contender, add_device_argument, add_to_path, alternate,  # noqa: E402
                                  bf16_skip_note, compare, cudnn_autotune, default_precisions, emit, load_peak,
                                  not_measured, profile_ops, reference_tree, select_device, stub_module,
                                  tree_commit, twin_rate)
from core_ssl import losses  # noqa: E402
from core_ssl.device import resolve_conv_micro_batch  # noqa: E402
from core_ssl.momentum import ema_update_  # noqa: E402
from rl_curl.agent import SacAgent  # noqa: E402
from rl_curl.replay import Batch, FrameReplayBuffer  # noqa: E402

ACTION_DIM = 6  # cheetah-run
PRE_SHAPE = (9, 100, 100)
CROP = 84
CPU = torch.device("cpu")
CURL_HOW = ("Make one outside this project: git clone https://github.com/MishaLaskin/curl && "
            "git -C curl checkout 8416d6e (needs scikit-image; see docs/benchmarks.md).")


def random_batch(batch_size: int, seed: int = 0, device: torch.device = CPU) -> Batch:
    """Random transitions drawn on the CPU (the same on every device), then moved to ``device``."""
    g = torch.Generator().manual_seed(seed)
    frames = lambda: torch.randint(0, 256, (batch_size, *PRE_SHAPE), dtype=torch.uint8, generator=g)  # noqa: E731
    batch = Batch(frames(), torch.rand(batch_size, ACTION_DIM, generator=g) * 2 - 1,
                  torch.rand(batch_size, 1, generator=g), frames(), torch.ones(batch_size, 1))
    return Batch(*(t.to(device) for t in batch))


def transitions(capacity: int, seed: int):
    """``capacity`` random transitions (obs, action, reward, next_obs, done), episodes of 100."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, PRE_SHAPE, dtype=np.uint8)
    for i in range(capacity):
        next_obs = np.concatenate([obs[3:], rng.integers(0, 256, (3, *PRE_SHAPE[1:]), dtype=np.uint8)])
        yield obs, rng.uniform(-1, 1, ACTION_DIM).astype(np.float32), float(rng.normal()), next_obs, (i + 1) % 100 == 0
        obs = next_obs


# ------------------------------------------------------------------------------ contenders

def ours(batch_size: int, bf16: bool, capacity: int, micro_batch: str = "auto",
         optimizers: str = "joint", device: torch.device = CPU, cuda_graphs: bool = False) -> Contender:
    """SacAgent.update on batches sampled from a filled FrameReplayBuffer (crops included), the
    conv stacks in micro-batches as ``--conv-micro-batch`` of ``rl_curl.train`` sets them, the
    optimiser sequence as its ``--optimizers`` (``joint``: one encoder step per update;
    ``official``: the official code's three). Agent, replay buffer and sampling generator all
    live on ``device``, as ``rl_curl.train`` places them. With ``cuda_graphs`` each update
    variant is recorded before the contender is returned (6 updates), so no timed turn records."""
    torch.manual_seed(0)
    agent = SacAgent(PRE_SHAPE, ACTION_DIM, device, aux="curl", bf16=bf16, optimizers=optimizers,
                     conv_micro_batch=resolve_conv_micro_batch(micro_batch, device), cuda_graphs=cuda_graphs)
    replay = FrameReplayBuffer(PRE_SHAPE, ACTION_DIM, capacity, device=device)
    for obs, action, reward, next_obs, done in transitions(capacity, seed=1):
        replay.add(obs, action, reward, next_obs, terminated=False, truncated=done)
    generator = torch.Generator(device=device).manual_seed(2)
    if cuda_graphs:
        for _ in range(2 * (agent.graphs.warmup + 1)):
            agent.update(replay.sample(batch_size, generator))
    return Contender(lambda: agent.update(replay.sample(batch_size, generator)), enter=cudnn_autotune(True))


class _NullLogger:
    """Stands in for curl's ``logger.Logger``: every call is a no-op."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def load_curl(path: str) -> tuple[types.ModuleType, type, dict]:
    """Import ``utils`` and ``CurlSacAgent`` from a MishaLaskin/curl checkout, with one shim:
    ``utils.py`` imports the old ``gym`` only for its ``FrameStack`` wrapper (never used here),
    so a stub ``gym`` module is registered when none is installed."""
    root = reference_tree(path, ["curl_sac.py", "utils.py", "encoder.py"], "MishaLaskin/curl", CURL_HOW)
    add_to_path(root)

    class Wrapper:  # only subclassed by utils.FrameStack at import
        def __init__(self, env):
            self.env = env

    stubbed = stub_module("gym", Wrapper=Wrapper, spaces=types.SimpleNamespace(Box=None))
    import utils  # noqa: E402  (curl/utils.py)
    from curl_sac import CurlSacAgent  # noqa: E402

    meta = {"reference_code": "MishaLaskin/curl", "reference_path": str(root), "reference_commit": tree_commit(root),
            "shims": ["stub gym module (FrameStack unused)"] if stubbed else []}
    return utils, CurlSacAgent, meta


def official(curl_utils: types.ModuleType, agent_class: type, batch_size: int, capacity: int,
             device: torch.device = CPU) -> Contender:
    """The official ``CurlSacAgent.update`` (train.py's defaults, the paper's sizes) on its own
    replay buffer filled with the same random transitions; steps counted from 1001 (odd) as
    after ``init_steps`` in train.py. Both are given ``device``, as train.py gives them its
    device: the networks live there, the replay keeps numpy arrays on the host and copies each
    cropped batch there (``ReplayBuffer.sample_cpc``)."""
    curl_utils.set_seed_everywhere(0)
    replay = curl_utils.ReplayBuffer(obs_shape=PRE_SHAPE, action_shape=(ACTION_DIM,), capacity=capacity,
                                     batch_size=batch_size, device=device, image_size=CROP)
    for obs, action, reward, next_obs, done in transitions(capacity, seed=1):
        replay.add(obs, action, reward, next_obs, done)
    agent = agent_class(
        obs_shape=(9, CROP, CROP), action_shape=(ACTION_DIM,), device=device, hidden_dim=1024, discount=0.99,
        init_temperature=0.1, alpha_lr=1e-4, alpha_beta=0.5, actor_lr=1e-3, actor_beta=0.9, actor_log_std_min=-10,
        actor_log_std_max=2, actor_update_freq=2, critic_lr=1e-3, critic_beta=0.9, critic_tau=0.01,
        critic_target_update_freq=2, encoder_type="pixel", encoder_feature_dim=50, encoder_lr=1e-3,
        encoder_tau=0.05, num_layers=4, num_filters=32, log_interval=100, detach_encoder=False, curl_latent_dim=128)
    logger, step = _NullLogger(), [1001]

    def update() -> None:
        agent.update(replay, logger, step[0])
        step[0] += 1

    return Contender(update, enter=cudnn_autotune(False))  # the official code leaves cuDNN's default


# ------------------------------------------------------------------------------ the official sequence, rebuilt

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
        obs = torch.as_tensor(numpy_random_crop(obs_np), device=agent.device)  # host crops, copied as official
        next_obs = torch.as_tensor(numpy_random_crop(next_np), device=agent.device)
        positive = torch.as_tensor(numpy_random_crop(obs_np), device=agent.device)
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


def official_style(batch_size: int, device: torch.device = CPU) -> Contender:
    torch.manual_seed(0)
    np.random.seed(0)
    agent = SacAgent((9, CROP, CROP), ACTION_DIM, device, aux="curl")
    update = OfficialStyleUpdate(agent)
    host = random_batch(batch_size)
    obs_np, next_np = host.obs.numpy(), host.next_obs.numpy()
    batch = Batch(*(t.to(device) for t in host))
    return Contender(lambda: update(obs_np, next_np, batch), enter=cudnn_autotune(True))


# ------------------------------------------------------------------------------ 1. updates side by side

def bench_updates(batch_size: int, args, precisions: list[str], curl, peak: dict | None,
                  device: torch.device = CPU) -> None:
    contenders: dict[str, Contender] = {}
    sequence: dict[str, str] = {}  # which optimiser sequence each contender runs
    replay: dict[str, str] = {}  # where each contender's batches come from
    graph_settings = [False, True] if args.cuda_graphs else [False]
    for precision, micro_batch, optimizers, graphs in itertools.product(
            precisions, args.conv_micro_batch, args.optimizers, graph_settings):
        name = (f"ours_{precision}" + ("" if micro_batch == "auto" else f"_mb{micro_batch}")
                + ("" if optimizers == "joint" else f"_opt{optimizers}") + ("_graphs" if graphs else ""))
        contenders[name] = ours(batch_size, precision == "bf16", args.capacity, micro_batch, optimizers,
                                device, cuda_graphs=graphs)
        sequence[name] = optimizers
        replay[name] = f"FrameReplayBuffer on {device.type}"
    if args.official_style:
        contenders["official_style_fp32"] = official_style(batch_size, device)
        sequence["official_style_fp32"] = "official"
        replay["official_style_fp32"] = "one fixed host batch, numpy crops, copied to the device"
    if curl is not None:
        contenders[REFERENCE] = official(*curl[:2], batch_size, args.capacity, device)
        sequence[REFERENCE] = "official"
        replay[REFERENCE] = "curl ReplayBuffer.sample_cpc: numpy crops on the host, copied to the device"

    def show(r: int, seconds: dict[str, float]) -> None:
        emit({"bench": "rl_update_round", "batch": batch_size, "round": r,
              "seconds_per_update": {k: round(v, 4) for k, v in seconds.items()}})

    failed: dict[str, str] = {}
    times = alternate(contenders, rounds=args.rounds, calls=2, warmup=2, on_round=show, device=device, failed=failed)
    for name, why in failed.items():
        emit({"bench": "rl_update", "batch": batch_size, "contender": name, "failed": why})
    summary = compare(times) if times else {}
    for name, row in summary.items():
        precision = "bf16" if "bf16" in name else "fp32"
        rate = twin_rate(contenders, name, failed, row["median_s"], precision, peak, device, calls=2)
        emit({"bench": "rl_update", "batch": batch_size, "contender": name, "precision": precision,
              "optimizers": sequence[name], "replay": replay[name], **row, **rate,
              **(curl[2] if name == REFERENCE else {})})
    if curl is None:
        emit({"bench": "rl_update", "batch": batch_size, "contender": REFERENCE,
              **not_measured("no --reference given",
                             "python benchmarks/rl.py --reference CURL_TREE (a MishaLaskin/curl checkout)")})
    if args.profile:
        for name, contender in contenders.items():
            if name in failed:
                continue
            emit({"bench": "rl_profile", "batch": batch_size, "contender": name,
                  **profile_ops(contender.step, calls=2, top=args.profile_top, device=device)})


# ------------------------------------------------------------------------------ 2. bf16 numerics, 3. environment

def bench_bf16_numerics(batch_size: int, device: torch.device = CPU) -> None:
    torch.manual_seed(0)
    reference = SacAgent((9, 100, 100), ACTION_DIM, device, aux="curl")
    batch = random_batch(batch_size, seed=1, device=device)
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
          "mujoco_gl": os.environ.get("MUJOCO_GL")})




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (2 updates per turn)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_device_argument(parser, "where every contender's updates run (the replay of ours too)")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=None,
                        help="our agent's precisions (default: fp32, plus bf16 where the device runs it natively)")
    parser.add_argument("--conv-micro-batch", nargs="+", default=["auto"], metavar="SETTING",
                        help="our conv micro-batch settings to time, each a contender: auto (32 on a CPU, the "
                             "whole batch on CUDA; named ours_<precision>), off or N (named "
                             "ours_<precision>_mb<setting>)")
    parser.add_argument("--optimizers", nargs="+", choices=["joint", "official"], default=["joint"],
                        help="our optimiser sequences to time, each a contender: joint (the default update, one "
                             "encoder step; named ours_<precision>) and official (the official code's sequence, "
                             "three encoder steps: the like-for-like contender of --reference; named "
                             "ours_<precision>_optofficial)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="also time each of our contenders replayed from CUDA graphs (--device cuda; named "
                             "ours_<...>_graphs)")
    parser.add_argument("--capacity", type=int, default=2000, help="transitions in each replay buffer")
    parser.add_argument("--reference", metavar="CURL_TREE", help="a MishaLaskin/curl checkout to time alongside")
    parser.add_argument("--official-style", action="store_true",
                        help="also time the official call sequence rebuilt from our modules")
    parser.add_argument("--peak", metavar="PEAK_JSON", help="benchmarks/peak.py output: fractions of the peak")
    parser.add_argument("--profile", action="store_true", help="print each contender's operator profile")
    parser.add_argument("--profile-top", type=int, default=12, help="operators listed per profile")
    parser.add_argument("--env-steps", type=int, default=500, help="agent steps for the environment throughput")
    parser.add_argument("--skip-env", action="store_true", help="skip the environment throughput")
    parser.add_argument("--quick", action="store_true", help="batch 16, 2 rounds, capacity 200, 50 env steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.rounds, args.capacity, args.env_steps = [16], 2, 200, 50
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    if args.cuda_graphs and device.type != "cuda":
        parser.error("--cuda-graphs needs --device cuda")
    precisions = args.precisions or default_precisions(device)
    if "bf16" not in precisions and args.precisions is None:  # why the default left it out
        emit({"bench": "rl_update", "contender": "ours_bf16", "skipped": bf16_skip_note(device)})
    curl = load_curl(args.reference) if args.reference else None
    peak = load_peak(args.peak) if args.peak else None
    for batch_size in args.batch_sizes:
        bench_updates(batch_size, args, precisions, curl, peak, device)
    if "bf16" in precisions:
        bench_bf16_numerics(min(args.batch_sizes), device)
    if not args.skip_env:
        bench_env(args.env_steps)


if __name__ == "__main__":
    main()
