"""Each loss against a slow, obvious restatement of its formula: values and gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from core_ssl import losses

torch.manual_seed(0)


def cos(a, b):
    return (a @ b) / (a.norm() * b.norm())


def randn(*shape, grad=True):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=grad)


def assert_same_value_and_grad(fast, slow, inputs):
    """fast(*inputs) == slow(*inputs) and so are their gradients w.r.t. every input."""
    value_fast = fast(*inputs)
    value_slow = slow(*inputs)
    torch.testing.assert_close(value_fast, value_slow, rtol=1e-10, atol=1e-10)
    grads_fast = torch.autograd.grad(value_fast, inputs, allow_unused=True)
    grads_slow = torch.autograd.grad(value_slow, inputs, allow_unused=True)
    for g_fast, g_slow in zip(grads_fast, grads_slow):
        if g_slow is None:
            assert g_fast is None or torch.count_nonzero(g_fast) == 0
        else:
            torch.testing.assert_close(g_fast, g_slow, rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# slow restatements
# ---------------------------------------------------------------------------------------------

def nt_xent_loop(z1, z2, t):
    z = torch.cat([z1, z2])
    n = len(z1)
    total = 0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        numerator = torch.exp(cos(z[i], z[j]) / t)
        denominator = sum(torch.exp(cos(z[i], z[k]) / t) for k in range(2 * n) if k != i)
        total = total - torch.log(numerator / denominator)
    return total / (2 * n)


def supcon_loop(features, labels, t):
    n, v, _ = features.shape
    views = [(s, j) for j in range(v) for s in range(n)]
    total = 0
    for s, j in views:
        zi = features[s, j]
        others = [(s2, j2) for s2, j2 in views if (s2, j2) != (s, j)]
        denominator = sum(torch.exp(cos(zi, features[s2, j2]) / t) for s2, j2 in others)
        positives = [(s2, j2) for s2, j2 in others if labels[s2] == labels[s]]
        total = total - sum(torch.log(torch.exp(cos(zi, features[s2, j2]) / t) / denominator)
                            for s2, j2 in positives) / len(positives)
    return total / len(views)


def info_nce_loop(q, k, negatives, t):
    total = 0
    for i in range(len(q)):
        positive = torch.exp(cos(q[i], k[i].detach()) / t)
        negative = sum(torch.exp(cos(q[i], m.detach()) / t) for m in negatives)
        total = total - torch.log(positive / (positive + negative))
    return total / len(q)


def nce_loop(q, k, negatives, t, c):
    """PIRL's binary NCE written out: h = e / (e + c), -log h(positive) - sum log(1 - h(negative))."""
    def h(a, b):
        e = torch.exp(cos(a, b.detach()) / t)
        return e / (e + c)
    total = 0
    for i in range(len(q)):
        total = total - torch.log(h(q[i], k[i])) - sum(torch.log(1 - h(q[i], m)) for m in negatives)
    return total / len(q)


def byol_loop(p, z):
    return sum(2 - 2 * cos(p[i], z[i].detach()) for i in range(len(p))) / len(p)


def curl_loop(anchor, positive, w):
    total = 0
    for i in range(len(anchor)):
        logits = torch.stack([anchor[i] @ w @ positive[j].detach() for j in range(len(positive))])
        total = total - (logits[i] - torch.log(torch.exp(logits).sum()))
    return total / len(anchor)


def patch_nce_loop(q, k, t, negatives):
    b, s, _ = q.shape
    total = 0
    for bi in range(b):
        for si in range(s):
            if negatives == "same_image":
                candidates = [(bi, sj) for sj in range(s)]
            else:
                candidates = [(bj, sj) for bj in range(b) for sj in range(s)]
            denominator = sum(torch.exp(cos(q[bi, si], k[bj, sj].detach()) / t) for bj, sj in candidates)
            total = total - torch.log(torch.exp(cos(q[bi, si], k[bi, si].detach()) / t) / denominator)
    return total / (b * s)


# ---------------------------------------------------------------------------------------------
# value and gradient checks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_formula(t):
    z1, z2 = randn(6, 5), randn(6, 5)
    assert_same_value_and_grad(lambda a, b: losses.nt_xent(a, b, t), lambda a, b: nt_xent_loop(a, b, t), (z1, z2))


