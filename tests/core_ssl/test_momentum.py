"""EMA updates, momentum schedules, the key queue and the memory bank."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core_ssl.momentum import KeyQueue, MemoryBank, MomentumSchedule, ema_update_, momentum_copy


def small_net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_ema_update_matches_formula_for_parameters_and_buffers():
    online = small_net()
    online.train()(torch.randn(8, 3))  # move the BN running statistics
    target = momentum_copy(online)
    for p in online.parameters():
        p.data.add_(torch.randn_like(p))
    online(torch.randn(8, 3))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    m = 0.9
    ema_update_(target, online, m)
    for name, value in target.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, m * before[name] + (1 - m) * online.state_dict()[name])
        else:
            assert torch.equal(value, online.state_dict()[name])


def test_ema_extremes_and_frozen_target():
    online = small_net()
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    for p in online.parameters():
        p.data.normal_()
    frozen = [p.clone() for p in target.parameters()]
    ema_update_(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), frozen))
    ema_update_(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        ema_update_(target, online, 1.5)
    with pytest.raises(ValueError, match="momentum_copy"):
        ema_update_(nn.Linear(3, 4), online, 0.5)


def test_momentum_schedules():
    assert MomentumSchedule(0.999)(12345) == 0.999
    cosine = MomentumSchedule(0.996, total_steps=100, kind="cosine")
    assert cosine(0) == pytest.approx(0.996)
    assert cosine(50) == pytest.approx(0.998)
    assert cosine(100) == pytest.approx(1.0)
    assert cosine(500) == pytest.approx(1.0)
    values = [cosine(k) for k in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    expected = 1 - (1 - 0.996) * (math.cos(math.pi * 0.3) + 1) / 2
    assert cosine(30) == pytest.approx(expected)
    with pytest.raises(ValueError, match="total_steps"):
        MomentumSchedule(0.99, kind="cosine")


def test_queue_is_fifo_and_wraps_around():
    queue = KeyQueue(dim=4, size=10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(10))
    batches = [torch.randn(4, 4) for _ in range(3)]
    for b in batches:
        queue.enqueue(b)
    # 12 keys into 10 slots: key number j lives in slot j % 10, so keys 0 and 1 were overwritten
    expected = torch.cat(batches)
    for j in range(2, 12):
        torch.testing.assert_close(queue.keys[j % 10], F.normalize(expected[j], dim=0))
    assert int(queue.pointer) == 2
    state = queue.state_dict()
    assert set(state) == {"keys", "pointer"}
    with pytest.raises(ValueError, match=r"keys must be \(N, 4\)"):
        queue.enqueue(torch.randn(3, 5))


def test_memory_bank_momentum_update_and_sampling():
    bank = MemoryBank(num_items=20, dim=3, momentum=0.5, generator=torch.Generator().manual_seed(0))
    index = torch.tensor([3, 7])
    old = bank[index].clone()
    features = torch.randn(2, 3)
    bank.update(index, features)
    expected = F.normalize(0.5 * old + 0.5 * F.normalize(features, dim=1), dim=1)
    torch.testing.assert_close(bank[index], expected)
    untouched = torch.tensor([0, 1, 2])
    assert torch.allclose(bank[untouched].norm(dim=1), torch.ones(3))
    negatives = bank.sample(50, generator=torch.Generator().manual_seed(1))
    again = bank.sample(50, generator=torch.Generator().manual_seed(1))
    assert negatives.shape == (50, 3) and torch.equal(negatives, again)
    with pytest.raises(ValueError, match="features must be"):
        bank.update(index, torch.randn(3, 3))
