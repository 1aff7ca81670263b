"""SupCon (Khosla et al. 2020): SimCLR's views and head, every same-label view a positive."""

from __future__ import annotations

import torch

from core_ssl import losses

from vision_benchmarks.methods.simclr import SimCLR


class SupCon(SimCLR):
    """Loss ``supcon(stack(z1, z2), labels, t = 0.1)`` (L_out); uses the labels."""

    name = "supcon"
    uses_labels = True
    paper_defaults = dict(SimCLR.paper_defaults, temperature=0.1)

    def contrastive_loss(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError("SupCon needs labels: use a labelled dataset (<split>/<class>/<image>)")
        return losses.supcon(torch.stack([z1, z2], dim=1), labels, self.cfg.temperature,
                             gather_distributed=self.gather_distributed)
