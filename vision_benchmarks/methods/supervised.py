"""The supervised baseline: the same encoder and SimCLR views, trained with cross-entropy."""

from __future__ import annotations

import torch.nn.functional as F

from core_ssl.heads import LinearClassifier

from vision_benchmarks.methods.base import Method


class Supervised(Method):
    """``loss = CE(W f(aug(x)) + b, y)`` with one SimCLR view per image."""

    name = "supervised"
    uses_labels = True
    paper_defaults = dict(color_strength=0.5)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.views = self.simclr_policy()
        self.classifier = LinearClassifier(self.feature_dim, self.num_classes)

    def forward(self, images, labels, indices):
        if labels is None:
            raise ValueError("the supervised baseline needs labels")
        logits = self.classifier(self.encode(self.augment(self.views, images)))
        loss = F.cross_entropy(logits.float(), labels)
        return {"loss": loss, "train_accuracy": (logits.argmax(1) == labels).float().mean()}
