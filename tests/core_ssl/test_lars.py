"""LARS restated from its formula (SimCLR's classic-momentum form), its invariants, and a fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core_ssl.lars import LARS, lars_param_groups
from tests.devices import needs_cuda


def reference_lars(w, grads, lrs, momentum, weight_decay, eta, adapt, nesterov=False):
    """The update written out step by step in float64, one tensor."""
    w, v = w.double().clone(), torch.zeros_like(w, dtype=torch.float64)
    for g, lr in zip(grads, lrs):
        g = g.double() + weight_decay * w
        trust = 1.0
        if adapt and w.norm() > 0 and g.norm() > 0:
            trust = eta * w.norm() / g.norm()
        v = momentum * v + lr * trust * g
        w = w - (momentum * v + lr * trust * g if nesterov else v)
    return w


def run_lars(w0, grads, lrs, **options):
    w = nn.Parameter(w0.clone())
    opt = LARS([w], lr=lrs[0], **options)
    for g, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        w.grad = g.clone()
        opt.step()
    return w.detach()


@pytest.mark.parametrize("adapt", [True, False])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_steps_match_the_formula_with_a_changing_learning_rate(adapt, nesterov, weight_decay):
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    grads = [torch.randn(5, 7, generator=gen, dtype=torch.float64) * s for s in (1.0, 30.0, 0.01, 2.0)]
    lrs = [2.0, 1.5, 0.5, 0.1]  # the schedule acts inside the momentum buffer
    options = dict(momentum=0.9, weight_decay=weight_decay, trust_coefficient=1e-3, adapt=adapt, nesterov=nesterov)
    ours = run_lars(w0, grads, lrs, **options)
    expected = reference_lars(w0, grads, lrs, 0.9, weight_decay, 1e-3, adapt, nesterov)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


def test_adapted_step_length_is_lr_eta_norm_whatever_the_gradient_scale():
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(64, 32, generator=gen)
    for scale in (1e-6, 1.0, 1e6):
        g = torch.randn(64, 32, generator=gen) * scale
        moved = run_lars(w0, [g], [0.5], momentum=0.0, trust_coefficient=1e-3) - w0
        assert moved.norm().item() == pytest.approx(0.5 * 1e-3 * w0.norm().item(), rel=1e-5)
        # and it points down the gradient
        assert torch.nn.functional.cosine_similarity(-moved.flatten(), g.flatten(), dim=0) > 0.9999


def test_zero_weights_or_zero_gradient_fall_back_to_trust_one():
    zero_w = run_lars(torch.zeros(3, 3), [torch.ones(3, 3)], [0.1], momentum=0.0)
    torch.testing.assert_close(zero_w, torch.full((3, 3), -0.1))  # plain SGD step: trust 1
    w0 = torch.randn(3, 3)
    unchanged = run_lars(w0, [torch.zeros(3, 3)], [0.1], momentum=0.0)
    torch.testing.assert_close(unchanged, w0)
    assert torch.isfinite(unchanged).all()


def test_step_leaves_the_gradient_untouched_and_skips_parameters_without_one():
    a, b = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4))
    b_before = b.detach().clone()
    a.grad = torch.randn(4, 4)
    grad_before = a.grad.clone()
    LARS([a, b], lr=1.0, weight_decay=0.1).step()
    torch.testing.assert_close(a.grad, grad_before)
    torch.testing.assert_close(b.detach(), b_before)


def test_param_groups_leave_biases_and_norms_out_of_decay_and_adaptation():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    weights, others = lars_param_groups(model.parameters(), weight_decay=1e-4)
    assert {id(p) for p in weights["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert weights["weight_decay"] == 1e-4 and weights["adapt"] is True
    assert len(others["params"]) == 4 and others["weight_decay"] == 0.0 and others["adapt"] is False


def test_resumed_from_its_state_dict_it_continues_the_same_trajectory():
    gen = torch.Generator().manual_seed(2)
    w0 = torch.randn(6, 6, generator=gen)
    grads = [torch.randn(6, 6, generator=gen) for _ in range(6)]
    straight = run_lars(w0, grads, [1.0] * 6, weight_decay=1e-4)
    w = nn.Parameter(w0.clone())
    opt = LARS([w], lr=1.0, weight_decay=1e-4)
    for g in grads[:3]:
        w.grad = g.clone()
        opt.step()
    saved = opt.state_dict()
    w2 = nn.Parameter(w.detach().clone())
    resumed = LARS([w2], lr=1.0, weight_decay=1e-4)
    resumed.load_state_dict(saved)
    for g in grads[3:]:
        w2.grad = g.clone()
        resumed.step()
    torch.testing.assert_close(w2.detach(), straight)


def test_bad_settings_are_refused_with_the_setting_named():
    p = [nn.Parameter(torch.ones(2, 2))]
    for kwargs, name in [(dict(lr=-1.0), "lr"), (dict(lr=0.1, momentum=1.0), "momentum"),
                         (dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
                         (dict(lr=0.1, trust_coefficient=0.0), "trust_coefficient")]:
        with pytest.raises(ValueError, match=name):
            LARS(p, **kwargs)


def test_a_small_network_fits_a_regression_where_plain_sgd_at_that_rate_diverges():
    """At lr 1 with momentum 0.9, SGD's steps blow the two-layer net up; LARS's trust ratio
    bounds each weight matrix's step and the fit goes on (biases take plain SGD steps in both)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(512, 16, generator=gen)
    y = torch.sin(x[:, :1] * 2) + x[:, 1:2] ** 2

    def fit(make_optimizer):
        torch.manual_seed(3)
        net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
        opt, losses = make_optimizer(net), []
        for _ in range(300):
            loss = nn.functional.mse_loss(net(x), y)
            losses.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
        return losses

    lars = fit(lambda net: LARS(lars_param_groups(net.parameters(), 1e-4), lr=1.0, trust_coefficient=1e-2))
    sgd = fit(lambda net: torch.optim.SGD(net.parameters(), lr=1.0, momentum=0.9))
    assert lars[-1] < 0.05 * lars[0]
    assert not torch.isfinite(torch.tensor(sgd[-1])) or sgd[-1] > lars[0]


@needs_cuda
def test_on_cuda_the_steps_match_the_cpu_ones():
    gen = torch.Generator().manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    grads = [[torch.randn(p.shape, generator=gen) for p in model.parameters()] for _ in range(3)]
    finals = []
    for device in ("cpu", "cuda"):
        params = [nn.Parameter(p.detach().clone().to(device)) for p in model.parameters()]
        opt = LARS(lars_param_groups(params, 1e-4), lr=2.0)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.to(device)
            opt.step()
        finals.append([p.detach().cpu() for p in params])
    for cpu, cuda in zip(*finals):
        torch.testing.assert_close(cuda, cpu, rtol=1e-5, atol=1e-6)
