"""L2-regularised logistic regression fitted full-batch with L-BFGS: the project's linear classifiers.

Two forms, chosen by ``num_classes``::

    binary       (num_classes=None)  p(y=1 | x) = sigmoid(x . w + b),      w (D,), b ()
                 minimise  1/N sum_i BCE(p(y=1 | x_i), y_i) + l2 / 2 * |w|^2           y_i in {0, 1}
    multinomial  (num_classes=C)     p(y | x) = softmax(x W^T + b),        W (C, D), b (C,)
                 minimise  1/N sum_i CE(p(. | x_i), y_i) + l2 / 2 * ||W||_F^2           y_i in 0..C-1

The bias is not regularised. Both run in the features' dtype on the features' device with
torch's L-BFGS (strong-Wolfe line search, history 20), starting from ``init`` (a warm start
along a regularisation path) or from zeros. The linear probe of ``vision_benchmarks.evaluation.protocols``
uses the multinomial form, the domain classifier of ``cut_translation`` the binary one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fit_logistic_regression", "logistic_logits"]


def logistic_logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The model's logits: ``x . w + b`` (N,) for a weight vector (binary form), ``x W^T + b``
    (N, C) for a weight matrix (multinomial form)."""
    if weight.dim() == 1:
        return features @ weight + bias
    return F.linear(features, weight, bias)


def fit_logistic_regression(features: torch.Tensor, labels: torch.Tensor, l2: float, num_classes: int | None = None,
                            init: tuple[torch.Tensor, torch.Tensor] | None = None, max_iter: int = 100,
                            tolerance_grad: float = 1e-7, tolerance_change: float = 1e-10,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` minimising the regularised loss of the module docstring.

    Args:
        features: (N, D) floating-point matrix; the fit runs in its dtype and on its device.
        labels: (N,) 0 / 1 for the binary form, integer classes for the multinomial one.
        l2: regularisation strength (>= 0) on the weights only.
        num_classes: None for the binary form, C for the multinomial one.
        init: starting ``(weight, bias)`` of the form's shapes (copied, not changed); else zeros.
        max_iter, tolerance_grad, tolerance_change: L-BFGS's iteration cap and stopping tolerances.

    Returns:
        Detached ``(weight, bias)``: ``(D,)`` and ``()`` (binary) or ``(C, D)`` and ``(C,)``.
    """
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"features must be a floating-point (N, D) matrix, got {tuple(features.shape)} "
                         f"of dtype {features.dtype}")
    if len(labels) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels; give one label per row")
    binary = num_classes is None
    shapes = ((features.shape[1],), ()) if binary else ((num_classes, features.shape[1]), (num_classes,))
    if init is None:
        init = tuple(torch.zeros(shape, dtype=features.dtype, device=features.device) for shape in shapes)
    elif tuple(init[0].shape) != shapes[0] or tuple(init[1].shape) != shapes[1]:
        raise ValueError(f"init has shapes {tuple(init[0].shape)} and {tuple(init[1].shape)}; this fit needs "
                         f"{shapes[0]} and {shapes[1]}")
    weight, bias = (t.detach().clone().requires_grad_(True) for t in init)
    targets = labels.to(features.device, features.dtype if binary else torch.long)
    loss_of = F.binary_cross_entropy_with_logits if binary else F.cross_entropy
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_of(logistic_logits(features, weight, bias), targets) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()
