"""core_ssl.logistic: both forms reach the regularised optimum, and they agree where they must."""

from __future__ import annotations

import pytest
import torch

from core_ssl.logistic import fit_logistic_regression, logistic_logits


def _binary_data(seed: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(80, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(80, generator=g, dtype=torch.float64) > 0).double()
    return x, y


def test_binary_fit_reaches_the_regularised_optimum():
    x, y = _binary_data()
    w, b = fit_logistic_regression(x, y, l2=0.1, max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12)
    assert w.shape == (5,) and b.shape == () and w.dtype == torch.float64
    p = torch.sigmoid(logistic_logits(x, w, b))
    # gradient of mean BCE + l2/2 |w|^2 vanishes: X^T (p - y) / N + l2 w = 0, and the bias's mean residual is 0
    assert torch.allclose(x.T @ (p - y) / 80 + 0.1 * w, torch.zeros(5, dtype=torch.float64), atol=1e-6)
    assert abs((p - y).mean().item()) < 1e-6


def test_multinomial_fit_reaches_the_regularised_optimum():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(120, 4, generator=g, dtype=torch.float64)
    y = (x[:, :3] + 0.7 * torch.randn(120, 3, generator=g, dtype=torch.float64)).argmax(1)
    W, b = fit_logistic_regression(x, y, l2=0.05, num_classes=3, max_iter=300, tolerance_grad=1e-10,
                                   tolerance_change=1e-14)
    assert W.shape == (3, 4) and b.shape == (3,)
    P = torch.softmax(logistic_logits(x, W, b), dim=1)
    residual = P - torch.nn.functional.one_hot(y, 3).double()
    # gradient of mean CE + l2/2 ||W||^2: (P - Y)^T X / N + l2 W = 0; the biases' mean residuals are 0
    assert torch.allclose(residual.T @ x / 120 + 0.05 * W, torch.zeros(3, 4, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(residual.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-6)


def test_binary_form_equals_the_two_class_multinomial_form_at_half_the_strength():
    # softmax over (w1, w2) sees only w = w1 - w2; its penalty l2/2 (|w1|^2 + |w2|^2) is smallest at
    # w1 = -w2 = w/2, i.e. l2/4 |w|^2: the binary form with strength l2/2 has the same optimum.
    x, y = _binary_data(seed=9)
    options = dict(max_iter=300, tolerance_grad=1e-10, tolerance_change=1e-14)
    w, b = fit_logistic_regression(x, y, l2=0.05, **options)
    W, c = fit_logistic_regression(x, y.long(), l2=0.1, num_classes=2, **options)
    binary = torch.sigmoid(logistic_logits(x, w, b))
    multinomial = torch.softmax(logistic_logits(x, W, c), dim=1)[:, 1]
    assert torch.allclose(binary, multinomial, atol=1e-6)
    assert torch.allclose(W[1] - W[0], w, atol=1e-5)


def test_warm_start_leaves_init_unchanged_and_needs_the_form_s_shapes():
    x, y = _binary_data()
    init = (torch.ones(5, dtype=torch.float64), torch.zeros((), dtype=torch.float64))
    before = init[0].clone()
    w, _ = fit_logistic_regression(x, y, l2=0.1, init=init)
    assert torch.equal(init[0], before) and not torch.equal(w, before)
    with pytest.raises(ValueError, match="init has shapes"):
        fit_logistic_regression(x, y.long(), l2=0.1, num_classes=2, init=init)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        fit_logistic_regression(x, y, l2=-1.0)
    with pytest.raises(ValueError, match="one label per row"):
        fit_logistic_regression(x, y[:10], l2=0.1)
