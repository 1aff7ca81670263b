"""PatchNCE on generator features: patch sampling, per-layer MLP heads, the layer-averaged loss.

For each NCE layer l the same S locations are drawn for the input image (keys) and the output
image (queries); one draw serves all images of one PatchNCE term (as the official
``PatchSampleF``), and separate terms (CUT's G(x) vs x and G(y) vs y) draw independently
(``sample_locations(..., groups=[n, n])``). Each sampled C_l-dim feature goes through that layer's 2-layer MLP
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
                     generator: torch.Generator | None = None,
                     groups: Sequence[int] | None = None, on_device: bool = False) -> list[torch.Tensor]:
    """For each (B, C, H, W) feature map, ``min(num_patches, H * W)`` distinct flat indices into
    its H * W grid, uniformly without replacement.

    The draw is a random permutation's first indices, made on the CPU (or on ``generator``'s
    device) and moved to the features' device. With ``on_device`` it is made on the features'
    device from its default generator, as the ``num_patches`` largest of ``H * W`` uniform float64
    keys (the same distribution: every subset equally likely, in random order): no host copy,
    so a CUDA graph can record it, and each replay draws new locations.

    Without ``groups`` one (S,) set per layer is shared by the whole batch, as in CUT. With
    ``groups`` (sizes of consecutive row blocks summing to B, e.g. ``[n, n]`` for the x and y
    halves of a CUT batch) each block gets its own independent draw, and each layer's locations
    are a (B, S) tensor whose rows repeat their block's draw. Draws are made block by block,
    each block layer by layer: the order in which the official code's two ``calculate_NCE_loss``
    calls draw them.
    """
    if num_patches < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}")

    if on_device and generator is not None:
        raise ValueError("sample_locations: on_device draws from the device's default generator; pass no generator")

    def draw() -> list[torch.Tensor]:
        out = []
        for feature in features:
            grid = feature.shape[2] * feature.shape[3]
            if on_device:
                keys = torch.rand(grid, dtype=torch.float64, device=feature.device)
                out.append(keys.topk(min(num_patches, grid), sorted=True).indices)
                continue
            device = "cpu" if generator is None else generator.device
            order = torch.randperm(grid, generator=generator, device=device)
            out.append(order[: min(num_patches, grid)].to(feature.device))
        return out

    if groups is None:
        return draw()
    batch = features[0].shape[0] if features else 0
    if sum(groups) != batch or any(g < 1 for g in groups):
        raise ValueError(f"groups {list(groups)} must be positive sizes summing to the batch size {batch}")
    per_group = [draw() for _ in groups]
    return [torch.cat([draws[layer].expand(size, -1) for draws, size in zip(per_group, groups)])
            for layer in range(len(features))]


def gather_patches(feature: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features at flat grid indices -> (B, S, C).

    ``locations`` is (S,), shared by the batch: ``out[b, s] = feature[b, :, loc_s // W, loc_s % W]``;
    or (B, S), one set per image: ``out[b, s] = feature[b, :, loc_bs // W, loc_bs % W]``.
    """
    flat = feature.flatten(2)
    if locations.dim() == 1:
        return flat.index_select(2, locations).transpose(1, 2)
    if locations.dim() != 2 or locations.shape[0] != feature.shape[0]:
        raise ValueError(f"locations must be (S,) or (B={feature.shape[0]}, S), got {tuple(locations.shape)}")
    index = locations.unsqueeze(1).expand(-1, flat.shape[1], -1)
    return flat.gather(2, index).transpose(1, 2)


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
