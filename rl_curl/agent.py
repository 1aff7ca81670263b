"""SAC agents for DeepMind Control: CURL (default), pixel SAC and state SAC.

Networks (Srinivas et al. 2020 / the official CURL code):

* critic: a :class:`core_ssl.encoders.CurlEncoder` (4 convs of 32 filters, fc to 50,
  LayerNorm) and twin Q heads ``[features, action] -> 1024 -> 1024 -> 1``;
* actor: its own CurlEncoder whose **conv weights are the critic's** (tied with
  ``copy_conv_weights_from``) and which never back-propagates into them, then a tanh-Gaussian
  policy head ``features -> 1024 -> 1024 -> (mu, log_std)``;
* critic target: an EMA copy of the critic (Q heads tau 0.01, encoder tau 0.05); its encoder
  is also CURL's momentum key encoder;
* entropy temperature alpha, learned (initial 0.1, target entropy -|A|).

One update (:meth:`SacAgent.update`), every parameter stepped by exactly one optimiser:

1. augment: anchor = aug(obs), next = aug(next_obs), positive = aug(obs) (a second draw);
2. without gradients: the next action from the actor on ``next`` and the target critic's
   features of ``next`` and ``positive`` (one batched pass of the target encoder);
3. **critic + auxiliary step**: the anchor crop is encoded once; its features feed the twin Q
   loss ``sum_i (Q_i(s, a) - y)^2`` with ``y = r + gamma * not_done * (min_i Q'_i(s', a') -
   alpha * log pi(a'|s'))`` and the auxiliary loss (``curl``: bilinear InfoNCE with a learned
   W; ``infonce``: cosine InfoNCE against a MoCo queue of keys; ``byol``: BYOL regression
   through a predictor; ``none``). One backward of their sum, one step of one optimiser over
   the critic (encoder included) and the auxiliary head (``optimizers="joint"``, the default).
4. every ``actor_update_freq`` updates: **actor and alpha steps** on the anchor's conv
   features, detached (no second conv pass): ``L_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)]``
   with a ~ pi reparameterised, and ``L_alpha = E[alpha (-log pi(a|s) - H_target)]``;
5. every ``target_update_freq`` updates: EMA of the target critic.

With ``optimizers="official"`` the update follows the official code's sequence instead:
critic step on the critic loss alone (critic Adam, encoder included); actor and alpha steps on
the anchor re-encoded by the *updated* convs; target EMA; then the auxiliary loss on the anchor
re-encoded once more with gradients and the key from the *updated* target encoder, stepped by
two Adams at once: ``encoder_optimizer`` (the critic's encoder) and ``aux_optimizer`` (the
official ``cpc_optimizer``: the encoder again and W). The encoder takes three Adam steps per
update there, one here.

Conv passes per update (joint): one with gradients (anchor) and three without (next for the actor,
next and positive for the target), against the official code's seven forward and two backward
passes. The conv stack runs under bf16 autocast when ``bf16`` is set; everything after it
(fc, LayerNorm, MLPs, losses) stays fp32. No ``.item()`` inside the update, so on CUDA it
never waits for the host.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core_ssl import losses
from core_ssl.augment import center_crop, check_backend, random_crop, random_shift
from core_ssl.augment.backends import resolve_backend
from core_ssl.checkpoint import load_optimizer_state
from core_ssl.cuda_graphs import StepGraphs, capturable, graph_support
from core_ssl.device import autocast, fused_optimizer
from core_ssl.encoders import CurlEncoder, orthogonal_weight_init
from core_ssl.heads import BilinearSimilarity, MLPHead, byol_predictor
from core_ssl.momentum import KeyQueue, ema_update_, momentum_copy

from rl_curl.replay import Batch

__all__ = ["AGENTS", "AUX_LOSSES", "AUGMENTATIONS", "OPTIMIZER_MODES", "StateEncoder", "Actor", "Critic", "AuxLoss", "AgentSettings",
           "SacAgent"]

AGENTS = ("curl", "pixel-sac", "state-sac")
AUGMENTATIONS = ("crop", "shift")
OPTIMIZER_MODES = ("joint", "official")


class StateEncoder(nn.Module):
    """The identity 'encoder' of state SAC, with CurlEncoder's interface (no parameters)."""

    def __init__(self, state_dim: int) -> None:
        super().__init__()
        self.feature_dim = state_dim

    def forward_conv(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def forward_head(self, conv_features: torch.Tensor) -> torch.Tensor:
        return conv_features

    def forward(self, obs: torch.Tensor, detach_conv: bool = False) -> torch.Tensor:
        return obs

    def copy_conv_weights_from(self, source: nn.Module) -> None:
        """Nothing to tie."""


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> MLPHead:
    """``Linear -> ReLU -> Linear -> ReLU -> Linear`` (SAC's 3-layer MLP)."""
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers=3, batch_norm=False)


