"""The self-supervised loss family, as pure functions.

Every contrastive loss here is one cross-entropy over similarity logits, differing only in
which pairs are positives and where the negatives come from:

    loss_i = -log( exp(s(q_i, k_i+) / t) / sum_{k in candidates(i)} exp(s(q_i, k) / t) )

=============  ===================  ===================================  ==================
loss           similarity s         candidates of anchor i               used by
=============  ===================  ===================================  ==================
nt_xent        cosine               the other 2N - 1 views in the batch  SimCLR
info_nce       cosine               its key + an external queue / bank   MoCo, PIRL (option)
supcon         cosine               all other views; every same-label    SupCon
                                    view is a positive
curl_bilinear  q^T W k (learned W)  every key in the batch               CURL
patch_nce      cosine               the other patches of the same image  CUT / FastCUT
                                    (or of the whole batch)
=============  ===================  ===================================  ==================

PIRL's default loss, :func:`nce`, is the binary (logistic) form instead: the positive and each
negative are classified separately as data or noise, with no softmax over the candidates.

:func:`contrastive_cross_entropy` is the shared core; :func:`nt_xent` is :func:`supcon` with
each image its own class. All losses upcast fp16 / bf16 inputs to float32 (so they are safe inside
bf16 autocast; fp64 stays fp64), and check their inputs' shapes and temperature.

Losses that need state (a queue, a memory bank, a learned W) get it passed in: the state
itself lives in :mod:`core_ssl.momentum` and :mod:`core_ssl.heads`.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from core_ssl import distributed

__all__ = [
    "contrastive_cross_entropy",
    "nt_xent",
    "info_nce",
    "nce",
    "nce_noise_mass",
    "supcon",
    "byol_loss",
    "curl_bilinear",
    "patch_nce",
    "rotation_loss",
    "jigsaw_loss",
    "masked_reconstruction",
    "distillation_loss",
]


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------

def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; typical values are 0.07 (MoCo, CUT), "
            "0.1 (SupCon), 0.2 (MoCo v2) and 0.5 (SimCLR on CIFAR)."
        )


def _check_matrix(name: str, x: torch.Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(
            f"{name} must be a (batch, dim) matrix of embeddings, got shape {tuple(x.shape)}; "
            "flatten the encoder output first (e.g. x.flatten(1))."
        )


def _check_same_shape(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; they are two views of the same samples, row i with row i."
        )


def _outside_autocast(loss):
    """Run ``loss`` with autocast off, so its matmuls and softmax are not done in bf16."""
    @functools.wraps(loss)
    def wrapper(first: torch.Tensor, *args, **kwargs):
        with torch.autocast(device_type=first.device.type, enabled=False):
            return loss(first, *args, **kwargs)
    return wrapper


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16 / bf16 to fp32; fp32 and fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(_upcast(x), dim=-1)


# ---------------------------------------------------------------------------------------------
# the shared core
# ---------------------------------------------------------------------------------------------

def contrastive_cross_entropy(logits: torch.Tensor, positive_index: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-log softmax(logits)[i, positive_index[i]]``.

    ``logits`` (N, M) holds the (already temperature-scaled) similarity of each anchor to each
    of its M candidates, one of which is its positive. Entries to exclude from the denominator
    are ``-inf``. The row max is subtracted by ``cross_entropy`` itself, so no separate
    stabilisation is needed.
    """
    return F.cross_entropy(_upcast(logits), positive_index)


# ---------------------------------------------------------------------------------------------
# SimCLR / SupCon
# ---------------------------------------------------------------------------------------------

