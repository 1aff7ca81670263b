"""SimCLR (Chen et al. 2020): two augmented views, a projection MLP, NT-Xent over the 2N views."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core_ssl import losses
from core_ssl.heads import simclr_projection

from vision_benchmarks.methods.base import Method, Setting
from vision_benchmarks.methods.transforms import view_policies


class SimCLR(Method):
    """``z = g(f(aug(x)))`` for two views, loss ``nt_xent(z1, z2, t)``; negatives are gathered
    from every process under DDP. CIFAR-10 recipe: t = 0.5, colour strength 0.5, no blur,
    head encoder-width -> encoder-width -> 128."""

    name = "simclr"
    settings = {
        "views": Setting(str, "SimCLR / SimCLRv2 / SupCon augmentation ablation (SimCLR Figure 5): the views are made "
                              "of these one or two transformations, comma-separated, applied in order (crop, cutout, "
                              "color, sobel, noise, blur, rotate; vision_benchmarks.methods.transforms) instead of the "
                              "method's policy; None = the method's policy"),
        "views_branches": Setting(str, "with --views: one = the transformations make the second view, the first is "
                                       "the image itself (the paper's asymmetric ablation); both = both views draw "
                                       "them independently", choices=("one", "both"), default="one"),
        "proj_layers": Setting(int, "SimCLR / SupCon projection head (SimCLR Figure 8): 0 = none (the loss on the "
                                    "encoder's features), 1 = linear, 2 = the MLP, n = n linear layers; None = 2",
                               bounds=(("min", 0),)),
    }
    paper_defaults = dict(temperature=0.5, proj_dim=128, color_strength=0.5)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.views, self.second_views = self.view_policies()
        self.projection = self.build_projection()

    def view_policies(self) -> tuple[nn.Module, nn.Module]:
        """The policies of the first and second view: SimCLR's for both, or with ``--views``
        the ablation's transformations (:func:`vision_benchmarks.methods.transforms.view_policies`)."""
        if self.cfg.views is None:
            policy = self.simclr_policy()
            return policy, policy
        return view_policies(self.cfg.views, self.cfg.image_size, self.cfg.views_branches,
                             color_strength=self.cfg.color_strength or 0.5)

    def derived_settings(self) -> dict[str, Any]:
        """The head's hidden width defaults to the encoder's feature size (SimCLR's d -> d -> 128)."""
        return {**super().derived_settings(), "proj_hidden": self.cfg.proj_hidden or self.feature_dim}

    def build_projection(self) -> nn.Module:
        """SimCLR's 2-layer MLP head (hidden = the encoder's width unless configured); with
        ``--proj-layers`` 0 no head (the identity) or n linear layers (1: a linear head)."""
        layers = 2 if self.cfg.proj_layers is None else self.cfg.proj_layers
        if layers < 0:
            raise ValueError(f"--proj-layers must be >= 0 (0 = no head), got {layers}")
        if layers == 0:
            return nn.Identity()
        return simclr_projection(self.feature_dim, hidden=self.cfg.proj_hidden, out=self.cfg.proj_dim,
                                 num_layers=layers)

    def project_two_views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections (z1, z2) of two independent views, in one forward pass over both."""
        views = torch.cat([self.augment(self.views, images), self.augment(self.second_views, images)])
        return self.projection(self.encode(views)).chunk(2)

    def contrastive_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return losses.nt_xent(z1, z2, self.cfg.temperature, gather_distributed=self.gather_distributed)

    def forward(self, images, labels, indices):
        z1, z2 = self.project_two_views(images)
        return {"loss": self.contrastive_loss(z1, z2, labels), "embeddings": (z1, z2)}