class Actor(nn.Module):
    """Tanh-Gaussian policy on encoder features.

    ``forward(features) -> (mu, pi, log_pi, log_std)`` with ``u = mu + sigma * eps``,
    ``pi = tanh(u)``, ``mu`` also squashed, and
    ``log pi = sum_j [log N(u_j; mu_j, sigma_j) - log(1 - tanh(u_j)^2)]``. ``log_std`` is
    tanh-squashed into [log_std_min, log_std_max] (-10, 2), as in SAC-AE / CURL.
    """

    def __init__(self, encoder: nn.Module, action_dim: int, hidden_dim: int,
                 log_std_min: float = -10.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.trunk = _mlp(encoder.feature_dim, hidden_dim, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.trunk.apply(orthogonal_weight_init)

    def forward(self, features: torch.Tensor, sample: bool = True):
        mu, log_std = self.trunk(features).chunk(2, dim=-1)
        log_std = torch.tanh(log_std)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1)
        if not sample:
            return torch.tanh(mu), None, None, log_std
        noise = torch.randn_like(mu)
        u = mu + noise * log_std.exp()
        log_pi = (-0.5 * noise.pow(2) - log_std).sum(-1, keepdim=True) - 0.5 * math.log(2 * math.pi) * mu.shape[-1]
        pi = torch.tanh(u)
        log_pi = log_pi - torch.log(F.relu(1 - pi.pow(2)) + 1e-6).sum(-1, keepdim=True)
        return torch.tanh(mu), pi, log_pi, log_std


class Critic(nn.Module):
    """Encoder + twin Q heads: ``q_values(features, action) -> (Q1, Q2)``, each (B, 1)."""

    def __init__(self, encoder: nn.Module, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.q_heads = nn.ModuleList(_mlp(encoder.feature_dim + action_dim, hidden_dim, 1) for _ in range(2))
        self.q_heads.apply(orthogonal_weight_init)

    def q_values(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state_action = torch.cat([features, action], dim=-1)
        return self.q_heads[0](state_action), self.q_heads[1](state_action)


def _curl_loss(agent: "SacAgent", query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    return losses.curl_bilinear(query, key, agent.aux_head.weight)


def _infonce_loss(agent: "SacAgent", query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    loss = losses.info_nce(query, key, agent.key_queue.keys.clone(), agent.aux_temperature)
    agent.key_queue.enqueue(key)
    return loss


def _byol_loss(agent: "SacAgent", query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    return losses.byol_loss(agent.aux_head(query), key)


@dataclasses.dataclass(frozen=True)
class AuxLoss:
    """One auxiliary loss of the ``curl`` agent: the head trained with the encoder (``aux_head``,
    from the agent's settings), whether it keeps a queue of past keys (``key_queue``), and the
    loss of a (query, key) batch of encoder features."""

    loss: Callable[["SacAgent", torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    head: Callable[["AgentSettings"], nn.Module] | None = None
    queue: bool = False


AUX_LOSSES: dict[str, AuxLoss] = {
    "curl": AuxLoss(_curl_loss, head=lambda s: BilinearSimilarity(s.feature_dim)),
    "infonce": AuxLoss(_infonce_loss, queue=True),
    "byol": AuxLoss(_byol_loss, head=lambda s: byol_predictor(s.feature_dim, hidden=4 * s.feature_dim)),
    "none": AuxLoss(),
}
"""The auxiliary losses by name (``--aux``); a new one is one entry here."""


@dataclasses.dataclass
class AgentSettings:
    """Everything :class:`SacAgent` is built from besides the observation and action shapes and
    the device (the defaults are the paper's); ``rl_curl.train.agent_settings`` fills it from a
    training config.

    Attributes:
        agent: ``curl`` (pixels + aux loss), ``pixel-sac`` (pixels, no aux), ``state-sac``.
        aux: ``curl | infonce | byol | none`` (``pixel-sac`` forces ``none``).
        aug: ``crop`` (CURL: random 84x84 crop of the 100x100 render) or ``shift`` (DrQ:
            centre crop to 84, then random shift by up to ``shift_pad`` pixels).
        aug_backend: ``auto | native | kornia``: where the crop or shift runs
            (:mod:`core_ssl.augment.backends`; same distribution, auto = the device's default).
        crop_size: encoder input side (84).
        hidden_dim, feature_dim, num_layers, num_filters: network sizes (1024, 50, 4, 32).
        lr: actor, critic, encoder and aux-head learning rate; alpha_lr, alpha_betas: the
            temperature's Adam settings; critic_tau, encoder_tau: EMA rates of the target
            Q heads and target (key) encoder; actor_update_freq, target_update_freq: in updates.
        discount: gamma; init_temperature: initial alpha.
        aux_weight: weight of the aux loss added to the critic loss.
        aux_temperature, queue_size: for ``infonce``.
        bf16: run the conv stacks under bf16 autocast.
        optimizers: ``joint`` (one step over the summed critic + aux loss) or ``official``
            (the official code's three encoder steps per update); see the module docstring.
        conv_micro_batch: run the conv stacks on at most this many observations at a time
            (None: whole batches); a speed setting only, the same maths up to float rounding
            (:func:`core_ssl.device.resolve_conv_micro_batch`).
        cuda_graphs: replay each update from a CUDA graph (:mod:`core_ssl.cuda_graphs`): one
            graph per update variant (with or without the actor and target steps), the batch
            copied into it; a speed setting only. CUDA devices only; not with ``aux="infonce"``
            (its key queue advances on the host) or the kornia backend (it draws on the host).
    """

    agent: Literal["curl", "pixel-sac", "state-sac"] = "curl"
    aux: Literal["curl", "infonce", "byol", "none"] = "curl"
    aug: Literal["crop", "shift"] = "crop"
    crop_size: int = 84
    shift_pad: int = 4
    hidden_dim: int = 1024
    feature_dim: int = 50
    num_layers: int = 4
    num_filters: int = 32
    lr: float = 1e-3
    alpha_lr: float = 1e-4
    alpha_betas: tuple[float, float] = (0.5, 0.999)
    critic_tau: float = 0.01
    encoder_tau: float = 0.05
    actor_update_freq: int = 2
    target_update_freq: int = 2
    discount: float = 0.99
    init_temperature: float = 0.1
    aux_weight: float = 1.0
    aux_temperature: float = 0.1
    queue_size: int = 4096
    bf16: bool = False
    optimizers: Literal["joint", "official"] = "joint"
    aug_backend: str = "auto"
    conv_micro_batch: int | None = None
    cuda_graphs: bool = False

    def check(self, device: torch.device | None = None) -> None:
        """Raise ``ValueError`` for a name that is none of the known agents, aux losses,
        optimiser modes or augmentations, or CUDA graphs asked for where they cannot run."""
        for value, known, what in ((self.agent, AGENTS, "agent"), (self.aux, AUX_LOSSES, "aux loss"),
                                   (self.optimizers, OPTIMIZER_MODES, "optimizers"),
                                   (self.aug, AUGMENTATIONS, "augmentation")):
            if value not in known:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(known)}")
        if self.cuda_graphs:
            problem = self.cuda_graph_problem(device)
            if problem:
                raise ValueError(problem)

    def cuda_graph_problem(self, device: torch.device | None) -> str | None:
        """Why these settings cannot replay their updates from CUDA graphs on ``device``, or None."""
        if device is not None and (problem := graph_support(device)):
            return problem
        if self.agent == "curl" and AUX_LOSSES[self.aux].queue:
            return f"CUDA graphs cannot record aux {self.aux!r}: its key queue advances on the host"
        if device is not None and resolve_backend(check_backend(self.aug_backend), torch.device(device)) == "kornia":
            return "CUDA graphs cannot record the kornia augmentation backend (it draws on the host)"
        return None


class SacAgent:
    """SAC with an optional contrastive / self-supervised auxiliary loss; see the module docstring.

    Args:
        obs_shape: (3S, H, W) rendered pixels (H = W = 100) or (D,) states.
        action_dim: action size (actions in [-1, 1]).
        device: torch device.
        settings: the agent's :class:`AgentSettings` (default: the paper's).
        overrides: fields of ``settings`` to replace (``SacAgent(..., aux="byol")``).
    """

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int, device: torch.device,
                 settings: AgentSettings | None = None, **overrides: Any) -> None:
        settings = dataclasses.replace(settings or AgentSettings(), **overrides)
        settings.check(device)
        self.settings = settings
        agent, aux, aug, crop_size = settings.agent, settings.aux, settings.aug, settings.crop_size
        self.pixels = agent != "state-sac"
        if self.pixels != (len(obs_shape) == 3):
            raise ValueError(f"agent {agent!r} needs {'pixel' if self.pixels else 'state'} observations, "
                             f"got shape {tuple(obs_shape)}")
        self.device = torch.device(device)
        self.agent_name = agent
        self.aux = aux if agent == "curl" else "none"
        self.aug, self.crop_size, self.shift_pad = aug, crop_size, settings.shift_pad
        self.aug_backend = check_backend(settings.aug_backend)
        self.discount, self.critic_tau, self.encoder_tau = settings.discount, settings.critic_tau, settings.encoder_tau
        self.actor_update_freq, self.target_update_freq = settings.actor_update_freq, settings.target_update_freq
        self.aux_weight, self.aux_temperature = settings.aux_weight, settings.aux_temperature
        self.bf16 = settings.bf16
        self.optimizers_mode = settings.optimizers
        # channels-last convolutions: on CUDA, and with bf16 on a CPU that runs it natively (oneDNN's
        # bf16 kernels want NHWC; in fp32 the NCHW path is as fast, docs/benchmarks.md)
        self.channels_last = self.pixels and (self.device.type == "cuda" or (self.bf16 and self.device.type == "cpu"))

        def make_encoder() -> nn.Module:
            if not self.pixels:
                return StateEncoder(obs_shape[0])
            return CurlEncoder((obs_shape[0], crop_size, crop_size), settings.feature_dim, settings.num_layers,
                               settings.num_filters, micro_batch=settings.conv_micro_batch)

        self.critic = Critic(make_encoder(), action_dim, settings.hidden_dim).to(self.device)
        self.critic_target = momentum_copy(self.critic)
        self.actor = Actor(make_encoder(), action_dim, settings.hidden_dim).to(self.device)
        self.actor.encoder.copy_conv_weights_from(self.critic.encoder)
        if self.channels_last:
            for module in (self.critic, self.critic_target, self.actor):
                module.to(memory_format=torch.channels_last)
        self.log_alpha = torch.tensor(math.log(settings.init_temperature), device=self.device, requires_grad=True)
        self.target_entropy = -float(action_dim)

        aux_loss = AUX_LOSSES[self.aux]
        self.aux_head: nn.Module | None = aux_loss.head(settings).to(self.device) if aux_loss.head else None
        self.key_queue: KeyQueue | None = (KeyQueue(settings.feature_dim, settings.queue_size).to(self.device)
                                           if aux_loss.queue else None)

        critic_params = list(self.critic.parameters())
        critic_ids = {id(p) for p in critic_params}
        aux_params = list(self.aux_head.parameters()) if self.aux_head is not None else []
        official, graphs = settings.optimizers == "official", settings.cuda_graphs
        lr = capturable({"lr": settings.lr}, graphs)
        adam = torch.optim.Adam
        self.critic_optimizer = fused_optimizer(adam, critic_params + ([] if official else aux_params), **lr)
        # the actor's tied conv weights belong to the critic's optimiser only
        self.actor_optimizer = fused_optimizer(adam, [p for p in self.actor.parameters() if id(p) not in critic_ids], **lr)
        self.alpha_optimizer = fused_optimizer(adam, [self.log_alpha], **capturable(
            {"lr": settings.alpha_lr, "betas": settings.alpha_betas}, graphs))
        self.optimizers = {"critic": self.critic_optimizer, "actor": self.actor_optimizer,
                           "alpha": self.alpha_optimizer}
        if official and self.aux != "none":
            # the official encoder_optimizer and cpc_optimizer: both step the critic's encoder
            encoder_params = list(self.critic.encoder.parameters())
            self.optimizers["encoder"] = fused_optimizer(adam, encoder_params, **lr)
            self.optimizers["aux"] = fused_optimizer(adam, encoder_params + aux_params, **lr)
        self.updates = 0
        self.graphs: StepGraphs | None = StepGraphs(self._step, self._trained_tensors) if graphs else None

    # -- helpers ---------------------------------------------------------------------------

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def _conv(self, encoder: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """Conv features (B, F) of ``obs``, under bf16 autocast when enabled."""
        if not self.pixels:
            return obs
        if self.channels_last:
            obs = obs.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.bf16):
            return encoder.forward_conv(obs)

    def _augment(self, obs: torch.Tensor) -> torch.Tensor:
        """Training augmentation of a uint8 batch (B, 3S, H, W) -> (B, 3S, crop, crop)."""
        if not self.pixels:
            return obs
        if self.aug == "crop":
            return random_crop(obs, self.crop_size, backend=self.aug_backend)
        return random_shift(center_crop(obs, self.crop_size), self.shift_pad, backend=self.aug_backend)

    def _eval_view(self, obs: torch.Tensor) -> torch.Tensor:
        return center_crop(obs, self.crop_size) if self.pixels else obs

    # -- acting ----------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """One action for one observation (centre crop; the mean action when ``deterministic``)."""
        x = torch.as_tensor(obs, device=self.device).unsqueeze(0)
        if not self.pixels:
            x = x.float()
        features = self.actor.encoder.forward_head(self._conv(self.actor.encoder, self._eval_view(x)))
        mu, pi, _, _ = self.actor(features, sample=not deterministic)
        return (mu if deterministic else pi)[0].float().cpu().numpy()

    # -- learning --------------------------------------------------------------------------

    def _aux_loss(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return AUX_LOSSES[self.aux].loss(self, query, key)

    @torch.no_grad()
    def _td_target(self, batch: Batch, next_view: torch.Tensor,
                   positive: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``y = r + gamma * not_done * (min_i Q'_i(s', a') - alpha log pi(a'|s'))`` and, when
        ``positive`` is given, the target encoder's keys of it (batched in the same pass)."""
        next_features = self.actor.encoder.forward_head(self._conv(self.critic.encoder, next_view))
        _, next_action, next_log_pi, _ = self.actor(next_features)
        target_input = next_view if positive is None else torch.cat([next_view, positive])
        target_encoder = self.critic_target.encoder
        target_features = target_encoder.forward_head(self._conv(target_encoder, target_input))
        next_target_features, key = (target_features, None) if positive is None \
            else target_features.split(len(next_view))
        target_q = torch.min(*self.critic_target.q_values(next_target_features, next_action))
        target_v = target_q - self.alpha.detach() * next_log_pi
        return batch.reward + batch.not_done * self.discount * target_v, key

    def _update_target(self) -> None:
        ema_update_(self.critic_target.q_heads, self.critic.q_heads, 1.0 - self.critic_tau)
        ema_update_(self.critic_target.encoder, self.critic.encoder, 1.0 - self.encoder_tau)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One SAC (+ auxiliary) update from a replay batch; returns detached metric tensors.

        Every ``actor_update_freq``-th update also steps the actor and the temperature, every
        ``target_update_freq``-th the target networks (counted from update 0). With
        ``cuda_graphs`` the update is replayed from the graph recorded for its variant.
        """
        with_actor = self.updates % self.actor_update_freq == 0
        with_target = self.updates % self.target_update_freq == 0
        step = self.graphs if self.graphs is not None else self._step
        metrics = step(batch, with_actor, with_target)
        self.updates += 1
        return metrics

    def _step(self, batch: Batch, with_actor: bool, with_target: bool) -> dict[str, torch.Tensor]:
        """The update's maths, its variant fixed by the two flags (graph-safe: no host sync)."""
        if self.optimizers_mode == "official":
            return self._update_official(batch, with_actor, with_target)
        return self._update_joint(batch, with_actor, with_target)

    def _trained_tensors(self) -> list[torch.Tensor]:
        """Every tensor an update's backward passes write a gradient to."""
        modules = [self.critic, self.actor] + ([self.aux_head] if self.aux_head is not None else [])
        return [p for module in modules for p in module.parameters()] + [self.log_alpha]

    def _update_joint(self, batch: Batch, with_actor: bool, with_target: bool) -> dict[str, torch.Tensor]:
        """SAC's critic step over the critic loss plus the weighted aux loss (one encoder step)."""
        use_aux = self.aux != "none"
        anchor, next_view = self._augment(batch.obs), self._augment(batch.next_obs)
        positive = self._augment(batch.obs) if use_aux else None
        metrics: dict[str, torch.Tensor] = {}
        target, key = self._td_target(batch, next_view, positive)

        conv = self._conv(self.critic.encoder, anchor)
        features = self.critic.encoder.forward_head(conv)
        q1, q2 = self.critic.q_values(features, batch.action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        loss = critic_loss
        if use_aux:
            aux_loss = self._aux_loss(features, key)
            loss = loss + self.aux_weight * aux_loss
            metrics["aux_loss"] = aux_loss.detach()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        metrics.update(critic_loss=critic_loss.detach(), q=q1.detach().mean())

        if with_actor:
            metrics.update(self._update_actor_and_alpha(conv.detach()))
        if with_target:
            self._update_target()
        return metrics

    def _update_official(self, batch: Batch, with_actor: bool, with_target: bool) -> dict[str, torch.Tensor]:
        """The official CURL update sequence (``CurlSacAgent.update``), step for step."""
        use_aux = self.aux != "none"
        anchor, next_view = self._augment(batch.obs), self._augment(batch.next_obs)
        positive = self._augment(batch.obs) if use_aux else None
        target, _ = self._td_target(batch, next_view)

        features = self.critic.encoder.forward_head(self._conv(self.critic.encoder, anchor))
        q1, q2 = self.critic.q_values(features, batch.action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"critic_loss": critic_loss.detach(), "q": q1.detach().mean()}

        if with_actor:
            with torch.no_grad():  # the official actor update re-encodes obs with the updated convs
                conv = self._conv(self.critic.encoder, anchor)
            metrics.update(self._update_actor_and_alpha(conv))
        if with_target:
            self._update_target()
        if use_aux:  # the official update_cpc, after the target EMA
            with torch.no_grad():
                target_encoder = self.critic_target.encoder
                key = target_encoder.forward_head(self._conv(target_encoder, positive))
            query = self.critic.encoder.forward_head(self._conv(self.critic.encoder, anchor))
            aux_loss = self._aux_loss(query, key)
            encoder_optimizer, aux_optimizer = self.optimizers["encoder"], self.optimizers["aux"]
            encoder_optimizer.zero_grad(set_to_none=True)
            aux_optimizer.zero_grad(set_to_none=True)
            aux_loss.backward()
            encoder_optimizer.step()
            aux_optimizer.step()
            metrics["aux_loss"] = aux_loss.detach()
        return metrics

    def _update_actor_and_alpha(self, conv: torch.Tensor) -> dict[str, torch.Tensor]:
        """Actor and temperature steps on detached conv features of the anchor crop."""
        actor_features = self.actor.encoder.forward_head(conv)
        with torch.no_grad():
            critic_features = self.critic.encoder.forward_head(conv)
        _, pi, log_pi, _ = self.actor(actor_features)
        self.critic.q_heads.requires_grad_(False)  # gradients to the action only, not to Q's weights
        try:
            q = torch.min(*self.critic.q_values(critic_features, pi))
        finally:
            self.critic.q_heads.requires_grad_(True)
        actor_loss = (self.alpha.detach() * log_pi - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        alpha_loss = (self.alpha * (-log_pi.detach() - self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        return {"actor_loss": actor_loss.detach(), "alpha": self.alpha.detach(),
                "entropy": -log_pi.detach().mean()}

    # -- checkpointing ---------------------------------------------------------------------

    def train(self, mode: bool = True) -> None:
        for module in (self.critic, self.actor, self.aux_head):
            if module is not None:
                module.train(mode)

    def state_dict(self) -> dict:
        """Networks, temperature, aux head / queue, optimisers and the update counter."""
        state = {"critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                 "actor": self.actor.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                 "updates": self.updates,
                 "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()}}
        if self.aux_head is not None:
            state["aux_head"] = self.aux_head.state_dict()
        if self.key_queue is not None:
            state["key_queue"] = self.key_queue.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (same agent settings; ``cuda_graphs`` and the
        device may differ). Recorded CUDA graphs are dropped: the optimisers' restored state
        lives in new tensors."""
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor.load_state_dict(state["actor"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.updates = int(state["updates"])
        for name, opt in self.optimizers.items():
            load_optimizer_state(opt, state["optimizers"][name])  # keeps this run's capturable / fused
        if self.aux_head is not None:
            self.aux_head.load_state_dict(state["aux_head"])
        if self.key_queue is not None:
            self.key_queue.load_state_dict(state["key_queue"])
        if self.graphs is not None:
            self.graphs.reset()
