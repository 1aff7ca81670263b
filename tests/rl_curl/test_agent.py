"""The SAC / CURL agent: one optimiser step per parameter, the contrastive loss learns, variants run."""

from collections import Counter

import pytest
import torch

from rl_curl.agent import AgentSettings, SacAgent
from rl_curl.replay import Batch

SMALL = dict(hidden_dim=32, feature_dim=16, num_layers=2, num_filters=8)


def _pixel_batch(size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (size, 9, 100, 100), dtype=torch.uint8, generator=g)
    next_obs = torch.randint(0, 256, (size, 9, 100, 100), dtype=torch.uint8, generator=g)
    return Batch(obs, torch.rand(size, 2, generator=g) * 2 - 1, torch.rand(size, 1, generator=g), next_obs,
                 torch.ones(size, 1))


def _count_optimizer_steps(agent):
    """Count, per parameter, the optimiser steps that update it (its grad is set at step time)."""
    counts: Counter = Counter()

    def hook(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    counts[id(p)] += 1

    for optimizer in agent.optimizers.values():
        optimizer.register_step_pre_hook(hook)
    return counts


def _all_parameters(agent):
    params = {}
    for module in (agent.critic, agent.actor, agent.aux_head):
        if module is not None:
            params.update({id(p): name for name, p in module.named_parameters()})
    params[id(agent.log_alpha)] = "log_alpha"
    return params


@pytest.mark.parametrize("aux", ["curl", "infonce", "byol"])
def test_every_parameter_gets_exactly_one_optimizer_step(aux):
    torch.manual_seed(0)
    agent = SacAgent((9, 100, 100), 2, torch.device("cpu"), aux=aux, **SMALL)
    params = _all_parameters(agent)
    # the conv weights are tied: the actor's are the critic's, held by the critic optimiser only
    assert agent.actor.encoder.convs[0].weight is agent.critic.encoder.convs[0].weight
    owners = Counter(id(p) for opt in agent.optimizers.values() for g in opt.param_groups for p in g["params"])
    assert set(owners) == set(params) and set(owners.values()) == {1}

    counts = _count_optimizer_steps(agent)
    before = {name: p.detach().clone() for name, p in agent.critic.named_parameters()}
    agent.update(_pixel_batch())  # update 0: critic + aux, actor, alpha
    assert {params[i]: counts[i] for i in params} == {name: 1 for name in params.values()}
    assert all(not torch.equal(before[n], p) for n, p in agent.critic.named_parameters())

    counts.clear()
    agent.update(_pixel_batch(seed=1))  # update 1: critic + aux only (actor every 2 updates)
    actor_only = {id(p) for p in agent.actor.parameters()} - {id(p) for p in agent.critic.parameters()}
    assert all(counts[i] == 1 for i in params if i not in actor_only and params[i] != "log_alpha")
    assert all(counts[i] == 0 for i in actor_only) and counts[id(agent.log_alpha)] == 0


def test_contrastive_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    agent = SacAgent((9, 100, 100), 2, torch.device("cpu"), aux="curl", **SMALL)
    batch = _pixel_batch(size=32)
    aux_losses = [agent.update(batch)["aux_loss"].item() for _ in range(40)]
    first, last = sum(aux_losses[:5]) / 5, sum(aux_losses[-5:]) / 5
    assert last < 0.7 * first, aux_losses


@pytest.mark.parametrize("agent_name,aux,aug", [("pixel-sac", "curl", "crop"), ("curl", "none", "shift"),
                                                ("curl", "curl", "shift")])
def test_pixel_variants_update_and_act(agent_name, aux, aug):
    agent = SacAgent((9, 100, 100), 2, torch.device("cpu"), agent=agent_name, aux=aux, aug=aug, **SMALL)
    metrics = agent.update(_pixel_batch())
    assert ("aux_loss" in metrics) == (agent_name == "curl" and aux != "none")
    assert all(torch.isfinite(v) for v in metrics.values())
    action = agent.act(_pixel_batch(1).obs[0].numpy(), deterministic=True)
    assert action.shape == (2,) and abs(action).max() <= 1


def test_state_sac_and_checkpoint_round_trip():
    agent = SacAgent((5,), 2, torch.device("cpu"), agent="state-sac", hidden_dim=32)
    batch = Batch(torch.randn(8, 5), torch.rand(8, 2), torch.rand(8, 1), torch.randn(8, 5), torch.ones(8, 1))
    for _ in range(3):
        agent.update(batch)
    clone = SacAgent((5,), 2, torch.device("cpu"), AgentSettings(agent="state-sac", hidden_dim=32))  # the same agent
    assert clone.settings == agent.settings and clone.settings.hidden_dim == 32
    clone.load_state_dict(agent.state_dict())
    obs = torch.randn(5).numpy()
    assert (agent.act(obs, deterministic=True) == clone.act(obs, deterministic=True)).all()
    assert clone.updates == 3


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown aux"):
        SacAgent((9, 100, 100), 2, torch.device("cpu"), aux="simclr")
    with pytest.raises(ValueError, match="pixel"):
        SacAgent((5,), 2, torch.device("cpu"), agent="curl")


def _encoder_changes(agent, batch):
    """How many times one update changes the critic's encoder: a snapshot after every optimiser
    step that touches it, compared with the one before."""
    encoder = dict(agent.critic.encoder.named_parameters())
    encoder_ids = {id(p) for p in encoder.values()}
    snapshots = [{n: p.detach().clone() for n, p in encoder.items()}]

    def hook(optimizer, args, kwargs):
        if any(id(p) in encoder_ids for g in optimizer.param_groups for p in g["params"] if p.grad is not None):
            snapshots.append({n: p.detach().clone() for n, p in encoder.items()})

    handles = [opt.register_step_post_hook(hook) for opt in agent.optimizers.values()]
    agent.update(batch)
    for handle in handles:
        handle.remove()
    return sum(any(not torch.equal(a[n], b[n]) for n in a) for a, b in zip(snapshots, snapshots[1:]))


@pytest.mark.parametrize("mode, expected", [("joint", 1), ("official", 3)])
def test_official_optimizers_step_the_encoder_three_times(mode, expected):
    torch.manual_seed(0)
    agent = SacAgent((9, 100, 100), 2, torch.device("cpu"), optimizers=mode, **SMALL)
    assert _encoder_changes(agent, _pixel_batch()) == expected


def test_official_sequence_steps_each_parameter_as_the_official_code():
    """critic Adam: critic (encoder included); encoder Adam: encoder; aux Adam: encoder and W."""
    torch.manual_seed(0)
    agent = SacAgent((9, 100, 100), 2, torch.device("cpu"), optimizers="official", **SMALL)
    counts = _count_optimizer_steps(agent)
    agent.update(_pixel_batch())
    encoder = {id(p) for p in agent.critic.encoder.parameters()}
    q_heads = {id(p) for p in agent.critic.q_heads.parameters()}
    assert all(counts[i] == 3 for i in encoder)
    assert all(counts[i] == 1 for i in q_heads)
    assert counts[id(agent.aux_head.weight)] == 1
    assert id(agent.aux_head.weight) not in {id(p) for p in agent.critic_optimizer.param_groups[0]["params"]}
    # the state dict carries the two extra optimisers and restores them
    state = agent.state_dict()
    assert set(state["optimizers"]) == {"critic", "actor", "alpha", "encoder", "aux"}
    clone = SacAgent((9, 100, 100), 2, torch.device("cpu"), optimizers="official", **SMALL)
    clone.load_state_dict(state)
    assert clone.optimizers["aux"].state_dict()["state"].keys() == agent.optimizers["aux"].state_dict()["state"].keys()


def test_official_mode_without_aux_loss_is_critic_then_actor():
    torch.manual_seed(0)
    agent = SacAgent((9, 100, 100), 2, torch.device("cpu"), agent="pixel-sac", optimizers="official", **SMALL)
    assert set(agent.optimizers) == {"critic", "actor", "alpha"}
    assert _encoder_changes(agent, _pixel_batch()) == 1


def test_unknown_optimizer_mode_is_named():
    with pytest.raises(ValueError, match="optimizers"):
        SacAgent((9, 100, 100), 2, torch.device("cpu"), optimizers="fused", **SMALL)


@pytest.mark.parametrize("optimizers", ["joint", "official"])
def test_conv_micro_batches_leave_the_update_unchanged(optimizers):
    """The micro-batched conv passes are a speed setting: from the same state, one update gives
    the same losses and the same parameters as whole-batch passes, to float rounding."""
    agents = []
    for micro_batch in (None, 8):
        torch.manual_seed(0)
        agents.append(SacAgent((9, 100, 100), 2, torch.device("cpu"), optimizers=optimizers,
                               conv_micro_batch=micro_batch, **SMALL))
    assert agents[1].critic.encoder.micro_batch == agents[1].critic_target.encoder.micro_batch == 8
    metrics = []
    for agent in agents:
        torch.manual_seed(1)  # the same crops
        metrics.append(agent.update(_pixel_batch(size=20)))
    for name in metrics[0]:
        torch.testing.assert_close(metrics[1][name], metrics[0][name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    # Adam's step lr * m / (sqrt(v) + eps) is about lr * sign(g) on the first update, so a
    # rounding-size difference in a near-zero gradient moves a parameter by a visible fraction of
    # lr (3e-6 seen at lr 1e-3 on another CPU): parameters agree to 1% of lr, not to 1e-6.
    step_tolerance = 1e-2 * agents[0].critic_optimizer.param_groups[0]["lr"]
    for (name, a), b in zip(agents[0].critic.named_parameters(), agents[1].critic.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=step_tolerance, msg=lambda m: f"{name}: {m}")


def test_bf16_on_a_cpu_runs_channels_last_and_updates_as_the_nchw_layout_does():
    """With bf16 the CPU agent keeps its conv stacks channels-last (oneDNN's bf16 kernels want NHWC:
    1.3x faster updates on an AMX Xeon, docs/benchmarks.md); a layout changes no maths, so one update
    gives the losses of the same agent kept NCHW, to bf16 rounding. Without bf16 the layout stays NCHW."""
    assert not SacAgent((9, 100, 100), 2, torch.device("cpu"), **SMALL).channels_last
    agents = []
    for keep_nchw in (False, True):
        torch.manual_seed(0)
        agent = SacAgent((9, 100, 100), 2, torch.device("cpu"), bf16=True, **SMALL)
        assert agent.channels_last
        conv = agent.critic.encoder.convs[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        if keep_nchw:
            agent.channels_last = False
            for module in (agent.critic, agent.critic_target, agent.actor):
                module.to(memory_format=torch.contiguous_format)
        agents.append(agent)
    metrics = []
    for agent in agents:
        torch.manual_seed(1)
        metrics.append(agent.update(_pixel_batch()))
    for name in ("critic_loss", "aux_loss", "actor_loss"):
        assert torch.isfinite(metrics[0][name])
        assert metrics[0][name].item() == pytest.approx(metrics[1][name].item(), rel=0.05, abs=1e-3), name
