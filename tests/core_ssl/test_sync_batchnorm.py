"""core_ssl.sync_batchnorm: batch norm over 2 gloo processes equals one BatchNorm over the whole batch."""

import torch
import torch.distributed as dist
from torch import nn

from core_ssl import distributed
from core_ssl.sync_batchnorm import GatheredBatchNorm, convert_batchnorm
from tests.spawn import run_workers

WORLD = 2
BATCH = 3  # per process


def _network() -> nn.Sequential:
    torch.manual_seed(2)
    network = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.Flatten(), nn.Linear(4 * 5 * 5, 6), nn.BatchNorm1d(6))
    with torch.no_grad():  # affine parameters away from 1 / 0, so their gradients are checked too
        for bn in (network[1], network[5]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return network


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * BATCH, 2, 5, 5, generator=g) * 2 + 1, torch.randn(WORLD * BATCH, 6, generator=g)


def _worker(rank):
    x, target = _data()
    reference = _network()
    reference_output = reference(x)
    ((reference_output - target).square().sum() / len(x)).backward()

    network = convert_batchnorm(_network(), torch.device("cpu"))
    assert isinstance(network[1], GatheredBatchNorm) and isinstance(network[5], GatheredBatchNorm)
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    output = network(x[mine])
    torch.testing.assert_close(output, reference_output[mine].detach())  # outputs normalised with global stats
    loss = (output - target[mine]).square().sum() / len(x)  # this process's share of the global loss
    loss.backward()
    for p in network.parameters():  # what DDP does: average over processes (x WORLD for a sum)
        dist.all_reduce(p.grad)
    for (name, p), q in zip(network.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=lambda m: f"{name}: {m}")
    for mine_bn, their_bn in ((network[1], reference[1]), (network[5], reference[5])):
        # running statistics: the unbiased variance of the whole batch, as one BatchNorm keeps it
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(mine_bn, buffer), getattr(their_bn, buffer))
    network.eval(), reference.eval()
    torch.testing.assert_close(network(x), reference(x))  # eval mode: running stats, no communication


def test_two_processes_normalise_and_backpropagate_like_one_batchnorm_over_the_whole_batch(tmp_path):
    run_workers(_worker, tmp_path, WORLD)


def test_conversion_shares_parameters_and_keeps_state_dict_names_and_single_process_output():
    network = _network()
    network.train()
    names = list(network.state_dict())
    weight = network[1].weight
    x, _ = _data()
    expected = network(x)
    converted = convert_batchnorm(_network(), torch.device("cpu"))
    assert list(converted.state_dict()) == names
    assert distributed.world_size() == 1
    torch.testing.assert_close(converted(x), expected)  # one process: plain batch norm
    shared = convert_batchnorm(network, torch.device("cpu"))
    assert shared[1].weight is weight  # the converted layer trains the original's parameters
