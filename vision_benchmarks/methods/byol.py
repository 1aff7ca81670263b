"""BYOL (Grill et al. 2020): predict an EMA target network's projection of the other view."""

from __future__ import annotations

import torch
from torch import nn

from core_ssl import losses
from core_ssl.augment import byol_augment_pair
from core_ssl.heads import byol_predictor, byol_projector
from core_ssl.momentum import MomentumSchedule, ema_update_, momentum_copy

from vision_benchmarks.methods.base import Method, Setting

_SCHEDULE_RESOLUTION = 1_000_000  # the cosine schedule is evaluated at progress * this


class BYOL(Method):
    """Online (f, projector g, predictor q), target (f', g') = EMA of (f, g) with tau rising from
    0.996 to 1 on a cosine over the run; ``loss = byol(q(g(f(v1))), g'(f'(v2))) + (swap)``, each
    term ``2 - 2 cos``. Views are BYOL's asymmetric pair (blur off at 32 px, as on CIFAR)."""

    name = "byol"
    settings = {"target_momentum": Setting(float, "BYOL target EMA base tau, raised to 1 on a cosine",
                                           bounds=(("min", 0), ("max", 1)))}
    paper_defaults = dict(proj_hidden=4096, proj_dim=256, target_momentum=0.996)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        blur = {} if self.use_blur else {"blur_p": 0.0}
        self.view1, self.view2 = byol_augment_pair(self.cfg.image_size, **blur)
        self.online = nn.Sequential(self.encoder, byol_projector(self.feature_dim, self.cfg.proj_hidden, self.cfg.proj_dim))
        self.predictor = byol_predictor(self.cfg.proj_dim, self.cfg.proj_hidden)
        self.target = momentum_copy(self.online)
        self.momentum = MomentumSchedule(self.cfg.target_momentum, _SCHEDULE_RESOLUTION, kind="cosine")

    def forward(self, images, labels, indices):
        views = torch.cat([self.augment(self.view1, images), self.augment(self.view2, images)])
        p1, p2 = self.predictor(self.encode(views, self.online)).chunk(2)  # encode: the input format, once
        with torch.no_grad():
            t1, t2 = self.encode(views, self.target).chunk(2)
        loss = losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1)
        return {"loss": loss, "embeddings": (p1, p2)}

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        tau = self.momentum(int(progress * _SCHEDULE_RESOLUTION))
        ema_update_(self.target, self.online, tau)