@_outside_autocast
def supcon(
    features: torch.Tensor,
    labels: torch.Tensor | None = None,
    temperature: float = 0.1,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out), and SimCLR without labels.

    ``features`` is (N, V, D): V views of N samples. With z the L2-normalised views,
    A(i) all views but i and P(i) the views in A(i) whose sample has the label of i's::

        L = 1 / |I| * sum_i  -1/|P(i)| * sum_{p in P(i)} log( exp(z_i . z_p / t)
                                                      / sum_{a in A(i)} exp(z_i . z_a / t) )

    ``labels`` is (N,); ``None`` makes every sample its own class, so P(i) is the other views
    of the same image and, with V = 2, the loss equals :func:`nt_xent`.

    With ``gather_distributed`` the anchors are this process's views and the candidates the
    views of all processes (:func:`core_ssl.distributed.gather`); averaging the per-process
    losses then equals the loss of one process holding the whole batch.
    """
    if features.dim() != 3:
        raise ValueError(
            f"features must have shape (batch, views, dim), got {tuple(features.shape)}; "
            "stack the views with torch.stack([z1, z2], dim=1)."
        )
    _check_temperature(temperature)
    n, v, _ = features.shape
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match features, got {tuple(labels.shape)}")

    rank_offset = distributed.rank() * n if gather_distributed else 0
    if labels is None:
        labels = torch.arange(n, device=features.device) + rank_offset
    all_features = distributed.gather(features) if gather_distributed else features
    all_labels = distributed.gather(labels) if gather_distributed else labels
    n_all = all_features.shape[0]

    # Views ordered view-major: row (view j, sample s) sits at j * n + s.
    anchors = _normalize(features.transpose(0, 1).reshape(v * n, -1))
    candidates = _normalize(all_features.transpose(0, 1).reshape(v * n_all, -1))
    anchor_labels = labels.repeat(v)
    candidate_labels = all_labels.repeat(v)

    logits = anchors @ candidates.T / temperature
    sample = torch.arange(n, device=features.device) + rank_offset
    anchor_index = (torch.arange(v, device=features.device)[:, None] * n_all + sample).reshape(-1)
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[torch.arange(v * n, device=features.device), anchor_index] = True

    logits = logits.masked_fill(is_self, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (anchor_labels[:, None] == candidate_labels[None, :]) & ~is_self
    num_positive = positive.sum(1)
    if bool((num_positive == 0).any()):
        raise ValueError("an anchor has no positive: use at least 2 views per sample")
    mean_log_prob_pos = log_prob.masked_fill(~positive, 0.0).sum(1) / num_positive
    return -mean_log_prob_pos.mean()


@_outside_autocast
def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """NT-Xent, SimCLR's normalised temperature-scaled cross-entropy over 2N views.

    For the 2N L2-normalised views (z1_i and z2_i are the two views of image i), sim the
    cosine similarity and j(i) the other view of i::

        l(i) = -log( exp(sim(z_i, z_j(i)) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )
        L    = 1/(2N) * sum_i l(i)

    Args:
        z1, z2: (N, D) projections of the two views.
        temperature: t > 0 (0.5 in the CIFAR-10 recipe, 0.1 on ImageNet).
        gather_distributed: use the views of every process as candidates (see :func:`supcon`).
    """
    _check_matrix("z1", z1)
    _check_same_shape("z1", z1, "z2", z2)
    return supcon(torch.stack([z1, z2], dim=1), None, temperature, gather_distributed)


# ---------------------------------------------------------------------------------------------
# MoCo / PIRL
# ---------------------------------------------------------------------------------------------

@_outside_autocast
def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 0.07,
) -> torch.Tensor:
    """InfoNCE with external negatives, MoCo's loss (and PIRL's with a memory bank).

    With q, k and n_j L2-normalised (the keys and negatives are treated as constants)::

        L = 1/N * sum_i -log( exp(q_i . k_i / t)
                              / (exp(q_i . k_i / t) + sum_j exp(q_i . n_j / t)) )

    Args:
        query: (N, D) from the query encoder.
        key: (N, D) positives, e.g. from the momentum encoder; gradients are not taken.
        negatives: (K, D) shared negatives (a queue of past keys or memory-bank rows).
        temperature: t > 0 (0.07 in MoCo v1, 0.2 in MoCo v2).
    """
    _check_external_negatives(query, key, negatives)
    _check_temperature(temperature)
    q = _normalize(query)
    k = _normalize(key.detach())
    negatives = _normalize(negatives.detach())
    positive_logit = (q * k).sum(1, keepdim=True)
    logits = torch.cat([positive_logit, q @ negatives.T], dim=1) / temperature
    return contrastive_cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def _check_external_negatives(query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor) -> None:
    _check_matrix("query", query)
    _check_same_shape("query", query, "key", key)
    _check_matrix("negatives", negatives)
    if negatives.shape[1] != query.shape[1]:
        raise ValueError(
            f"negatives have dimension {negatives.shape[1]} but queries {query.shape[1]}; "
            "the queue / memory bank must be built with the projection's output dimension."
        )


@_outside_autocast
def nce(
    query: torch.Tensor,
    key: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 0.07,
    noise_mass: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Binary noise-contrastive estimation with external negatives (PIRL, InstDisc).

    Each pair is classified as data or noise; with q, k, n_j L2-normalised (keys and negatives
    treated as constants), s = cosine and c = ``noise_mass``::

        h(q, k) = exp(s(q, k) / t) / (exp(s(q, k) / t) + c)
        L = 1/N * sum_i [ -log h(q_i, k_i) - sum_j log(1 - h(q_i, n_j)) ]

    c is K * P_noise * Z: K negatives drawn uniformly (P_noise = 1/|D| for a dataset D) and Z
    the normaliser of the model's exp(s/t). Misra & van der Maaten (2020, eq. 3) write it with
    Z = 1, c = K / |D|; InstDisc's and VISSL's implementations (the latter used for PIRL)
    estimate Z = |D| * mean exp(s/t) once, which gives c = K * mean exp(s/t)
    (:func:`nce_noise_mass`). Computed in log space: -log h = softplus(log c - s/t) and
    -log(1 - h) = softplus(s/t - log c), so no exp overflows at small t.

    Args:
        query: (N, D) the representations being trained.
        key: (N, D) the positives (PIRL: the memory-bank rows of the images); no gradient.
        negatives: (K, D) shared negatives (memory-bank rows); no gradient.
        temperature: t > 0 (0.07 in PIRL).
        noise_mass: c > 0, a float or a 0-d tensor.
    """
    _check_external_negatives(query, key, negatives)
    _check_temperature(temperature)
    q = _normalize(query)
    k = _normalize(key.detach())
    negatives = _normalize(negatives.detach())
    if isinstance(noise_mass, torch.Tensor):  # e.g. a buffer on the GPU: no host read, no check
        log_c = noise_mass.detach().to(device=q.device, dtype=q.dtype).log()
    elif noise_mass > 0:
        log_c = math.log(noise_mass)
    else:
        raise ValueError(f"noise_mass must be > 0 (K x noise probability x normaliser), got {noise_mass}")
    positive = (q * k).sum(1) / temperature
    negative = (q @ negatives.T) / temperature
    per_query = F.softplus(log_c - positive) + F.softplus(negative - log_c).sum(1)
    return per_query.mean()


