"""torch.distributed helpers: rank queries and an all-gather that carries gradients.

Everything here is the identity on a single process (or when ``torch.distributed`` is not
initialised), so the same training code runs under ``python`` and under ``torchrun``.

Contract of :func:`gather`: every process passes a tensor of the same shape; each gets the
concatenation of all of them along dim 0, in rank order. In the backward pass the gradients
arriving at every copy are summed across processes and each process keeps the slice of its
own input. When each process computes the loss of its own anchors against the gathered
candidates and DDP averages the parameter gradients, this gives exactly the gradient of one
process holding the whole batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0: the process that logs, prints and writes checkpoints."""
    return rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]


def gather(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0 from every process, differentiably (see module docstring)."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a copy; no gradient). Identity on one process."""
    if world_size() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / world_size()


def init_from_environment(backend: str | None = None) -> bool:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Picks ``nccl`` on CUDA and ``gloo`` otherwise unless ``backend`` is given, and pins each
    process to its local GPU. Returns True when a group was (or already is) initialised.
    """
    if is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def local_device(device: torch.device) -> torch.device:
    """The device this process should use: its own GPU under torchrun, else ``device``."""
    if device.type == "cuda" and is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
