"""RotNet (Gidaris et al. 2018): classify which of 4 rotations was applied."""

from __future__ import annotations

from core_ssl import losses
from core_ssl.augment import SimCLRAugment, rotate_batch
from core_ssl.heads import MLPHead

from vision_benchmarks.methods.base import Method


class RotNet(Method):
    """Every image of the batch at 0, 90, 180 and 270 degrees (the paper's best setting), a
    2-layer MLP on the encoder features predicts the rotation; ``loss = rotation_loss``. Views:
    random crop (scale 0.5-1) and flip, no colour changes (colour carries no rotation cue)."""

    name = "rotnet"
    paper_defaults: dict = {}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.views = SimCLRAugment(self.cfg.image_size, scale=(0.5, 1.0), color_p=0.0, grayscale_p=0.0, blur_p=0.0)
        self.classifier = MLPHead(self.feature_dim, self.feature_dim, 4, num_layers=2)

    def forward(self, images, labels, indices):
        rotated, rotation = rotate_batch(self.augment(self.views, images))
        logits = self.classifier(self.encode(rotated))
        loss = losses.rotation_loss(logits, rotation)
        return {"loss": loss, "train_accuracy": (logits.argmax(1) == rotation).float().mean()}
