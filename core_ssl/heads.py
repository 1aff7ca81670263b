"""Heads that sit on top of an encoder: projection MLPs, BYOL's predictor, CURL's bilinear
similarity and the linear probe.

Example (SimCLR on a ResNet-18)::

    encoder = build_encoder("resnet18", cifar_stem=True)
    head = simclr_projection(encoder.feature_dim)          # 512 -> 2048 -> 128
    z = head(encoder(images))                              # (B, 128), fed to nt_xent
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "MLPHead",
    "linear_block",
    "simclr_projection",
    "simclrv2_projection",
    "byol_projector",
    "byol_predictor",
    "BilinearSimilarity",
    "LinearClassifier",
]


def linear_block(in_dim: int, out_dim: int, batch_norm: bool) -> nn.Sequential:
    """One hidden layer of a head: ``Linear (no bias when BN follows) [-> BatchNorm1d] -> ReLU``."""
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_dim))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MLPHead(nn.Module):
    """An n-layer MLP head: ``(n - 1) x [Linear -> BN -> ReLU] -> Linear [-> BN(affine=False)]``.

    ``num_layers=1`` is a single Linear (a linear projection head). A Linear followed by BN has
    no bias (BN's shift replaces it). ``last_bn=True`` adds a final BatchNorm without affine
    parameters, as the SimCLRv2 and MoCo v3 heads end.

    ``layers`` is an ``nn.Sequential`` of ``num_layers`` blocks, each an ``nn.Sequential``:
    the first ``num_layers - 1`` are hidden blocks ``Linear-BN-ReLU`` (``Linear-ReLU`` without
    batch norm), the last is the output ``Linear`` (+ BN). :meth:`truncated` gives the first
    ``k`` hidden blocks, for SimCLRv2's fine-tuning "from the first layer of the head".

    Args:
        in_dim: input features.
        hidden_dim: width of every hidden block.
        out_dim: output features.
        num_layers: number of Linear layers, >= 1.
        batch_norm: BatchNorm1d after each hidden Linear.
        last_bn: BatchNorm1d (affine=False) after the output Linear.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 batch_norm: bool = True, last_bn: bool = False) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        blocks: list[nn.Module] = []
        previous = in_dim
        for _ in range(num_layers - 1):
            blocks.append(linear_block(previous, hidden_dim, batch_norm))
            previous = hidden_dim
        output: list[nn.Module] = [nn.Linear(previous, out_dim, bias=not last_bn)]
        if last_bn:
            output.append(nn.BatchNorm1d(out_dim, affine=False))
        blocks.append(nn.Sequential(*output))
        self.layers = nn.Sequential(*blocks)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.num_layers = num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim)."""
        return self.layers(x)

    def truncated(self, k: int) -> nn.Sequential:
        """The first ``k`` hidden blocks (0 <= k < num_layers) as an ``nn.Sequential``.

        The blocks are shared with this head, not copied (``copy.deepcopy`` the result for an
        independent copy). ``k = 0`` is the identity. Its output size is
        ``hidden_dim`` for k >= 1 and ``in_dim`` for k = 0.
        """
        if not 0 <= k < self.num_layers:
            raise ValueError(
                f"k must be in 0..{self.num_layers - 1} (the hidden blocks of this "
                f"{self.num_layers}-layer head), got {k}"
            )
        return nn.Sequential(*self.layers[:k])


def simclr_projection(in_dim: int, hidden: int = 2048, out: int = 128,
                      num_layers: int = 2) -> MLPHead:
    """SimCLR's projection head: ``Linear-BN-ReLU-Linear`` (in -> 2048 -> 128 by default)."""
    return MLPHead(in_dim, hidden, out, num_layers=num_layers)


def simclrv2_projection(in_dim: int, hidden: int | None = None, out: int = 128) -> MLPHead:
    """SimCLRv2's 3-layer head: ``2 x [Linear-BN-ReLU] -> Linear -> BN`` (hidden defaults to in_dim)."""
    return MLPHead(in_dim, in_dim if hidden is None else hidden, out, num_layers=3, last_bn=True)


def byol_projector(in_dim: int, hidden: int = 4096, out: int = 256) -> MLPHead:
    """BYOL's projector: ``Linear-BN-ReLU-Linear`` (in -> 4096 -> 256)."""
    return MLPHead(in_dim, hidden, out, num_layers=2)


def byol_predictor(dim: int = 256, hidden: int = 4096) -> MLPHead:
    """BYOL's predictor: ``Linear-BN-ReLU-Linear`` (dim -> 4096 -> dim)."""
    return MLPHead(dim, hidden, dim, num_layers=2)


class BilinearSimilarity(nn.Module):
    """CURL's learned bilinear similarity: ``logits = anchor @ W @ positive.T``.

    ``logits[i, j] = anchor_i^T W positive_j``, so the positives of a batch are on the diagonal.
    W (``self.weight``, D x D) is initialised uniform in [0, 1) as in the official code. The
    official code also subtracts each row's max before the cross-entropy, which does not change
    the loss (``cross_entropy`` does it internally). The CURL loss itself is
    ``core_ssl.losses.curl_bilinear(anchor, positive, head.weight)``.

    Args:
        dim: feature size D.
        generator: random source for the initialisation.
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        self.weight = nn.Parameter(torch.rand(dim, dim, generator=generator))

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """anchor (B, D), positive (B', D) -> logits (B, B')."""
        dim = self.weight.shape[0]
        if anchor.dim() != 2 or positive.dim() != 2 or anchor.shape[1] != dim \
                or positive.shape[1] != dim:
            raise ValueError(
                f"expected anchor and positive of shape (B, {dim}), got {tuple(anchor.shape)} "
                f"and {tuple(positive.shape)}"
            )
        return anchor @ (self.weight @ positive.T)


class LinearClassifier(nn.Linear):
    """A linear probe ``logits = x W^T + b`` (in_dim -> num_classes).

    Initialised like MoCo's linear evaluation: W ~ N(0, 0.01^2), b = 0.
    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"in_dim and num_classes must be >= 1, got {in_dim}, {num_classes}")
        super().__init__(in_dim, num_classes)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.bias)
