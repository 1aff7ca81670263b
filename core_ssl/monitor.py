"""Representation health while training: collapse shows up here before it shows in accuracy.

=======================  ===========================  ================  ====================
metric                   healthy                      collapsed         reference
=======================  ===========================  ================  ====================
embedding_std            about 1/sqrt(d)              0                 SimSiam (Chen & He)
effective_rank           a large share of min(N, d)   1                 Roy & Vetterli 2007
alignment (lower good)   small                        0 (trivially)     Wang & Isola 2020
uniformity (lower good)  negative, e.g. -2 .. -4      0                 Wang & Isola 2020
=======================  ===========================  ================  ====================

plus a weighted kNN classifier (k = 200, t = 0.1, the InstDisc / lightly monitor).

Every function runs under ``torch.no_grad()`` and computes in float32 whatever the input's
dtype. Metrics are returned as 0-dim tensors on the input's device (no host sync), except
:func:`knn_accuracy` and :func:`representation_summary`, which return Python floats for logging.
Embeddings are (N, d) matrices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "embedding_std",
    "effective_rank",
    "alignment",
    "uniformity",
    "knn_predict",
    "knn_accuracy",
    "representation_summary",
]


def _as_matrix(name: str, z: torch.Tensor, min_rows: int = 1) -> torch.Tensor:
    if z.dim() != 2:
        raise ValueError(f"{name} must be an (N, d) matrix of embeddings, got shape {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {z.shape[0]}")
    return z.detach().float()


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension standard deviation of the L2-normalised embeddings.

    ``std = 1/d * sum_k std_i( z_ik / ||z_i|| )`` (unbiased std over the N rows). Collapse to a
    single point gives 0; embeddings spread isotropically on the unit sphere give about
    ``1/sqrt(d)``, so ``std * sqrt(d)`` near 1 is healthy.
    """
    z = F.normalize(_as_matrix("z", z, min_rows=2), dim=1)
    return z.std(dim=0).mean()


@torch.no_grad()
def effective_rank(z: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli 2007) of the centred embedding matrix.

    With singular values s_k of ``z - mean(z, dim=0)`` and ``p_k = s_k / sum_j s_j``:
    ``erank = exp(-sum_k p_k log p_k)``. It lies in [1, min(N, d)], equals r when the centred
    matrix has r equal non-zero singular values, and is 1 for fully collapsed embeddings.
    """
    z = _as_matrix("z", z)
    singular_values = torch.linalg.svdvals(z - z.mean(dim=0, keepdim=True))
    total = singular_values.sum()
    p = singular_values / total.clamp_min(torch.finfo(torch.float32).tiny)
    entropy = -torch.special.xlogy(p, p).sum()  # 0 log 0 = 0, so all-zero s gives erank 1
    return entropy.exp()


@torch.no_grad()
def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Alignment of positive pairs (Wang & Isola 2020), lower is better.

    ``align = 1/N * sum_i || z1_i/||z1_i|| - z2_i/||z2_i|| ||_2 ^ alpha``; 0 when the two views
    embed identically.
    """
    a = F.normalize(_as_matrix("z1", z1), dim=1)
    b = F.normalize(_as_matrix("z2", z2), dim=1)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (a - b).norm(dim=1).pow(alpha).mean()


