"""SimCLRv2 (Chen et al. 2020b): SimCLR with a 3-layer projection head whose first layer is
kept for fine-tuning. The self-distillation loss is ``core_ssl.losses.distillation_loss``
(used by ``vision_benchmarks.evaluation.protocols.distill``)."""

from __future__ import annotations

from torch import nn

from core_ssl.heads import simclrv2_projection

from vision_benchmarks.methods.simclr import SimCLR


class SimCLRv2(SimCLR):
    """SimCLR with head ``2 x [Linear-BN-ReLU] -> Linear -> BN``; :meth:`feature_network` is the
    encoder followed by the head's first block ("fine-tune from the first layer of the head"),
    so its probe features have the head's hidden width (``proj_hidden``), not the encoder's."""

    name = "simclrv2"
    paper_defaults = dict(SimCLR.paper_defaults)

    def build_projection(self) -> nn.Module:
        return simclrv2_projection(self.feature_dim, hidden=self.cfg.proj_hidden, out=self.cfg.proj_dim)

    def feature_network(self) -> nn.Module:
        return nn.Sequential(self.encoder, self.projection.truncated(1))

    @property
    def backbone_dim(self) -> int:
        return self.projection.hidden_dim
