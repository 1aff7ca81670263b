"""Tests of core_ssl.heads: MLP structure, factory shapes, bilinear logits, linear probe."""

import pytest
import torch
from torch import nn

from core_ssl.heads import (
    BilinearSimilarity,
    LinearClassifier,
    MLPHead,
    byol_predictor,
    byol_projector,
    simclr_projection,
    simclrv2_projection,
)


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_single_layer_is_linear():
    head = MLPHead(16, 32, 8, num_layers=1)
    assert _count(head, nn.Linear) == 1 and _count(head, nn.BatchNorm1d) == 0
    assert head.layers[0][0].bias is not None
    x = torch.randn(5, 16)
    torch.testing.assert_close(head(x), head.layers[0][0](x))


@pytest.mark.parametrize("num_layers", [2, 3, 4])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_mlp_structure(num_layers, batch_norm):
    head = MLPHead(16, 32, 8, num_layers=num_layers, batch_norm=batch_norm)
    assert len(head.layers) == num_layers
    assert _count(head, nn.Linear) == num_layers
    assert _count(head, nn.ReLU) == num_layers - 1
    assert _count(head, nn.BatchNorm1d) == (num_layers - 1 if batch_norm else 0)
    for block in head.layers[:-1]:
        kinds = [type(m) for m in block]
        assert kinds == ([nn.Linear, nn.BatchNorm1d, nn.ReLU] if batch_norm else [nn.Linear, nn.ReLU])
        assert (block[0].bias is None) == batch_norm  # BN's shift replaces the bias
    assert head(torch.randn(6, 16)).shape == (6, 8)


def test_last_bn_has_no_affine_and_normalises_output():
    head = MLPHead(16, 32, 8, num_layers=3, last_bn=True)
    last = head.layers[-1]
    assert isinstance(last[-1], nn.BatchNorm1d) and not last[-1].affine
    out = head.train()(torch.randn(64, 16))
    torch.testing.assert_close(out.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)


def test_truncated_shares_the_first_blocks():
    head = MLPHead(16, 32, 8, num_layers=3).eval()
    first = head.truncated(1)
    assert len(first) == 1 and first[0] is head.layers[0]
    x = torch.randn(4, 16)
    torch.testing.assert_close(first(x), head.layers[0](x))
    assert first(x).shape == (4, 32)
    assert head.truncated(2)(x).shape == (4, 32)
    torch.testing.assert_close(head.truncated(0)(x), x)
    with pytest.raises(ValueError, match="k must be in 0..2"):
        head.truncated(3)


@pytest.mark.parametrize("factory, in_dim, shape, layers, last_bn", [
    (lambda: simclr_projection(512), 512, (512, 2048, 128), 2, False),
    (lambda: simclrv2_projection(64), 64, (64, 64, 128), 3, True),
    (lambda: simclrv2_projection(64, hidden=96, out=32), 64, (64, 96, 32), 3, True),
    (lambda: byol_projector(64), 64, (64, 4096, 256), 2, False),
    (lambda: byol_predictor(), 256, (256, 4096, 256), 2, False),
])
def test_factories(factory, in_dim, shape, layers, last_bn):
    head = factory()
    assert (head.in_dim, head.hidden_dim, head.out_dim) == shape
    assert head.num_layers == layers
    assert isinstance(head.layers[-1][-1], nn.BatchNorm1d) == last_bn
    assert head(torch.randn(3, in_dim)).shape == (3, shape[2])


def test_bilinear_logits_equal_explicit_loop():
    similarity = BilinearSimilarity(6, generator=torch.Generator().manual_seed(0))
    assert similarity.weight.shape == (6, 6)
    assert 0 <= similarity.weight.min() and similarity.weight.max() < 1  # torch.rand init
    anchor, positive = torch.randn(4, 6), torch.randn(5, 6)
    logits = similarity(anchor, positive)
    expected = torch.empty(4, 5)
    for i in range(4):
        for j in range(5):
            expected[i, j] = sum(anchor[i, a] * similarity.weight[a, b] * positive[j, b]
                                 for a in range(6) for b in range(6))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    logits.sum().backward()
    assert similarity.weight.grad is not None
    with pytest.raises(ValueError, match=r"shape \(B, 6\)"):
        similarity(torch.randn(4, 5), positive)


def test_linear_classifier():
    probe = LinearClassifier(32, 10)
    assert probe(torch.randn(7, 32)).shape == (7, 10)
    assert probe.bias.abs().max() == 0 and probe.weight.std() < 0.02


def test_bad_dimensions_are_rejected():
    with pytest.raises(ValueError, match="num_layers must be an integer >= 1"):
        MLPHead(16, 32, 8, num_layers=0)
    with pytest.raises(ValueError, match="in_dim"):
        MLPHead(0, 32, 8)