@torch.no_grad()
@_outside_autocast
def nce_noise_mass(query: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """InstDisc's estimate of :func:`nce`'s noise mass: ``c = K * mean_{i,j} exp(q_i . n_j / t)``
    over L2-normalised rows (a 0-d float32 tensor, no gradient). Computed once, on the first
    batch, and kept fixed afterwards (as InstDisc and VISSL do)."""
    _check_matrix("query", query)
    _check_matrix("negatives", negatives)
    _check_temperature(temperature)
    similarities = _normalize(query) @ _normalize(negatives).T / temperature
    return (negatives.shape[0] * similarities.float().exp().mean()).float()


# ---------------------------------------------------------------------------------------------
# BYOL
# ---------------------------------------------------------------------------------------------

@_outside_autocast
def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss: mean over the batch of ``2 - 2 cos(p_i, z'_i)``.

    Equal to ``|| p/|p| - z'/|z'| ||^2``. ``target`` (the EMA network's projection) is
    detached. Symmetrise by calling it twice with the views swapped and adding.
    """
    _check_matrix("prediction", prediction)
    _check_same_shape("prediction", prediction, "target", target)
    cosine = (_normalize(prediction) * _normalize(target.detach())).sum(1)
    return (2 - 2 * cosine).mean()


# ---------------------------------------------------------------------------------------------
# CURL
# ---------------------------------------------------------------------------------------------

@_outside_autocast
def curl_bilinear(anchor: torch.Tensor, positive: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CURL's contrastive loss with a learned bilinear similarity (Srinivas et al. 2020).

    With q = anchor (query encoder), k = positive (momentum key encoder, detached) and the
    learned (D, D) matrix W::

        logits_ij = q_i^T W k_j        (every other key in the batch is a negative)
        L = 1/N * sum_i -log( exp(logits_ii) / sum_j exp(logits_ij) )

    No normalisation and no temperature, as in the paper; the official code subtracts each
    row's max before the softmax, which ``cross_entropy`` does internally.
    """
    _check_matrix("anchor", anchor)
    _check_same_shape("anchor", anchor, "positive", positive)
    d = anchor.shape[1]
    if weight.shape != (d, d):
        raise ValueError(f"the bilinear weight must be ({d}, {d}) for {d}-d features, got {tuple(weight.shape)}")
    logits = _upcast(anchor) @ _upcast(weight) @ _upcast(positive.detach()).T
    return contrastive_cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))


# ---------------------------------------------------------------------------------------------
# CUT
# ---------------------------------------------------------------------------------------------

@_outside_autocast
def patch_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    temperature: float = 0.07,
    negatives: str = "same_image",
) -> torch.Tensor:
    """PatchNCE (Park et al. 2020): per-location positives in feature space.

    ``query`` (B, S, D) are features of S sampled locations of each output image, ``key`` the
    features of the input image at the same S locations (detached, as in CUT). With q, k
    L2-normalised and the candidates of (b, s) being the keys of the same image ("same_image",
    CUT's default) or of every image in the batch ("batch")::

        L = mean_{b,s} -log( exp(q_bs . k_bs / t) / sum_{k in candidates(b,s)} exp(q_bs . k / t) )
    """
    if query.dim() != 3:
        raise ValueError(
            f"query must have shape (batch, locations, dim), got {tuple(query.shape)}; "
            "sample patches per image before calling patch_nce."
        )
    _check_same_shape("query", query, "key", key)
    _check_temperature(temperature)
    b, s, d = query.shape
    q = _normalize(query)
    k = _normalize(key.detach())
    if negatives == "same_image":
        logits = torch.bmm(q, k.transpose(1, 2)).reshape(b * s, s)
        positive_index = torch.arange(s, device=q.device).repeat(b)
    elif negatives == "batch":
        logits = q.reshape(b * s, d) @ k.reshape(b * s, d).T
        positive_index = torch.arange(b * s, device=q.device)
    else:
        raise ValueError(f"negatives must be 'same_image' or 'batch', got {negatives!r}")
    return contrastive_cross_entropy(logits / temperature, positive_index)


