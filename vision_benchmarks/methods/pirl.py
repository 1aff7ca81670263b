"""PIRL (Misra & van der Maaten 2020): representations invariant to the Jigsaw transform,
contrasted against a memory bank."""

from __future__ import annotations

from torch import nn

from core_ssl import distributed, losses
from core_ssl.augment import jigsaw_tiles, maximal_hamming_permutations
from core_ssl.momentum import MemoryBank

from vision_benchmarks.methods.base import Method
from vision_benchmarks.methods.jigsaw import GRID, normalize_tiles


class PIRL(Method):
    """Image head f: ``v_I = W_f f(aug(I))``; jigsaw head g: the 9 shuffled tiles of another view
    of I through the shared encoder and a shared ``Linear`` to 128, concatenated, then a Linear
    to 128 (``v_It``). With m_I the memory-bank row of I and bank rows as negatives::

        L = w * info_nce(v_It, m_I, negatives) + (1 - w) * info_nce(v_I, m_I, negatives)

    w = 0.5, t = 0.07; afterwards m_I <- normalize(0.5 m_I + 0.5 v_I) (of every process)."""

    name = "pirl"
    paper_defaults = dict(temperature=0.07, proj_dim=128, bank_negatives=32000, bank_momentum=0.5,
                          jigsaw_weight=0.5, color_strength=0.5, permutations=100)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dim = self.cfg.proj_dim
        self.views = self.simclr_policy()
        self.register_buffer("permutation_set", maximal_hamming_permutations(self.cfg.permutations, GRID * GRID))
        self.image_head = nn.Linear(self.feature_dim, dim)
        self.tile_head = nn.Linear(self.feature_dim, dim)
        self.jigsaw_head = nn.Linear(GRID * GRID * dim, dim)
        self.bank = MemoryBank(self.num_train_images, dim, momentum=self.cfg.bank_momentum)

    def forward(self, images, labels, indices):
        image_views = self.augment(self.views, images)
        tiles, _ = jigsaw_tiles(self.augment(self.views, images), self.permutation_set, GRID, generator=self.generator)
        batch = images.shape[0]
        v_image = self.image_head(self.encode(image_views))
        tile_features = self.tile_head(self.encode(normalize_tiles(tiles.flatten(0, 1))))
        v_jigsaw = self.jigsaw_head(tile_features.reshape(batch, -1))

        positives = self.bank[indices]
        negatives = self.bank.sample(self.cfg.bank_negatives, self.generator)
        jigsaw_term = losses.info_nce(v_jigsaw, positives, negatives, self.cfg.temperature)
        image_term = losses.info_nce(v_image, positives, negatives, self.cfg.temperature)
        loss = self.cfg.jigsaw_weight * jigsaw_term + (1 - self.cfg.jigsaw_weight) * image_term
        self.bank.update(distributed.gather(indices), distributed.gather(v_image.detach().float()))
        return {"loss": loss, "embeddings": (v_image, v_jigsaw), "jigsaw_term": jigsaw_term.detach(),
                "image_term": image_term.detach()}
