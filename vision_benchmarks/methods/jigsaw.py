"""Jigsaw puzzles (Noroozi & Favaro 2016): recover which permutation shuffled 3x3 tiles."""

from __future__ import annotations

import torch
from torch import nn

from core_ssl import losses
from core_ssl.augment import SimCLRAugment, jigsaw_tiles, maximal_hamming_permutations
from core_ssl.heads import MLPHead

from vision_benchmarks.methods.base import Method, Setting

GRID = 3


class Jigsaw(Method):
    """The context-free network: 9 tiles cut with random jitter inside their cells, shuffled by
    one of the ``permutations`` (100, chosen greedily for maximal average Hamming distance,
    Noroozi & Favaro's Algorithm 1; ``--permutation-rule minimum`` for max-min), each embedded
    by the shared encoder and a shared ``Linear-ReLU`` to 512; the 9 concatenated embeddings go
    through a 2-layer MLP that classifies the permutation (``loss = jigsaw_loss``). Views:
    random crop (0.5-1), flip and grayscale p 0.3 (against colour cues).

    Input normalisation ``per_image``: every tile is standardised on its own (zero mean, unit
    variance per channel, as the paper does against low-level shortcuts), and so is every whole
    image the evaluation protocols feed the encoder."""

    name = "jigsaw"
    settings = {
        "permutations": Setting(int, "Jigsaw / PIRL: size of the maximal-Hamming permutation set",
                                bounds=(("min", 2),)),
        "permutation_rule": Setting(str, "Jigsaw / PIRL: greedy rule of the permutation set: average (Noroozi & "
                                         "Favaro's Algorithm 1) or minimum (max-min distance)",
                                    choices=("average", "minimum")),
    }
    paper_defaults = dict(permutations=100, permutation_rule="average")
    input_normalization = "per_image"
    tile_embedding_dim = 512

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.views = SimCLRAugment(self.cfg.image_size, scale=(0.5, 1.0), color_p=0.0, grayscale_p=0.3, blur_p=0.0)
        self.register_buffer("permutation_set", maximal_hamming_permutations(
            self.cfg.permutations, GRID * GRID, rule=self.cfg.permutation_rule))
        self.tile_embedding = nn.Sequential(nn.Linear(self.feature_dim, self.tile_embedding_dim), nn.ReLU(inplace=True))
        self.classifier = MLPHead(GRID * GRID * self.tile_embedding_dim, 1024, self.cfg.permutations, num_layers=2)

    def embed_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, 9, C, t, t) tiles -> (B, 9 * 512) concatenated tile embeddings, one encoder pass
        over the 9B tiles, each standardised on its own by :meth:`encode`."""
        batch, count = tiles.shape[:2]
        features = self.encode(tiles.flatten(0, 1))
        return self.tile_embedding(features).reshape(batch, count * self.tile_embedding_dim)

    def forward(self, images, labels, indices):
        views = self.augment(self.views, images)
        tiles, permutation = jigsaw_tiles(views, self.permutation_set, GRID, generator=self.generator)
        logits = self.classifier(self.embed_tiles(tiles))
        loss = losses.jigsaw_loss(logits, permutation)
        return {"loss": loss, "train_accuracy": (logits.argmax(1) == permutation).float().mean()}
