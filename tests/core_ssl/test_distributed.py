"""The all-gather with gradient: 2 gloo processes of batch B equal one process of batch 2B."""

import torch
import torch.distributed as dist

from core_ssl import distributed, losses
from tests.spawn import run_workers

WORLD = 2
BATCH = 4  # per process


def _data():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(WORLD * BATCH, 6, generator=g)
    x2 = torch.randn(WORLD * BATCH, 6, generator=g)
    labels = torch.randint(3, (WORLD * BATCH,), generator=g)
    return x1, x2, labels


def _model():
    torch.manual_seed(1)
    return torch.nn.Linear(6, 5)


def _loss(model, x1, x2, labels, kind, gather):
    z1, z2 = model(x1), model(x2)
    if kind == "nt_xent":
        return losses.nt_xent(z1, z2, 0.5, gather_distributed=gather)
    return losses.supcon(torch.stack([z1, z2], 1), labels, 0.1, gather_distributed=gather)


def _worker(rank):
    x1, x2, labels = _data()
    for kind in ("nt_xent", "supcon"):
        reference_model = _model()
        reference = _loss(reference_model, x1, x2, labels, kind, gather=False)
        reference.backward()

        model = _model()
        mine = slice(rank * BATCH, (rank + 1) * BATCH)
        loss = _loss(model, x1[mine], x2[mine], labels[mine], kind, gather=True)
        loss.backward()
        for p in model.parameters():  # what DDP does to parameter gradients
            dist.all_reduce(p.grad)
            p.grad /= WORLD
        torch.testing.assert_close(distributed.all_reduce_mean(loss), reference.detach())
        for p, q in zip(model.parameters(), reference_model.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
    gathered = distributed.gather(torch.full((2, 3), float(rank)))
    assert gathered.shape == (4, 3) and gathered[:2].eq(0).all() and gathered[2:].eq(1).all()


def test_two_process_gather_equals_one_process_with_the_whole_batch(tmp_path):
    run_workers(_worker, tmp_path, WORLD)


def test_single_process_helpers_are_identities():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    assert distributed.all_reduce_mean(x) is x