def test_supcon_with_labels_matches_formula():
    features = randn(6, 3, 4)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    assert_same_value_and_grad(lambda f: losses.supcon(f, labels, 0.1), lambda f: supcon_loop(f, labels, 0.1), (features,))


def test_supcon_without_labels_equals_nt_xent():
    z1, z2 = randn(8, 16, grad=False), randn(8, 16, grad=False)
    torch.testing.assert_close(losses.supcon(torch.stack([z1, z2], 1), None, 0.3), losses.nt_xent(z1, z2, 0.3))
    # and with all-distinct labels
    torch.testing.assert_close(losses.supcon(torch.stack([z1, z2], 1), torch.arange(8) * 7, 0.3),
                               losses.nt_xent(z1, z2, 0.3))


def test_info_nce_matches_formula_and_ignores_key_gradients():
    q, k, negatives = randn(5, 4), randn(5, 4), randn(7, 4)
    assert_same_value_and_grad(lambda a, b, c: losses.info_nce(a, b, c, 0.2),
                               lambda a, b, c: info_nce_loop(a, b, c, 0.2), (q, k, negatives))
    losses.info_nce(q, k, negatives, 0.2).backward()
    assert k.grad is None and negatives.grad is None


@pytest.mark.parametrize("c", [7 / 50000, 0.5, 30.0])  # K / |D| (the paper's Z = 1), larger noise masses
def test_nce_matches_formula_and_ignores_key_gradients(c):
    q, k, negatives = randn(5, 4), randn(5, 4), randn(7, 4)
    assert_same_value_and_grad(lambda a, b, m: losses.nce(a, b, m, 0.2, c),
                               lambda a, b, m: nce_loop(a, b, m, 0.2, c), (q, k, negatives))
    as_tensor = losses.nce(q, k, negatives, 0.2, torch.tensor(c, dtype=torch.float64))
    torch.testing.assert_close(as_tensor, losses.nce(q, k, negatives, 0.2, c))
    as_tensor.backward()
    assert k.grad is None and negatives.grad is None


def test_nce_is_finite_at_small_temperature_and_refuses_a_non_positive_noise_mass():
    q = torch.eye(8)[:1]
    loss = losses.nce(q, q, -q.expand(3, -1), 0.01, 1e-3)  # exp(+-100): a naive float32 form overflows
    assert torch.isfinite(loss) and loss < 1e-30  # the positive at s = 1, the negatives at s = -1
    q = randn(3, 8, grad=False)
    with pytest.raises(ValueError, match="noise_mass"):
        losses.nce(q, q, q, 0.07, 0.0)


def test_nce_noise_mass_is_k_times_the_mean_exponentiated_similarity():
    q, negatives = randn(5, 4, grad=False), randn(7, 4, grad=False)
    expected = 7 * sum(torch.exp(cos(a, m) / 0.1) for a in q for m in negatives) / 35
    torch.testing.assert_close(losses.nce_noise_mass(q, negatives, 0.1).double(), expected, rtol=1e-6, atol=0)


def test_byol_matches_formula_and_equals_normalised_mse():
    p, z = randn(6, 8), randn(6, 8)
    assert_same_value_and_grad(losses.byol_loss, byol_loop, (p, z))
    expected = ((F.normalize(p, dim=1) - F.normalize(z, dim=1)) ** 2).sum(1).mean()
    torch.testing.assert_close(losses.byol_loss(p, z), expected)
    assert losses.byol_loss(z, z).abs() < 1e-12


def test_curl_bilinear_matches_formula():
    anchor, positive, w = randn(6, 5), randn(6, 5), randn(5, 5)
    assert_same_value_and_grad(losses.curl_bilinear, curl_loop, (anchor, positive, w))


@pytest.mark.parametrize("negatives", ["same_image", "batch"])
def test_patch_nce_matches_formula(negatives):
    q, k = randn(2, 5, 4), randn(2, 5, 4)
    assert_same_value_and_grad(lambda a, b: losses.patch_nce(a, b, 0.07, negatives),
                               lambda a, b: patch_nce_loop(a, b, 0.07, negatives), (q, k))


