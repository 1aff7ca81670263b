"""Batch normalisation over the batches of all processes, on any device.

Beside :mod:`core_ssl.distributed`: where batch statistics matter under ``torchrun`` (the
BatchNorm layers of an encoder trained with a contrastive loss), they must span the global
batch. ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so DDP with ``gloo`` on CPUs would silently
normalise each process's share of the batch on its own, and a contrastive loss would no longer
match one process holding the whole batch. :class:`GatheredBatchNorm` computes the batch
statistics from per-channel sums gathered (with gradient) from every process::

    mean = sum_r S1_r / sum_r n_r,    var = sum_r S2_r / sum_r n_r - mean^2

(S1, S2 the per-channel sums of x and x^2 over a process's batch, n its count), so the forward
and backward passes equal those of one BatchNorm over the combined batch.
:func:`convert_batchnorm` uses torch's fused ``SyncBatchNorm`` on CUDA and this one elsewhere.
"""

from __future__ import annotations

import torch
from torch import nn

from core_ssl import distributed


class GatheredBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Drop-in for BatchNorm1d/2d/3d whose training statistics span every process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (batch, channels, ...), got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or distributed.world_size() == 1:
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.square().sum(dims),
                           torch.tensor([x.numel() / x.shape[1]], device=x.device)])
        total = distributed.gather(local[None]).sum(0)
        channels = x.shape[1]
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm in ``module`` made to use the statistics of all processes: torch's
    ``SyncBatchNorm`` on CUDA, :class:`GatheredBatchNorm` otherwise. Parameters and buffers
    are shared with the originals; state-dict names are unchanged."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GatheredBatchNorm):
        converted = GatheredBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, device))
    return module
