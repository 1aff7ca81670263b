"""PIRL (Misra & van der Maaten 2020): representations invariant to the Jigsaw transform,
contrasted against a memory bank."""

from __future__ import annotations

import torch
from torch import nn

from core_ssl import distributed, losses
from core_ssl.augment import jigsaw_tiles, maximal_hamming_permutations
from core_ssl.momentum import MemoryBank

from vision_benchmarks.methods.base import Method, Setting
from vision_benchmarks.methods.jigsaw import GRID, Jigsaw


class PIRL(Method):
    """Image head f: ``v_I = W_f f(aug(I))``; jigsaw head g: the 9 shuffled tiles of another view
    of I through the shared encoder and a shared ``Linear`` to 128, concatenated, then a Linear
    to 128 (``v_It``). With m_I the memory-bank row of I and K bank rows as negatives::

        L = w * L_NCE(v_It, m_I, negatives) + (1 - w) * L_NCE(v_I, m_I, negatives)

    w = 0.5, t = 0.07; afterwards m_I <- normalize(0.5 m_I + 0.5 v_I) (of every process).

    ``L_NCE`` is the paper's binary noise-contrastive estimation, :func:`core_ssl.losses.nce`:
    ``h = exp(s/t) / (exp(s/t) + c)``, ``L = -log h(positive) - sum_j log(1 - h(negative_j))``,
    with the noise mass c = K * mean exp(s/t) estimated on the first batch and then fixed (the
    normaliser Z of InstDisc and of VISSL's PIRL; the buffer ``nce_noise_mass`` keeps it in the
    checkpoint). ``--pirl-loss infonce`` uses the softmax InfoNCE over the positive and the K
    negatives instead.

    Input normalisation ``per_image``: the image views and every tile are standardised the same
    way (zero mean, unit variance per channel), one batch-norm population for both branches and
    for the evaluation images."""

    name = "pirl"
    settings = {
        "permutations": Jigsaw.settings["permutations"],
        "permutation_rule": Jigsaw.settings["permutation_rule"],
        "bank_negatives": Setting(int, "PIRL: memory-bank negatives per step", bounds=(("min", 1),)),
        "bank_momentum": Setting(float, "PIRL memory-bank momentum", bounds=(("min", 0), ("max", 1))),
        "jigsaw_weight": Setting(float, "PIRL: weight of the jigsaw term, 1 - weight on the image term",
                                  bounds=(("min", 0), ("max", 1))),
        "pirl_loss": Setting(str, "PIRL loss: nce (the paper's binary NCE) or infonce (softmax over the positive "
                                  "and the bank negatives)", choices=("nce", "infonce")),
    }
    paper_defaults = dict(temperature=0.07, proj_dim=128, bank_negatives=32000, bank_momentum=0.5,
                          jigsaw_weight=0.5, color_strength=0.5, permutations=100,
                          permutation_rule="average", pirl_loss="nce")
    input_normalization = "per_image"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dim = self.cfg.proj_dim
        self.views = self.simclr_policy()
        self.register_buffer("permutation_set", maximal_hamming_permutations(
            self.cfg.permutations, GRID * GRID, rule=self.cfg.permutation_rule))
        self.image_head = nn.Linear(self.feature_dim, dim)
        self.tile_head = nn.Linear(self.feature_dim, dim)
        self.jigsaw_head = nn.Linear(GRID * GRID * dim, dim)
        self.bank = MemoryBank(self.num_train_images, dim, momentum=self.cfg.bank_momentum)
        # c of the NCE loss; 0 until estimated on the first batch
        self.register_buffer("nce_noise_mass", torch.zeros(()))
        self._noise_mass_known = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # runs saved before the NCE loss have no noise mass: 0 = estimate it on the next step
        state_dict.setdefault(prefix + "nce_noise_mass", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def contrast(self, query: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """One term of the loss: NCE (default) or InfoNCE of ``query`` against the bank rows."""
        if self.cfg.pirl_loss == "infonce":
            return losses.info_nce(query, positives, negatives, self.cfg.temperature)
        return losses.nce(query, positives, negatives, self.cfg.temperature, self.nce_noise_mass)

    @torch.no_grad()
    def estimate_noise_mass(self, queries: torch.Tensor, negatives: torch.Tensor) -> None:
        """Set ``nce_noise_mass`` from the first batch (averaged over processes), once per run.
        The host reads it only until it is known, so later steps never wait for the device."""
        if self._noise_mass_known or self.cfg.pirl_loss != "nce":
            return
        if float(self.nce_noise_mass) <= 0:  # a resumed run has it from its checkpoint
            estimate = losses.nce_noise_mass(queries, negatives, self.cfg.temperature)
            self.nce_noise_mass.copy_(distributed.all_reduce_mean(estimate))
        self._noise_mass_known = True

    def forward(self, images, labels, indices):
        image_views = self.augment(self.views, images)
        tiles, _ = jigsaw_tiles(self.augment(self.views, images), self.permutation_set, GRID, generator=self.generator)
        batch = images.shape[0]
        v_image = self.image_head(self.encode(image_views))
        tile_features = self.tile_head(self.encode(tiles.flatten(0, 1)))
        v_jigsaw = self.jigsaw_head(tile_features.reshape(batch, -1))

        positives = self.bank[indices]
        negatives = self.bank.sample(self.cfg.bank_negatives, self.generator)
        self.estimate_noise_mass(torch.cat([v_image, v_jigsaw]).detach(), negatives)
        jigsaw_term = self.contrast(v_jigsaw, positives, negatives)
        image_term = self.contrast(v_image, positives, negatives)
        loss = self.cfg.jigsaw_weight * jigsaw_term + (1 - self.cfg.jigsaw_weight) * image_term
        self.bank.update(distributed.gather(indices), distributed.gather(v_image.detach().float()))
        return {"loss": loss, "embeddings": (v_image, v_jigsaw), "jigsaw_term": jigsaw_term.detach(),
                "image_term": image_term.detach()}
