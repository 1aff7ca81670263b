import math

import pytest
import torch

from core_ssl.schedules import constant_then_linear_decay, warmup_cosine, warmup_cosine_factor


def lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def optimizer():
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)


def test_warmup_cosine():
    values = lrs(warmup_cosine(optimizer(), total_steps=110, warmup=10), 111)
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0)
    assert values[60] == pytest.approx(0.5)
    assert values[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[35] == pytest.approx(0.5 * (1 + math.cos(math.pi * 25 / 100)))
    with pytest.raises(ValueError, match="warmup < total_steps"):
        warmup_cosine(optimizer(), total_steps=10, warmup=10)


def test_warmup_cosine_factor_is_the_schedulers_multiplier():
    values = lrs(warmup_cosine(optimizer(), total_steps=50, warmup=5, final_fraction=0.1), 60)
    assert values == pytest.approx([warmup_cosine_factor(k, 50, 5, 0.1) for k in range(60)])
    assert warmup_cosine_factor(1000, 50, 5, 0.1) == pytest.approx(0.1)


def test_constant_then_linear_decay_matches_cut():
    values = lrs(constant_then_linear_decay(optimizer(), constant=4, decay=4), 10)
    assert values == pytest.approx([1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0])
