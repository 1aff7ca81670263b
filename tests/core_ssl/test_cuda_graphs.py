"""core_ssl.cuda_graphs: a replayed step computes what the eager step computes.

The bookkeeping (warm-up calls per variant, one recording each, inputs copied in, outputs
copied out, reset) is tested anywhere with a stand-in graph whose replay runs the recorded call
again; the recordings themselves need a GPU (skipped elsewhere).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core_ssl.cuda_graphs import StepGraphs, capturable, graph_support
from tests.devices import needs_cuda



def test_warmup_must_be_positive():
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        StepGraphs(lambda inputs: {}, lambda: [], warmup=0)


def test_graphs_are_refused_off_cuda():
    assert "need a CUDA device, not cpu" in graph_support(torch.device("cpu"))


def test_capturable_adds_the_flag_only_when_enabled():
    assert capturable({"lr": 1.0}, True) == {"lr": 1.0, "capturable": True}
    assert capturable({"lr": 1.0}, False) == {"lr": 1.0}


class _Regression:
    """A linear model and its Adam; ``step`` adds an L2 term when ``penalised`` (a second variant)."""

    def __init__(self, model: nn.Module, graphs: bool) -> None:
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, **capturable({}, graphs))

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], penalised: bool) -> dict[str, torch.Tensor]:
        x, y = batch
        loss = (self.model(x) - y).pow(2).mean()
        if penalised:
            loss = loss + 0.1 * self.model.weight.pow(2).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach()}


class _ReplayByCalling:
    """Stands in for a CUDA graph on a CPU: a replay runs the recorded call again and writes its
    outputs into the dict the recording returned, as a graph overwrites its static outputs."""

    def __init__(self, call) -> None:
        self.call, self.outputs, self.replays = call, {}, 0

    def replay(self) -> None:
        self.replays += 1
        self.outputs.update(self.call())


def _record_for_replay_by_calling(call):
    graph = _ReplayByCalling(call)
    return graph, graph.outputs


def _graphs_on_the_cpu(step, parameters, warmup=2):
    eager_calls = []

    def run_eagerly(call):
        eager_calls.append(1)
        return call()

    graphs = StepGraphs(step, parameters, warmup=warmup, record=_record_for_replay_by_calling,
                        run_eagerly=run_eagerly)
    return graphs, eager_calls


def test_each_variant_runs_eagerly_warmup_times_then_is_recorded_once_and_replayed():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    eager = _Regression(copy.deepcopy(model), graphs=False)
    graphed = _Regression(model, graphs=False)
    graphs, eager_calls = _graphs_on_the_cpu(graphed.step, lambda: graphed.model.parameters())
    generator = torch.Generator().manual_seed(1)
    kept = []
    for call in range(10):
        batch = (torch.randn(32, 8, generator=generator), torch.randn(32, 1, generator=generator))
        penalised = call % 2 == 0
        expected = eager.step(batch, penalised)["loss"]
        got = graphs(batch, penalised)["loss"]
        torch.testing.assert_close(got, expected)  # the replay read this call's batch, copied in
        kept.append(got)
    assert len(eager_calls) == 4 and sorted(graphs.recorded) == [(False,), (True,)]
    assert graphs._graphs[(True,)].graph.replays == 3  # calls 4, 6, 8 of that variant
    assert len({id(t) for t in kept}) == len(kept)  # outputs are copies, not the graph's buffers
    for a, b in zip(graphed.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b)


def test_reset_forgets_the_graphs_and_warms_up_again():
    model = nn.Linear(8, 1)
    graphed = _Regression(model, graphs=False)
    graphs, eager_calls = _graphs_on_the_cpu(graphed.step, lambda: model.parameters(), warmup=1)
    batch = (torch.randn(4, 8), torch.randn(4, 1))
    graphs(batch, False)
    graphs(batch, False)
    assert graphs.recorded == [(False,)] and len(eager_calls) == 1
    graphs.reset()
    assert graphs.recorded == []
    graphs(batch, False)
    assert len(eager_calls) == 2  # a warm-up call again before the next recording


def test_gradients_are_reset_before_a_recording():
    model = nn.Linear(8, 1)
    graphed = _Regression(model, graphs=False)
    seen = []

    def record(call):
        seen.append([p.grad for p in model.parameters()])
        return _record_for_replay_by_calling(call)

    graphs = StepGraphs(graphed.step, lambda: model.parameters(), warmup=1, record=record,
                        run_eagerly=lambda call: call())
    batch = (torch.randn(4, 8), torch.randn(4, 1))
    graphs(batch, False)  # eager: leaves gradients behind
    assert all(p.grad is not None for p in model.parameters())
    graphs(batch, False)  # recorded
    assert seen == [[None, None]]


@needs_cuda
def test_replayed_steps_follow_the_eager_steps_for_every_variant():
    torch.manual_seed(0)
    model = nn.Linear(8, 1).cuda()
    eager = _Regression(copy.deepcopy(model), graphs=False)
    graphed = _Regression(model, graphs=True)
    graphs = StepGraphs(graphed.step, lambda: graphed.model.parameters(), warmup=2)
    generator = torch.Generator(device="cuda").manual_seed(1)
    for call in range(10):
        batch = (torch.randn(32, 8, device="cuda", generator=generator),
                 torch.randn(32, 1, device="cuda", generator=generator))
        penalised = call % 2 == 0
        expected = eager.step(batch, penalised)["loss"]
        got = graphs(batch, penalised)["loss"]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert sorted(graphs.recorded) == [(False,), (True,)]  # each variant recorded once, after 2 eager calls
    for a, b in zip(graphed.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@needs_cuda
def test_a_batch_of_another_shape_is_refused_once_recorded():
    model = nn.Linear(8, 1).cuda()
    graphed = _Regression(model, graphs=True)
    graphs = StepGraphs(graphed.step, lambda: model.parameters(), warmup=1)
    batch = (torch.randn(4, 8, device="cuda"), torch.randn(4, 1, device="cuda"))
    graphs(batch, False)
    graphs(batch, False)  # recorded
    graphs(batch, True)
    with pytest.raises(ValueError, match="keep the batch size fixed"):
        graphs((torch.randn(5, 8, device="cuda"), torch.randn(5, 1, device="cuda")), True)