def test_rotation_and_jigsaw_are_cross_entropy():
    logits, target = randn(8, 4), torch.randint(4, (8,))
    slow = -sum(torch.log_softmax(logits[i], 0)[target[i]] for i in range(8)) / 8
    torch.testing.assert_close(losses.rotation_loss(logits, target), slow)
    logits = randn(8, 100)
    target = torch.randint(100, (8,))
    slow = -sum(logits[i, target[i]] - torch.logsumexp(logits[i], 0) for i in range(8)) / 8
    torch.testing.assert_close(losses.jigsaw_loss(logits, target), slow)


def test_masked_reconstruction_only_counts_hidden_pixels():
    prediction, target = randn(2, 3, 4, 4), randn(2, 3, 4, 4, grad=False)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, 1:3, 1:3] = True

    def slow(p):
        errors = [(p[b, c, h, w] - target[b, c, h, w]) ** 2
                  for b in range(2) for c in range(3) for h in range(4) for w in range(4) if mask[b, 0, h, w]]
        return sum(errors) / len(errors)

    assert_same_value_and_grad(lambda p: losses.masked_reconstruction(p, target, mask), slow, (prediction,))
    # changing a visible pixel changes nothing
    changed = prediction.detach().clone()
    changed[:, :, 0, 0] += 100
    torch.testing.assert_close(losses.masked_reconstruction(changed, target, mask),
                               losses.masked_reconstruction(prediction.detach(), target, mask))


def test_distillation_loss_is_soft_cross_entropy():
    student, teacher = randn(4, 10), randn(4, 10)
    t = 2.0
    slow = -sum((torch.softmax(teacher[i] / t, 0) * torch.log_softmax(student[i] / t, 0)).sum() for i in range(4)) / 4
    torch.testing.assert_close(losses.distillation_loss(student, teacher, t), slow)


# ---------------------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------------------

def test_nt_xent_is_scale_invariant_and_symmetric():
    z1, z2 = randn(8, 16, grad=False), randn(8, 16, grad=False)
    torch.testing.assert_close(losses.nt_xent(z1, z2), losses.nt_xent(3 * z1, 0.5 * z2))
    torch.testing.assert_close(losses.nt_xent(z1, z2), losses.nt_xent(z2, z1))


def test_nt_xent_bounds():
    """Perfectly aligned, orthogonal positives give a loss below log(2N-1); random ones near it."""
    n = 8
    z = torch.eye(16, dtype=torch.float64)[:n]
    assert losses.nt_xent(z, z, 0.1) < 0.01
    random_loss = losses.nt_xent(randn(256, 128, grad=False), randn(256, 128, grad=False), 1.0)
    assert abs(random_loss - math.log(2 * 256 - 1)) < 0.1


def test_losses_are_float32_under_bf16_autocast():
    z1, z2 = torch.randn(16, 32), torch.randn(16, 32)
    reference = losses.nt_xent(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = losses.nt_xent(z1.bfloat16(), z2.bfloat16())
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference, rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.0, -0.5])
def test_non_positive_temperature_is_refused(t):
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losses.nt_xent(z, z, t)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losses.info_nce(z, z, z, t)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losses.patch_nce(z[None], z[None], t)


def test_wrong_shapes_name_the_problem():
    with pytest.raises(ValueError, match=r"must have the same shape.*\(4, 8\).*\(5, 8\)"):
        losses.nt_xent(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="flatten the encoder output"):
        losses.nt_xent(torch.randn(4, 8, 2, 2), torch.randn(4, 8, 2, 2))
    with pytest.raises(ValueError, match="queue / memory bank"):
        losses.info_nce(torch.randn(4, 8), torch.randn(4, 8), torch.randn(10, 16))
    with pytest.raises(ValueError, match="bilinear weight"):
        losses.curl_bilinear(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 4))
    with pytest.raises(ValueError, match="labels must have shape"):
        losses.supcon(torch.randn(4, 2, 8), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 views"):
        losses.supcon(torch.randn(4, 1, 8))
    with pytest.raises(ValueError, match="'same_image' or 'batch'"):
        losses.patch_nce(torch.randn(1, 4, 8), torch.randn(1, 4, 8), negatives="other")
    with pytest.raises(ValueError, match="hides no pixel"):
        losses.masked_reconstruction(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
