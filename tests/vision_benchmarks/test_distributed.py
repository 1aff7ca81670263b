"""DDP wiring: 2 gloo processes on the CPU give the loss and gradients of one process that
holds the combined batch (negatives gathered, batch norm over both processes)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from core_ssl.augment import to_float_image
from vision_benchmarks.methods import build_method
from vision_benchmarks.pretrain import distribute
from tests.spawn import run_workers
from tests.vision_benchmarks.test_methods import tiny_config

WORLD = 2
METHODS_UNDER_TEST = ("simclr", "supcon", "byol")


class AlternatingFlip(torch.nn.Module):
    """A deterministic 'augmentation': odd calls return the image, even calls its mirror, so the
    two views of a step differ and do not depend on how the batch is split."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, images: torch.Tensor, generator=None, backend=None) -> torch.Tensor:
        self.calls += 1
        x = to_float_image(images)
        return x if self.calls % 2 else x.flip(3)


def make_method(name: str):
    torch.manual_seed(0)
    method = build_method(tiny_config(name), num_classes=10, num_train_images=64)
    flip = AlternatingFlip()  # one for all views: the two views of a step differ
    for attribute in ("views", "second_views", "view1", "view2"):
        if hasattr(method, attribute):
            setattr(method, attribute, flip)
    return method


def loss_and_grads(model, method, images, labels):
    out = model(images, labels, torch.arange(len(images)))
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    return out["loss"].detach(), grads


def _worker(rank: int, images, labels, result_dir: str) -> None:
    torch.set_num_threads(1)
    share = len(images) // WORLD
    mine = slice(rank * share, (rank + 1) * share)
    results = {}
    for name in METHODS_UNDER_TEST:
        method = make_method(name)
        model = distribute(method, torch.device("cpu"))
        results[name] = loss_and_grads(model, method, images[mine], labels[mine])
    torch.save(results, os.path.join(result_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_two_process_loss_and_gradients_equal_one_process_with_the_combined_batch(cifar_batch, tmp_path):
    images, labels = cifar_batch[0][:32], cifar_batch[1][:32]
    run_workers(_worker, tmp_path, WORLD, args=(images, labels, str(tmp_path)))
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name in METHODS_UNDER_TEST:
        method = make_method(name)
        loss, grads = loss_and_grads(method, method, images, labels)
        distributed_loss = sum(r[name][0] for r in per_rank) / WORLD
        assert torch.allclose(distributed_loss, loss, atol=1e-5), f"{name}: {distributed_loss} vs {loss}"
        # BN makes some gradients nearly cancel (early layers, biases before a BN), so compare each
        # one relative to its own size plus a small share of the largest.
        largest = max(g.norm() for g in grads.values())
        for param_name, grad in grads.items():
            for rank_result in per_rank:  # DDP leaves the averaged gradient on every process
                error = (rank_result[name][1][param_name] - grad).norm()
                assert error <= 1e-2 * grad.norm() + 1e-4 * largest, (name, param_name, float(error))


def test_ddp_buffer_flag_is_one_this_torch_accepts():
    """torch 2.14 names it forward_sync_buffers, torch 2.11-2.13 broadcast_buffers: the wrapper must pass the one the
    installed DistributedDataParallel takes, set to False (SyncBatchNorm keeps the statistics in step)."""
    import inspect

    from torch import nn

    from vision_benchmarks.pretrain import no_forward_buffer_sync

    flag = no_forward_buffer_sync()
    assert list(flag.values()) == [False]
    assert next(iter(flag)) in inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
