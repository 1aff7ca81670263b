"""LARS: SGD with momentum and a layer-wise trust ratio (You et al. 2017), as SimCLR trains with it.

The update is the one of SimCLR's own optimiser (its ``classic_momentum`` form), for each
parameter tensor ``w`` with gradient ``g`` at learning rate ``lr``:

    g     <- g + wd * w                                   (groups with weight decay)
    trust  = eta * ||w|| / ||g||  if ||w|| > 0 and ||g|| > 0, else 1   (groups with ``adapt``)
    v     <- m * v + lr * trust * g                       (v starts at 0)
    w     <- w - v                       (``nesterov``: w <- w - (m * v + lr * trust * g))

``trust`` is 1 in groups without ``adapt``. SimCLR leaves biases and batch-norm parameters out
of both the weight decay and the adaptation (``lars_param_groups`` builds those two groups).
The learning rate sits inside the momentum buffer, so a schedule changes the step at once
rather than through the buffer. For an adapted tensor without weight decay or momentum, each
step moves ``w`` by ``lr * eta * ||w||`` whatever the gradient's scale, which is what lets very
large batches (and their large learning rates) train stably.

The step uses for-each kernels per group and reads nothing back to the host (the trust ratios
stay on the device), so it never waits for the GPU; its cost there has not been measured.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling over SGD with momentum (the module docstring's update).

    Param-group options: ``lr``, ``momentum`` (0.9), ``weight_decay`` (0), ``trust_coefficient``
    (eta, 0.001 as in SimCLR), ``adapt`` (True: scale by the trust ratio) and ``nesterov``.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 1e-3, adapt: bool = True, nesterov: bool = False):
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if trust_coefficient <= 0:
            raise ValueError(f"trust_coefficient must be > 0, got {trust_coefficient}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, adapt=adapt, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("LARS does not support sparse gradients")
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if group["adapt"]:
                w_norm = torch.stack(torch._foreach_norm(params))
                g_norm = torch.stack(torch._foreach_norm(grads))
                usable = (w_norm > 0) & (g_norm > 0)
                trust = torch.where(usable, group["trust_coefficient"] * w_norm / torch.where(usable, g_norm, 1.0), 1.0)
                grads = torch._foreach_mul(grads, list((trust * group["lr"]).unbind()))
            else:
                grads = torch._foreach_mul(grads, group["lr"])
            # grads now hold lr * trust * g, in new tensors: p.grad is left as it was
            buffers = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buffers.append(state["momentum_buffer"])
            momentum = group["momentum"]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, grads)
            if group["nesterov"]:
                torch._foreach_add_(grads, buffers, alpha=momentum)
                torch._foreach_sub_(params, grads)
            else:
                torch._foreach_sub_(params, buffers)
        return loss


def weight_decay_groups(parameters: Iterable[nn.Parameter], weight_decay: float) -> list[dict]:
    """Two param groups for any optimiser: weights (tensors of two or more dimensions) with
    ``weight_decay``, biases and normalisation parameters (one dimension or fewer) without."""
    parameters = list(parameters)
    return [{"params": [p for p in parameters if p.dim() > 1], "weight_decay": weight_decay},
            {"params": [p for p in parameters if p.dim() <= 1], "weight_decay": 0.0}]


def lars_param_groups(parameters: Iterable[nn.Parameter], weight_decay: float) -> list[dict]:
    """SimCLR's two groups: :func:`weight_decay_groups`, the weights also with the trust ratio,
    the biases and normalisation parameters without it."""
    weights, others = weight_decay_groups(parameters, weight_decay)
    return [{**weights, "adapt": True}, {**others, "adapt": False}]
