"""MoCo v1 and v2 (He et al. 2020; Chen et al. 2020c): a momentum key encoder and a queue of
past keys as negatives."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
from torch import nn

from core_ssl import distributed, losses
from core_ssl.augment import SimCLRAugment, mocov1_augment, mocov2_augment
from core_ssl.heads import MLPHead
from core_ssl.momentum import KeyQueue, ema_update_, momentum_copy

from vision_benchmarks.methods.base import Method, MethodConfig, Setting

MAX_QUEUE_SHARE = 0.1
"""The queue holds at most this share of the training set. A query meets its own key from the
previous epoch among the negatives when that key is still queued: with a queue of K keys over N
images in random order this happens to a share K^2 / (2 N^2) of the queries while K <= N (0.5%
at K = N / 10), and to most of them once K >= N. MoCo's ImageNet setting is K / N = 0.05."""


def queue_limit(num_train_images: int) -> int:
    """The longest queue allowed for a training set: ``max(1, floor(MAX_QUEUE_SHARE * N))``."""
    return max(1, int(MAX_QUEUE_SHARE * num_train_images))


class MoCo(Method):
    """MoCo v1: query ``q = g(f(aug(x)))``, key ``k`` from the momentum copy of (f, g),
    ``loss = info_nce(q, k, queue, t = 0.07)``, then the keys (of every process) join the queue
    and ``theta_k <- m theta_k + (1 - m) theta_q`` with m = 0.999. g is a linear 128-d layer.
    Views: :func:`core_ssl.augment.mocov1_augment` (the official v1 recipe: crop 0.2-1,
    grayscale 0.2 before ``ColorJitter(0.4, 0.4, 0.4, 0.4)``, flip).

    Shuffling BN: the key batch is permuted and normalised in ``shuffle_bn_splits`` groups, so a
    query and its key never share batch statistics (MoCo shuffles across its 8 GPUs).

    The queue is capped at :data:`MAX_QUEUE_SHARE` of the training set
    (:meth:`fit_to_training_set`): the paper's 65,536 keys exceed CIFAR-10's 50,000 images.
    """

    name = "mocov1"
    settings = {
        "key_momentum": Setting(float, "MoCo key-encoder momentum m", bounds=(("min", 0), ("max", 1))),
        "queue_size": Setting(int, "MoCo queue length; capped at a tenth of the training set (with a warning) so an "
                                   "image rarely meets its own earlier key as a negative", bounds=(("min", 1),)),
        "shuffle_bn_splits": Setting(int, "MoCo: the key batch is shuffled and normalised in this many groups "
                                          "(shuffling BN; 8 GPUs in MoCo)", bounds=(("min", 1),)),
    }
    paper_defaults = dict(temperature=0.07, proj_dim=128, key_momentum=0.999, queue_size=65536,
                          shuffle_bn_splits=8)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.views = self.build_views()
        self.query_net = nn.Sequential(self.encoder, self.build_projection())
        self.key_net = momentum_copy(self.query_net)
        self.queue = KeyQueue(self.cfg.proj_dim, self.cfg.queue_size)

    @classmethod
    def fit_to_training_set(cls, cfg: MethodConfig, num_train_images: int) -> MethodConfig:
        """``cfg`` with the queue capped at :func:`queue_limit` (a warning says so)."""
        limit = queue_limit(num_train_images)
        if cfg.queue_size is None or cfg.queue_size <= limit:
            return cfg
        warnings.warn(f"MoCo queue of {cfg.queue_size} keys on {num_train_images} training images: "
                      f"capped at {limit} ({MAX_QUEUE_SHARE:.0%} of the training set), or images would "
                      "meet their own earlier keys as negatives; pass --queue-size to choose a smaller "
                      "queue", stacklevel=2)
        return dataclasses.replace(cfg, queue_size=limit)

    def derived_settings(self) -> dict[str, Any]:
        """MoCo v1 has no blur unless ``--blur`` asks for it (whatever the image size)."""
        return {"blur": bool(self.cfg.blur)}

    def build_views(self) -> SimCLRAugment:
        """MoCo v1's views (:func:`core_ssl.augment.mocov1_augment`); blur only when asked."""
        return mocov1_augment(self.cfg.image_size, blur_p=0.5 if self.cfg.blur else 0.0)

    def build_projection(self) -> nn.Module:
        return MLPHead(self.feature_dim, self.feature_dim, self.cfg.proj_dim, num_layers=1)

    @torch.no_grad()
    def keys(self, views: torch.Tensor) -> torch.Tensor:
        """Key projections, the batch shuffled and split into BN groups, returned in order."""
        order = self.random_permutation(len(views)).to(views.device)
        groups = min(self.cfg.shuffle_bn_splits, len(views))
        shuffled = torch.cat([self.encode(g, self.key_net) for g in views[order].chunk(groups)])
        return torch.empty_like(shuffled).index_copy_(0, order, shuffled)

    def forward(self, images, labels, indices):
        query_views = self.augment(self.views, images)
        key_views = self.augment(self.views, images)
        q = self.encode(query_views, self.query_net)
        k = self.keys(key_views)
        loss = losses.info_nce(q, k, self.queue.keys.clone(), self.cfg.temperature)
        self.queue.enqueue(distributed.gather(k.float()))
        return {"loss": loss, "embeddings": (q, k)}

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        ema_update_(self.key_net, self.query_net, self.cfg.key_momentum)


class MoCoV2(MoCo):
    """MoCo v2: MoCo v1 with a 2-layer MLP head (no BN, hidden = the encoder's width unless
    configured), MoCo v2's views (blur above 32 px), t = 0.2 (and the cosine learning-rate
    schedule, which every method here uses)."""

    name = "mocov2"
    paper_defaults = dict(MoCo.paper_defaults, temperature=0.2)

    def derived_settings(self) -> dict[str, Any]:
        return {"blur": self.use_blur, "proj_hidden": self.cfg.proj_hidden or self.feature_dim}

    def build_views(self) -> SimCLRAugment:
        return mocov2_augment(self.cfg.image_size, blur_p=0.5 if self.cfg.blur else 0.0)

    def build_projection(self) -> nn.Module:
        return MLPHead(self.feature_dim, self.cfg.proj_hidden, self.cfg.proj_dim, num_layers=2, batch_norm=False)
