"""The shared machinery every method stands on (solo-learn's ``BaseMethod``, without Lightning).

A method is an ``nn.Module`` whose ``forward(images, labels, indices)`` *is* its training step:
it augments the uint8 batch on the batch's device, runs its networks and returns a dict with
the ``loss`` (and optionally ``embeddings`` = two views' projections for the collapse
monitors, plus any scalars worth logging). Because the step is ``forward``, one DDP wrapper
around the method synchronises every gradient, whatever networks the method holds.

What the base provides, once for all methods:

- the encoder (``build_encoder`` from the config) and :meth:`encode` (channels-last input);
- :meth:`augment`: a batched core_ssl policy run outside autocast with the method's generator;
- :meth:`trainable_parameters` for the optimiser and :meth:`auxiliary_optimizers` for
  anything a method steps itself (the Context Encoder's discriminator);
- :meth:`after_optimizer_step`: the hook for momentum / EMA updates, given the run's progress;
- :meth:`backbone`: the network whose features the evaluation protocols use;
- ``paper_defaults``: the published values of the config fields the method reads.

The training loop itself (optimiser, schedules, bf16 autocast, online kNN, logging,
checkpoints, DDP) is :mod:`vision_benchmarks.pretrain`, readable top to bottom.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from core_ssl import distributed
from core_ssl.augment import SimCLRAugment, simclr_augment
from core_ssl.encoders import build_encoder

from vision_benchmarks.config import PretrainConfig


def build_backbone_encoder(cfg: PretrainConfig) -> nn.Module:
    """The encoder named in the config: ``convnet`` (width w -> 8w features) or a ResNet."""
    if cfg.encoder == "convnet":
        return build_encoder("convnet", width=cfg.width)
    return build_encoder(cfg.encoder, cifar_stem=cfg.cifar_stem, width=cfg.width)


class Method(nn.Module):
    """Base of every pre-training method; see the module docstring for the contract.

    Args:
        cfg: the resolved config (method fields filled in by the method's paper defaults).
        num_classes: classes of the dataset (used by label-using methods).
        num_train_images: size of the training set (PIRL's memory bank has one row per image).
    """

    name: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False
    paper_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: PretrainConfig, num_classes: int, num_train_images: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.num_train_images = num_train_images
        self.encoder = build_backbone_encoder(cfg)
        self.feature_dim: int = self.encoder.feature_dim
        self.generator: torch.Generator | None = None

    # --- shared helpers -------------------------------------------------------------------

    @property
    def use_blur(self) -> bool:
        """Blur in the views: as configured, else only above 32 px (SimCLR's CIFAR recipe)."""
        return self.cfg.blur if self.cfg.blur is not None else self.cfg.image_size > 32

    def simclr_policy(self) -> SimCLRAugment:
        """SimCLR's views at the configured size and colour strength."""
        return simclr_augment(self.cfg.image_size, color_strength=self.cfg.color_strength or 0.5,
                              blur=self.use_blur)

    def augment(self, policy: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """``policy(images)`` in float32 (autocast off), drawn from the method's generator."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            return policy(images, self.generator)

    def encode(self, images: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """Encoder features (B, feature_dim) of float views, channels-last when configured."""
        if self.cfg.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return (encoder or self.encoder)(images)

    def random_permutation(self, n: int) -> torch.Tensor:
        """``randperm(n)`` from the method's generator (on the generator's device)."""
        device = self.generator.device if self.generator is not None else None
        return torch.randperm(n, generator=self.generator, device=device)

    @property
    def gather_distributed(self) -> bool:
        """Gather negatives across processes (True under torchrun)."""
        return distributed.world_size() > 1

    # --- what a method may override --------------------------------------------------------

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None,
                indices: torch.Tensor) -> dict[str, Any]:
        """One training step's loss: uint8 images (B, C, H, W), labels (B,), dataset indices (B,)."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the main optimiser (default: every one that requires a gradient)."""
        return [p for p in self.parameters() if p.requires_grad]

    def auxiliary_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers the method steps itself inside ``forward``; saved in checkpoints."""
        return {}

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        """Called after every optimiser step; ``progress`` in [0, 1] is the share of the run done."""

    def backbone(self) -> nn.Module:
        """The network whose output the evaluation protocols read (default: the encoder)."""
        return self.encoder

    @property
    def backbone_dim(self) -> int:
        """Output size of :meth:`backbone`."""
        return self.feature_dim