# ---------------------------------------------------------------------------------------------
# pretext tasks and distillation
# ---------------------------------------------------------------------------------------------

@_outside_autocast
def rotation_loss(logits: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """RotNet: 4-way cross-entropy ``-1/N sum_i log softmax(logits_i)[r_i]``, r_i in {0,1,2,3}
    the number of quarter turns applied to image i (see ``core_ssl.augment.rotate_batch``)."""
    if logits.dim() != 2 or logits.shape[1] != 4:
        raise ValueError(f"rotation logits must be (N, 4), got {tuple(logits.shape)}")
    return F.cross_entropy(_upcast(logits), rotation)


@_outside_autocast
def jigsaw_loss(logits: torch.Tensor, permutation_index: torch.Tensor) -> torch.Tensor:
    """Jigsaw: cross-entropy ``-1/N sum_i log softmax(logits_i)[p_i]`` over the permutation
    set, p_i the index of the permutation that shuffled image i's tiles."""
    if logits.dim() != 2:
        raise ValueError(f"jigsaw logits must be (N, num_permutations), got {tuple(logits.shape)}")
    return F.cross_entropy(_upcast(logits), permutation_index)


@_outside_autocast
def masked_reconstruction(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Context Encoder's L2 loss on the hidden region only.

    With M the binary mask (1 where pixels were hidden), broadcast over channels::

        L = sum_{b,c,h,w} M (x_hat - x)^2 / (C * sum_{b,h,w} M)

    i.e. the mean squared error over hidden pixels. ``mask`` is (B, 1, H, W) or (B, C, H, W).
    """
    _check_same_shape("prediction", prediction, "target", target)
    if mask.dim() != 4 or mask.shape[0] != target.shape[0] or mask.shape[2:] != target.shape[2:]:
        raise ValueError(
            f"mask must be (B, 1, H, W) matching the images {tuple(target.shape)}, got {tuple(mask.shape)}"
        )
    mask = mask.to(_upcast(prediction).dtype).expand_as(target)
    hidden = mask.sum()
    if hidden == 0:
        raise ValueError("the mask hides no pixel: there is nothing to reconstruct")
    return (mask * (_upcast(prediction) - _upcast(target)) ** 2).sum() / hidden


@_outside_autocast
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """SimCLRv2 self-distillation: cross-entropy between the teacher's and the student's
    softmax at temperature t, ``-1/N sum_i sum_c softmax(teacher_i/t)_c log softmax(student_i/t)_c``
    (the teacher is detached)."""
    _check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    _check_temperature(temperature)
    teacher = F.softmax(_upcast(teacher_logits.detach()) / temperature, dim=1)
    return -(teacher * F.log_softmax(_upcast(student_logits) / temperature, dim=1)).sum(1).mean()
