"""SAC / CURL updates replayed from CUDA graphs follow the eager updates, step for step.

With the actor's sampling noise set to zero and crops the size of the frames, an update has no
random draw, so the graphed agent and an eager copy must agree to float rounding over updates
of both variants (with and without the actor and target steps), in each optimiser sequence.
The recording tests need a GPU (skipped elsewhere); the refusals run anywhere.
"""

from __future__ import annotations

import copy

import pytest
import torch

from core_ssl.cuda_graphs import StepGraphs
from rl_curl import train
from rl_curl.agent import AgentSettings, SacAgent
from rl_curl.replay import Batch
from tests.core_ssl.test_cuda_graphs import _record_for_replay_by_calling
from tests.rl_curl.test_agent import SMALL
from tests.devices import needs_cuda



def test_graphs_are_refused_on_a_cpu():
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device, not cpu"):
        SacAgent((9, 84, 84), 2, torch.device("cpu"), cuda_graphs=True, **SMALL)


def test_graphs_are_refused_with_the_key_queue_of_infonce():
    with pytest.raises(ValueError, match="key queue advances on the host"):
        AgentSettings(aux="infonce", cuda_graphs=True).check()


def test_the_train_command_refuses_graphs_without_cuda_before_writing(tmp_path, monkeypatch, capsys):
    from core_ssl.cli import run_command

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, ["--env", "cartpole-swingup", "--device", "cpu", "--cuda-graphs",
                                 "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("error: --cuda-graphs: CUDA graphs need a CUDA device, not cpu")
    assert list(tmp_path.iterdir()) == []



@pytest.mark.parametrize("optimizers", ["joint", "official"])
def test_the_agent_replays_the_variant_of_each_update_on_a_cpu_stand_in(optimizers, monkeypatch):
    """The agent's side of the graphs, anywhere: updates alternate between the two variants by
    the update counter, each variant is recorded once, and restoring a checkpoint drops them
    (the stand-in graph replays by running the recorded call again)."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    torch.manual_seed(0)
    settings = dict(SMALL, optimizers=optimizers, crop_size=84)
    eager = SacAgent((9, 84, 84), 2, torch.device("cpu"), **settings)
    graphed = SacAgent((9, 84, 84), 2, torch.device("cpu"), **settings)
    graphed.load_state_dict(eager.state_dict())
    graphed.graphs = StepGraphs(graphed._step, graphed._trained_tensors, record=_record_for_replay_by_calling,
                                run_eagerly=lambda call: call())
    for batch in _batches(8, size=4, device="cpu"):
        expected, got = eager.update(batch), graphed.update(batch)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], msg=name)
    assert sorted(graphed.graphs.recorded) == [(False, False), (True, True)]
    _assert_same_state(graphed, eager)
    graphed.load_state_dict(eager.state_dict())
    assert graphed.graphs.recorded == []


def _batches(count: int, size: int = 32, seed: int = 0, device: str = "cuda"):
    """``count`` random transitions batches of 84x84 frame stacks (drawn on the CPU, then moved)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        frames = lambda: torch.randint(0, 256, (size, 9, 84, 84), dtype=torch.uint8, generator=g)  # noqa: E731
        yield Batch(*(t.to(device) for t in (frames(), torch.rand(size, 2, generator=g) * 2 - 1,
                                             torch.rand(size, 1, generator=g), frames(), torch.ones(size, 1))))


def _assert_same_state(a: SacAgent, b: SacAgent) -> None:
    for module_a, module_b in ((a.critic, b.critic), (a.actor, b.actor), (a.critic_target, b.critic_target)):
        for (name, p), q in zip(module_a.state_dict().items(), module_b.state_dict().values()):
            torch.testing.assert_close(p.float(), q.float(), rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(a.log_alpha, b.log_alpha, rtol=1e-5, atol=1e-6)


@needs_cuda
@pytest.mark.parametrize("optimizers", ["joint", "official"])
@pytest.mark.parametrize("aux", ["curl", "byol", "none"])
def test_replayed_updates_follow_the_eager_updates(aux, optimizers, monkeypatch):
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # the actor's noise: no random draw left
    torch.manual_seed(0)
    settings = dict(SMALL, aux=aux, optimizers=optimizers, crop_size=84, aug_backend="native")
    eager = SacAgent((9, 84, 84), 2, torch.device("cuda"), **settings)
    graphed = SacAgent((9, 84, 84), 2, torch.device("cuda"), cuda_graphs=True, **settings)
    for source, target in ((eager.critic, graphed.critic), (eager.actor, graphed.actor),
                           (eager.critic_target, graphed.critic_target)):
        target.load_state_dict(source.state_dict())
    if eager.aux_head is not None:
        graphed.aux_head.load_state_dict(eager.aux_head.state_dict())
    for batch in _batches(10):  # per variant: 2 eager warm-up calls, the recording, then replays
        expected, got = eager.update(batch), graphed.update(batch)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
    assert sorted(graphed.graphs.recorded) == [(False, False), (True, True)]
    _assert_same_state(graphed, eager)


@needs_cuda
def test_restoring_a_checkpoint_drops_the_graphs_and_goes_on(monkeypatch):
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    torch.manual_seed(0)
    graphed = SacAgent((9, 84, 84), 2, torch.device("cuda"), cuda_graphs=True, crop_size=84, **SMALL)
    batches = list(_batches(12))
    for batch in batches[:6]:
        graphed.update(batch)
    saved = copy.deepcopy(graphed.state_dict())
    eager = SacAgent((9, 84, 84), 2, torch.device("cuda"), crop_size=84, **SMALL)
    eager.load_state_dict(saved)
    graphed.load_state_dict(saved)
    assert graphed.graphs.recorded == []
    for batch in batches[6:]:
        torch.testing.assert_close(graphed.update(batch)["critic_loss"], eager.update(batch)["critic_loss"],
                                   rtol=1e-4, atol=1e-5)
    _assert_same_state(graphed, eager)


@needs_cuda
def test_a_graphed_agent_resumes_from_an_eager_agents_checkpoint(monkeypatch):
    """The restored optimisers keep ``capturable=True`` (the eager checkpoint saved False) and
    their step counters move to the GPU, so the updates can be recorded."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    torch.manual_seed(0)
    eager = SacAgent((9, 84, 84), 2, torch.device("cuda"), crop_size=84, **SMALL)
    batches = list(_batches(12))
    for batch in batches[:4]:
        eager.update(batch)
    graphed = SacAgent((9, 84, 84), 2, torch.device("cuda"), cuda_graphs=True, crop_size=84, **SMALL)
    graphed.load_state_dict(copy.deepcopy(eager.state_dict()))
    assert all(group["capturable"] for opt in graphed.optimizers.values() for group in opt.param_groups)
    for batch in batches[4:]:
        torch.testing.assert_close(graphed.update(batch)["critic_loss"], eager.update(batch)["critic_loss"],
                                   rtol=1e-4, atol=1e-5)
    assert sorted(graphed.graphs.recorded) == [(False, False), (True, True)]
    _assert_same_state(graphed, eager)
