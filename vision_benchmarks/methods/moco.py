"""MoCo v1 and v2 (He et al. 2020; Chen et al. 2020c): a momentum key encoder and a queue of
past keys as negatives."""

from __future__ import annotations

import torch
from torch import nn

from core_ssl import distributed, losses
from core_ssl.augment import SimCLRAugment, mocov2_augment
from core_ssl.heads import MLPHead
from core_ssl.momentum import KeyQueue, ema_update_, momentum_copy

from vision_benchmarks.methods.base import Method


class MoCo(Method):
    """MoCo v1: query ``q = g(f(aug(x)))``, key ``k`` from the momentum copy of (f, g),
    ``loss = info_nce(q, k, queue, t = 0.07)``, then the keys (of every process) join the queue
    and ``theta_k <- m theta_k + (1 - m) theta_q`` with m = 0.999. g is a linear 128-d layer.

    Shuffling BN: the key batch is permuted and normalised in ``shuffle_bn_splits`` groups, so a
    query and its key never share batch statistics (MoCo shuffles across its 8 GPUs).
    """

    name = "mocov1"
    paper_defaults = dict(temperature=0.07, proj_dim=128, key_momentum=0.999, queue_size=65536,
                          shuffle_bn_splits=8)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.views = self.build_views()
        self.query_net = nn.Sequential(self.encoder, self.build_projection())
        self.key_net = momentum_copy(self.query_net)
        self.queue = KeyQueue(self.cfg.proj_dim, self.cfg.queue_size)

    def build_views(self) -> SimCLRAugment:
        """MoCo v1: crop scale (0.2, 1), colour jitter 0.4 (always applied), grayscale 0.2, flip."""
        return SimCLRAugment(self.cfg.image_size, scale=(0.2, 1.0), brightness=0.4, contrast=0.4,
                             saturation=0.4, hue=0.4 / 4, color_p=1.0, grayscale_p=0.2, blur_p=0.0)

    def build_projection(self) -> nn.Module:
        return MLPHead(self.feature_dim, self.feature_dim, self.cfg.proj_dim, num_layers=1)

    @torch.no_grad()
    def keys(self, views: torch.Tensor) -> torch.Tensor:
        """Key projections, the batch shuffled and split into BN groups, returned in order."""
        order = self.random_permutation(len(views)).to(views.device)
        groups = min(self.cfg.shuffle_bn_splits, len(views))
        shuffled = torch.cat([self.key_net(self._channels_last(g)) for g in views[order].chunk(groups)])
        return torch.empty_like(shuffled).index_copy_(0, order, shuffled)

    def _channels_last(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def forward(self, images, labels, indices):
        query_views = self.augment(self.views, images)
        key_views = self.augment(self.views, images)
        q = self.query_net(self._channels_last(query_views))
        k = self.keys(key_views)
        loss = losses.info_nce(q, k, self.queue.keys.clone(), self.cfg.temperature)
        self.queue.enqueue(distributed.gather(k.float()))
        return {"loss": loss, "embeddings": (q, k)}

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        ema_update_(self.key_net, self.query_net, self.cfg.key_momentum)


class MoCoV2(MoCo):
    """MoCo v2: MoCo v1 with a 2-layer MLP head (no BN), blur in the views, t = 0.2 (and the
    cosine learning-rate schedule, which every method here uses)."""

    name = "mocov2"
    paper_defaults = dict(MoCo.paper_defaults, temperature=0.2)

    def build_views(self) -> SimCLRAugment:
        return mocov2_augment(self.cfg.image_size, blur_p=0.5 if self.use_blur else 0.0)

    def build_projection(self) -> nn.Module:
        return MLPHead(self.feature_dim, self.cfg.proj_hidden or self.feature_dim, self.cfg.proj_dim,
                       num_layers=2, batch_norm=False)
