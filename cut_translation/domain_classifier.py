"""A domain classifier on InceptionV3 features: how many translations does it take for domain B?

FID and KID on a few hundred images move slowly; a linear classifier that tells domain A from
domain B is sensitive at that scale. It is an L2-regularised logistic regression on the
standardised 2048-d pool features (the FID features), fitted on *training* images of both
domains (label 0 = A, 1 = B), so the held-out images it scores were never seen by it::

    p(B | x) = sigmoid(w . z + b),   z = (x - mean) / std   (mean, std of the training features)
    minimise  1/N sum_i BCE(p(B | x_i), y_i) + l2 / 2 * |w|^2          (full batch, L-BFGS)

``l2`` is chosen from a grid by the log-loss on a held-out fifth of the training features, then
the model is refitted on all of them. The *domain-B share* of a set of images is the fraction
with p(B | x) > 1/2, with a percentile bootstrap interval over the images
(``core_ssl.stats.bootstrap_interval``). Untranslated held-out A images give the floor (the
classifier's false-positive rate), real held-out B images the ceiling (its true-positive rate).

The fit is the binary form of :func:`core_ssl.logistic.fit_logistic_regression` (the linear
probe of ``vision_benchmarks`` uses its multinomial form), run in float64 on the CPU with tight
tolerances (:data:`FIT_OPTIONS`); it is deterministic.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core_ssl.logistic import fit_logistic_regression, logistic_logits
from core_ssl.stats import Interval, bootstrap_interval

__all__ = ["DEFAULT_L2_GRID", "DomainClassifier"]

DEFAULT_L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
MIN_IMAGES = 5  # per domain: the cross-validation of the L2 penalty needs them
FIT_OPTIONS = dict(max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12)
"""L-BFGS settings of every fit: up to 200 iterations, stopping at a gradient of 1e-9 or a change of 1e-12."""


def _tensor(features: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features))
    if x.dim() != 2:
        raise ValueError(f"features must be an (N, D) matrix, got shape {tuple(x.shape)}")
    return x.to(torch.float64)


class DomainClassifier:
    """Logistic regression telling domain-B features (label 1) from domain-A features (label 0).

    Args:
        features_a, features_b: (N_A, D) and (N_B, D) features of *training* images.
        l2_grid: candidate L2 strengths; the one with the lowest validation log-loss is used.
        seed: seeds the validation split.

    Attributes:
        l2: the chosen strength; ``validation_loss``: validation log-loss per candidate.
    """

    def __init__(self, features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray,
                 l2_grid: tuple[float, ...] = DEFAULT_L2_GRID, seed: int = 0) -> None:
        a, b = _tensor(features_a), _tensor(features_b)
        if len(a) < MIN_IMAGES or len(b) < MIN_IMAGES:
            raise ValueError(f"the domain classifier needs at least {MIN_IMAGES} training images per domain, got {len(a)} A "
                             f"and {len(b)} B; raise --classifier-images")
        x = torch.cat([a, b])
        y = torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).to(torch.float64)
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-6)
        z = (x - self.mean) / self.std
        order = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))
        held = max(2, len(z) // 5)
        val, fit = order[:held], order[held:]
        self.validation_loss, fitted, params = {}, {}, None
        for l2 in sorted(l2_grid, reverse=True):  # strong to weak, warm-started along the path
            params = fit_logistic_regression(z[fit], y[fit], l2, init=params, **FIT_OPTIONS)
            fitted[l2] = params
            logits = logistic_logits(z[val], *params)
            self.validation_loss[l2] = F.binary_cross_entropy_with_logits(logits, y[val]).item()
        self.l2 = min(l2_grid, key=lambda l2: (self.validation_loss[l2], -l2))
        self.weight, self.bias = fit_logistic_regression(z, y, self.l2, init=fitted[self.l2], **FIT_OPTIONS)

    def probability_b(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """p(B | x) for each row of ``features``."""
        z = (_tensor(features) - self.mean) / self.std
        return torch.sigmoid(logistic_logits(z, self.weight, self.bias)).numpy()

    def is_b(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """1.0 where p(B | x) > 1/2, else 0.0."""
        return (self.probability_b(features) > 0.5).astype(np.float64)

    def share_b(self, features: torch.Tensor | np.ndarray, reps: int = 1000, confidence: float = 0.95,
                seed: int = 0) -> Interval:
        """The fraction of rows classified as domain B, with a bootstrap interval over the rows."""
        return bootstrap_interval(self.is_b(features), np.mean, reps=reps, confidence=confidence, seed=seed)

    def balanced_accuracy(self, features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
        """Mean of the accuracy on A images (classified A) and on B images (classified B)."""
        return float(0.5 * ((1.0 - self.is_b(features_a).mean()) + self.is_b(features_b).mean()))