@torch.no_grad()
def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Uniformity on the unit sphere (Wang & Isola 2020), lower is better.

    ``unif = log( 2/(N(N-1)) * sum_{i<j} exp(-t ||u_i - u_j||^2) )`` with ``u_i = z_i/||z_i||``;
    0 when all embeddings coincide, more negative the more evenly they spread. Computed as a
    logsumexp, so it cannot underflow to log 0. Memory is O(N^2).
    """
    u = F.normalize(_as_matrix("z", z, min_rows=2), dim=1)
    exponents = torch.pdist(u, p=2).pow(2).mul(-t)
    return torch.logsumexp(exponents, dim=0) - math.log(exponents.numel())


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor,
                test_features: torch.Tensor, num_classes: int, k: int = 200,
                temperature: float = 0.1, chunk_size: int = 512,
                return_scores: bool = False) -> torch.Tensor:
    """Weighted kNN classification (Wu et al. 2018 InstDisc; the lightly / solo-learn monitor).

    For a test embedding x: ``s_j = cos(x, train_j)``; over its k most similar training
    embeddings N_k(x), ``score_c = sum_{j in N_k(x), y_j = c} exp(s_j / temperature)``;
    the prediction is ``argmax_c score_c``. k is capped at the number of training embeddings.
    The test set is processed ``chunk_size`` rows at a time, so memory is
    O(chunk_size * N_train).

    Args:
        train_features: (N_train, d) embeddings of the labelled set (the "feature bank").
        train_labels: (N_train,) integer labels in 0..num_classes-1.
        test_features: (N_test, d) embeddings to classify.
        num_classes: number of classes C.
        k: neighbours that vote.
        temperature: t of the vote weights exp(s / t).
        chunk_size: test rows per chunk.
        return_scores: return the (N_test, C) float32 score matrix instead of the labels.

    Returns:
        (N_test,) int64 predicted labels, or (N_test, C) scores with ``return_scores=True``.
    """
    bank = F.normalize(_as_matrix("train_features", train_features), dim=1)
    queries = F.normalize(_as_matrix("test_features", test_features), dim=1)
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"train and test features differ in dimension: {bank.shape[1]} vs {queries.shape[1]}"
        )
    if train_labels.shape != (bank.shape[0],) or train_labels.is_floating_point():
        raise ValueError(
            f"train_labels must be integer labels of shape ({bank.shape[0]},), got "
            f"{tuple(train_labels.shape)} of dtype {train_labels.dtype}"
        )
    if k < 1 or temperature <= 0 or chunk_size < 1 or num_classes < 1:
        raise ValueError(
            f"need k >= 1, temperature > 0, chunk_size >= 1 and num_classes >= 1; got k={k}, "
            f"temperature={temperature}, chunk_size={chunk_size}, num_classes={num_classes}"
        )
    labels = train_labels.to(device=bank.device, dtype=torch.long)
    low, high = labels.min().item(), labels.max().item()  # one sync; an evaluation, not a hot path
    if low < 0 or high >= num_classes:
        raise ValueError(f"train_labels must lie in 0..{num_classes - 1}, found {low}..{high}")
    k = min(k, bank.shape[0])

    scores = torch.empty(queries.shape[0], num_classes, device=queries.device)
    for start in range(0, queries.shape[0], chunk_size):
        chunk = queries[start:start + chunk_size]
        similarity, neighbours = (chunk @ bank.T).topk(k, dim=1)
        weights = (similarity / temperature).exp()
        chunk_scores = torch.zeros(chunk.shape[0], num_classes, device=queries.device)
        scores[start:start + chunk_size] = chunk_scores.scatter_add_(1, labels[neighbours], weights)
    return scores if return_scores else scores.argmax(dim=1)


@torch.no_grad()
def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor,
                 test_features: torch.Tensor, test_labels: torch.Tensor, num_classes: int,
                 k: int = 200, temperature: float = 0.1, chunk_size: int = 512) -> float:
    """Top-1 accuracy of :func:`knn_predict` on labelled test embeddings, in [0, 1]."""
    if test_labels.shape != (test_features.shape[0],):
        raise ValueError(
            f"test_labels must have shape ({test_features.shape[0]},), got {tuple(test_labels.shape)}"
        )
    predicted = knn_predict(train_features, train_labels, test_features, num_classes, k=k,
                            temperature=temperature, chunk_size=chunk_size)
    return (predicted == test_labels.to(predicted.device)).float().mean().item()


@torch.no_grad()
def representation_summary(z1: torch.Tensor, z2: torch.Tensor | None = None) -> dict[str, float]:
    """All health metrics of one batch of embeddings, as floats for a logger (one host sync).

    Keys: ``embedding_std``, ``embedding_std_x_sqrt_dim`` (near 1 when healthy, 0 collapsed),
    ``effective_rank``, ``uniformity`` (of z1), and ``alignment`` when a second view ``z2`` of
    the same samples is given.
    """
    values = {
        "embedding_std": embedding_std(z1),
        "effective_rank": effective_rank(z1),
        "uniformity": uniformity(z1),
    }
    values["embedding_std_x_sqrt_dim"] = values["embedding_std"] * math.sqrt(z1.shape[1])
    if z2 is not None:
        values["alignment"] = alignment(z1, z2)
    numbers = torch.stack(list(values.values())).tolist()
    return dict(zip(values, numbers))
