"""PatchNCE on generator features: patch sampling, per-layer MLP heads, the layer-averaged loss.

For each NCE layer l the same S locations are drawn for the input image (keys) and the output
image (queries); each sampled C_l-dim feature goes through that layer's 2-layer MLP
(``C_l -> 256 -> 256``, :class:`core_ssl.heads.MLPHead` without batch norm), and the loss is
:func:`core_ssl.losses.patch_nce` (L2 normalisation, temperature, negatives = the other
patches of the same image), averaged over layers::

    L_PatchNCE = 1/|layers| * sum_l patch_nce(H_l(q_l[:, s]), H_l(k_l[:, s]), t)

Keys are constants (the official code detaches them after the head), so they are projected
under ``torch.no_grad()``: no graph is kept for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core_ssl.heads import MLPHead
from core_ssl.losses import patch_nce

__all__ = ["PatchNCEHeads", "sample_locations", "gather_patches", "layer_mean_patch_nce"]


def sample_locations(features: Sequence[torch.Tensor], num_patches: int,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """For each (B, C, H, W) feature map, ``min(num_patches, H * W)`` distinct flat indices into
    its H * W grid, uniformly without replacement (one set shared by the whole batch, as in CUT)."""
    if num_patches < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}")
    locations = []
    for feature in features:
        grid = feature.shape[2] * feature.shape[3]
        order = torch.randperm(grid, generator=generator, device="cpu" if generator is None else generator.device)
        locations.append(order[: min(num_patches, grid)].to(feature.device))
    return locations


def gather_patches(feature: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features at flat grid indices (S,) -> (B, S, C): ``out[b, s] = feature[b, :, loc_s // W, loc_s % W]``."""
    return feature.flatten(2).index_select(2, locations).transpose(1, 2)


class PatchNCEHeads(nn.Module):
    """One 2-layer MLP head (``C_l -> dim -> dim``, ReLU between) per NCE layer.

    Built from the channel counts (``ResnetGenerator.feature_channels()``), so its parameters
    exist before any forward pass and the optimiser is made once.
    """

    def __init__(self, channels: Sequence[int], dim: int = 256) -> None:
        super().__init__()
        if not channels:
            raise ValueError("PatchNCEHeads needs the channel count of at least one NCE layer")
        self.heads = nn.ModuleList(MLPHead(int(c), dim, dim, num_layers=2, batch_norm=False) for c in channels)
        self.channels = [int(c) for c in channels]

    def forward(self, features: Sequence[torch.Tensor], locations: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Project each layer's sampled patches: list of (B, S_l, dim)."""
        if len(features) != len(self.heads) or len(locations) != len(self.heads):
            raise ValueError(
                f"expected {len(self.heads)} feature maps and location sets, got {len(features)} and {len(locations)}"
            )
        projected = []
        for head, feature, where in zip(self.heads, features, locations):
            patches = gather_patches(feature, where)
            b, s, c = patches.shape
            projected.append(head(patches.reshape(b * s, c)).reshape(b, s, -1))
        return projected


def layer_mean_patch_nce(queries: Sequence[torch.Tensor], keys: Sequence[torch.Tensor],
                         temperature: float = 0.07, rows: slice = slice(None)) -> torch.Tensor:
    """``1/L * sum_l patch_nce(queries[l][rows], keys[l][rows], temperature)`` over the L layers,
    for the images selected by ``rows`` (e.g. the domain-A half of a batch)."""
    losses = [patch_nce(q[rows], k[rows], temperature) for q, k in zip(queries, keys)]
    return torch.stack(losses).mean()
