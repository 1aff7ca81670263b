"""Context Encoder (Pathak et al. 2016): inpaint hidden regions with an encoder-decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core_ssl import losses
from core_ssl.device import fused_optimizer
from core_ssl.augment import SimCLRAugment, apply_mask, center_square_mask, random_block_mask

from vision_benchmarks.methods.base import Method, Setting

MASK_FILL = 0.5  # hidden pixels are set to mid-grey, close to the data mean (the paper fills the mean)


def build_decoder(feature_dim: int, image_size: int, channels: int = 3) -> nn.Sequential:
    """Features (B, d) -> images (B, C, S, S) in [0, 1]: a Linear to 128 x 4 x 4, then stride-2
    transposed convolutions (BN-ReLU between) doubling the side up to S, then a sigmoid."""
    stages = int(math.log2(image_size // 4))
    if image_size < 8 or 4 * 2 ** stages != image_size:
        raise ValueError(f"the Context Encoder decoder needs an image size of 4 x 2^k >= 8, got {image_size}")
    layers: list[nn.Module] = [nn.Linear(feature_dim, 128 * 16), nn.Unflatten(1, (128, 4, 4))]
    width = 128
    for stage in range(stages):
        last = stage == stages - 1
        out = channels if last else max(32, width // 2)
        layers.append(nn.ConvTranspose2d(width, out, 4, stride=2, padding=1, bias=last))
        if not last:
            layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        width = out
    layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def build_discriminator(channels: int = 3) -> nn.Sequential:
    """A small DCGAN-style critic: three stride-2 convs with LeakyReLU, pooled to one logit."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 1),
    )


class ContextEncoder(Method):
    """Hide a region (random blocks covering 1/4 of the image, or the central square), encode the
    rest with the encoder, decode the whole image; ``L = (1 - a) * masked_reconstruction + a *
    L_adv`` with a = 0.001 (the paper's 0.999 / 0.001). L_adv is the non-saturating GAN loss of
    a discriminator that sees real images and images with the hidden region filled in by the
    prediction; the discriminator is trained by its own Adam with the official code's setting,
    lr ``discriminator_lr`` = 2e-4 and betas (0.5, 0.999), whatever the main optimiser (the
    paper trains the context encoder 10x faster than the discriminator: the ``cpu`` preset's
    AdamW 2e-3 keeps that ratio). ``adversarial_weight = 0`` leaves the discriminator out."""

    name = "context_encoder"
    settings = {
        "mask": Setting(str, "Context Encoder mask: random_block (1/4 of the image) or center",
                        choices=("random_block", "center")),
        "adversarial_weight": Setting(float, "Context Encoder adversarial weight (0 turns the discriminator off)",
                                      bounds=(("min", 0),)),
        "discriminator_lr": Setting(float, "Context Encoder: the discriminator's Adam learning rate (betas 0.5, "
                                           "0.999, as the official code)", bounds=(("gt", 0),)),
    }
    paper_defaults = dict(mask="random_block", adversarial_weight=0.001, discriminator_lr=2e-4)
    discriminator_betas = (0.5, 0.999)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.views = SimCLRAugment(self.cfg.image_size, scale=(0.5, 1.0), color_p=0.0, grayscale_p=0.0, blur_p=0.0)
        self.decoder = build_decoder(self.feature_dim, self.cfg.image_size)
        self.discriminator = build_discriminator() if self.cfg.adversarial_weight > 0 else None
        if self.discriminator is not None and not self.cfg.discriminator_lr > 0:
            raise ValueError(f"--discriminator-lr must be > 0, got {self.cfg.discriminator_lr} "
                             "(the official Context Encoder uses 2e-4)")
        self._discriminator_optimizer: torch.optim.Optimizer | None = None

    def trainable_parameters(self) -> list[nn.Parameter]:
        excluded = set() if self.discriminator is None else {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in excluded]

    def auxiliary_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.discriminator is None:
            return {}
        if self._discriminator_optimizer is None:
            self._discriminator_optimizer = fused_optimizer(
                torch.optim.Adam, self.discriminator.parameters(), lr=self.cfg.discriminator_lr,
                betas=self.discriminator_betas)
        return {"discriminator": self._discriminator_optimizer}

    def hide(self, views: torch.Tensor) -> torch.Tensor:
        """The bool mask (B, 1, H, W), True where pixels are hidden."""
        batch, _, height, width = views.shape
        if self.cfg.mask == "center":
            return center_square_mask(batch, height, width, 0.5, device=views.device)
        return random_block_mask(batch, height, width, 0.25, generator=self.generator, device=views.device)

    def forward(self, images, labels, indices):
        views = self.augment(self.views, images)
        mask = self.hide(views)
        prediction = self.decoder(self.encode(apply_mask(views, mask, MASK_FILL))).float()
        reconstruction = losses.masked_reconstruction(prediction, views, mask)
        out = {"reconstruction": reconstruction.detach()}
        if self.discriminator is None:
            out["loss"] = reconstruction
            return out
        filled = torch.where(mask, prediction, views)
        out["discriminator_loss"] = self.train_discriminator(views, filled.detach())
        fooled = F.binary_cross_entropy_with_logits(
            self.discriminator(filled).float(), torch.ones(len(views), 1, device=views.device))
        weight = self.cfg.adversarial_weight
        out["loss"] = (1 - weight) * reconstruction + weight * fooled
        out["adversarial"] = fooled.detach()
        return out

    def train_discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One Adam step of the discriminator on real vs filled-in images; returns its loss."""
        if self.gather_distributed:
            raise ValueError("the Context Encoder's adversarial term is single-process only; "
                             "use --adversarial-weight 0 under torchrun")
        optimizer = self.auxiliary_optimizers()["discriminator"]
        logits = self.discriminator(torch.cat([real, fake])).float()
        targets = torch.cat([torch.ones(len(real), 1), torch.zeros(len(fake), 1)]).to(logits.device)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()
