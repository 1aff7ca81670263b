"""Tests of core_ssl.monitor against known values and slow, obvious restatements."""

import math

import pytest
import torch
import torch.nn.functional as F

from core_ssl.monitor import (
    alignment,
    effective_rank,
    embedding_std,
    knn_accuracy,
    knn_predict,
    representation_summary,
    uniformity,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orthonormal_columns(rows: int, cols: int, g: torch.Generator, centred: bool) -> torch.Tensor:
    a = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    if centred:
        a = a - a.mean(0)
    return torch.linalg.qr(a).Q


def test_effective_rank_of_equal_spectrum_rank_r_matrix_is_r():
    g = _generator()
    for r in (1, 3, 7):
        # Centred orthonormal left factor, so centring keeps the r equal singular values.
        z = _orthonormal_columns(300, r, g, centred=True) @ _orthonormal_columns(40, r, g, False).T
        assert effective_rank(z).item() == pytest.approx(r, rel=1e-4)


def test_effective_rank_of_random_rank_r_matrix_is_about_r():
    g = _generator(1)
    z = torch.randn(500, 5, generator=g) @ torch.randn(5, 64, generator=g)
    assert 4.5 < effective_rank(z).item() <= 5 + 1e-4


def test_effective_rank_of_isotropic_gaussian_is_close_to_d():
    z = torch.randn(2000, 32, generator=_generator(2))
    assert 0.95 * 32 < effective_rank(z).item() <= 32


def test_effective_rank_bounds_and_collapse():
    g = _generator(3)
    for n, d in [(5, 20), (20, 5), (50, 50)]:
        value = effective_rank(torch.randn(n, d, generator=g) * torch.rand(d, generator=g) * 10)
        assert 1 - 1e-5 <= value.item() <= min(n, d) + 1e-4
    collapsed = torch.randn(1, 16, generator=g).expand(100, 16)
    assert effective_rank(collapsed).item() == pytest.approx(1.0)


def test_embedding_std_collapsed_is_zero_and_random_is_inverse_sqrt_d():
    g = _generator(4)
    point = torch.randn(1, 128, generator=g)
    collapsed = point + 1e-4 * torch.randn(1000, 128, generator=g)
    assert embedding_std(collapsed).item() < 1e-3
    d = 128
    healthy = torch.randn(4000, d, generator=g)
    assert embedding_std(healthy).item() * math.sqrt(d) == pytest.approx(1.0, abs=0.03)
    # Only directions count: scaling rows changes nothing.
    scales = torch.rand(4000, 1, generator=g) + 0.5
    torch.testing.assert_close(embedding_std(healthy * scales), embedding_std(healthy))


def test_alignment_identical_views_is_zero_and_matches_definition():
    g = _generator(5)
    z1 = torch.randn(50, 8, generator=g)
    assert alignment(z1, 3 * z1).item() == pytest.approx(0.0, abs=1e-6)
    z2 = torch.randn(50, 8, generator=g)
    u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    for alpha in (1.0, 2.0):
        expected = sum((u1[i] - u2[i]).norm().item() ** alpha for i in range(50)) / 50
        assert alignment(z1, z2, alpha=alpha).item() == pytest.approx(expected, rel=1e-5)


def test_uniformity_matches_pairwise_loop():
    g = _generator(6)
    z = torch.randn(30, 5, generator=g)
    u = F.normalize(z, dim=1)
    for t in (2.0, 0.5):
        terms = [math.exp(-t * (u[i] - u[j]).norm().item() ** 2)
                 for i in range(30) for j in range(i + 1, 30)]
        expected = math.log(sum(terms) / len(terms))
        assert uniformity(z, t=t).item() == pytest.approx(expected, rel=1e-5)
    assert uniformity(z[:1].expand(10, 5)).item() == pytest.approx(0.0, abs=1e-6)


def test_metrics_compute_in_float32_without_gradient():
    z = torch.randn(64, 16, generator=_generator(7)).bfloat16().requires_grad_()
    for value in (embedding_std(z), effective_rank(z), uniformity(z), alignment(z, z)):
        assert value.dtype == torch.float32 and not value.requires_grad


def _slow_knn_scores(train, train_labels, test, num_classes, k, temperature):
    scores = torch.zeros(len(test), num_classes)
    for i in range(len(test)):
        sims = [F.cosine_similarity(test[i], train[j], dim=0).item() for j in range(len(train))]
        nearest = sorted(range(len(train)), key=lambda j: -sims[j])[:k]
        for j in nearest:
            scores[i, train_labels[j]] += math.exp(sims[j] / temperature)
    return scores


def test_knn_matches_slow_weighted_vote():
    g = _generator(8)
    train, test = torch.randn(40, 6, generator=g), torch.randn(11, 6, generator=g)
    train_labels = torch.randint(0, 4, (40,), generator=g)
    for k, temperature in [(5, 0.1), (12, 0.5), (100, 1.0)]:  # k > N_train is capped
        expected = _slow_knn_scores(train, train_labels, test, 4, k, temperature)
        scores = knn_predict(train, train_labels, test, 4, k=k, temperature=temperature,
                             chunk_size=3, return_scores=True)
        torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)
        labels = knn_predict(train, train_labels, test, 4, k=k, temperature=temperature)
        assert torch.equal(labels, expected.argmax(1))


def test_knn_is_perfect_on_separated_clusters():
    g = _generator(9)
    num_classes, d = 5, 16
    centres = 10 * torch.eye(num_classes, d)

    def sample(n):
        labels = torch.randint(0, num_classes, (n,), generator=g)
        return centres[labels] + torch.randn(n, d, generator=g), labels

    train, train_labels = sample(500)
    test, test_labels = sample(200)
    assert knn_accuracy(train, train_labels, test, test_labels, num_classes, k=20) == 1.0


def test_knn_is_about_chance_on_random_labels():
    g = _generator(10)
    train, train_labels = torch.randn(2000, 32, generator=g), torch.randint(0, 10, (2000,), generator=g)
    test, test_labels = torch.randn(1000, 32, generator=g), torch.randint(0, 10, (1000,), generator=g)
    accuracy = knn_accuracy(train, train_labels, test, test_labels, 10, chunk_size=128)
    assert 0.05 < accuracy < 0.16


def test_knn_rejects_bad_input():
    train, labels = torch.randn(10, 4), torch.arange(10) % 3  # label 2 is present: out of range for 2 classes
    with pytest.raises(ValueError, match="lie in 0..1"):
        knn_predict(train, labels, torch.randn(2, 4), num_classes=2)
    with pytest.raises(ValueError, match="differ in dimension"):
        knn_predict(train, labels, torch.randn(2, 5), num_classes=3)
    with pytest.raises(ValueError, match="integer labels"):
        knn_predict(train, labels.float(), torch.randn(2, 4), num_classes=3)
    with pytest.raises(ValueError, match="temperature > 0"):
        knn_predict(train, labels, torch.randn(2, 4), num_classes=3, temperature=0)


def test_representation_summary():
    g = _generator(11)
    z1 = torch.randn(256, 16, generator=g)
    summary = representation_summary(z1)
    assert set(summary) == {"embedding_std", "embedding_std_x_sqrt_dim", "effective_rank",
                            "uniformity"}
    assert all(isinstance(v, float) for v in summary.values())
    assert summary["effective_rank"] == pytest.approx(effective_rank(z1).item())
    assert summary["embedding_std_x_sqrt_dim"] == pytest.approx(summary["embedding_std"] * 4)
    with_pair = representation_summary(z1, z1 + 0.01 * torch.randn(256, 16, generator=g))
    assert 0 < with_pair["alignment"] < 1e-2
