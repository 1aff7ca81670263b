"""core_ssl.cuda_graphs: a replayed step computes what the eager step computes.

The recording tests need a GPU (they are skipped elsewhere); the argument checks run anywhere.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core_ssl.cuda_graphs import StepGraphs, capturable, graph_support

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


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
