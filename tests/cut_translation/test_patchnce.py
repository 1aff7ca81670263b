"""PatchNCE: the heads, the sampling and the layer-averaged loss against a loop restatement of
the formula; the model's free NCE keys against the official re-encoding; identity NCE and flip
equivariance."""

import copy
import math

import pytest
import torch

from cut_translation.model import CUTModel, CUTSettings
from cut_translation.patchnce import PatchNCEHeads, gather_patches, layer_mean_patch_nce, sample_locations


def loop_patch_nce(queries, keys, temperature):
    """-log( exp(q_bs.k_bs / t) / sum_j exp(q_bs.k_bj / t) ), q and k L2-normalised, averaged
    over images b and locations s of each layer, then over layers; written as plain loops."""
    layer_losses = []
    for q_layer, k_layer in zip(queries, keys):
        terms = []
        for b in range(q_layer.shape[0]):
            for s in range(q_layer.shape[1]):
                q = q_layer[b, s] / q_layer[b, s].norm()
                logits = [float(q @ (k_layer[b, j] / k_layer[b, j].norm())) / temperature
                          for j in range(k_layer.shape[1])]
                terms.append(-(logits[s] - math.log(sum(math.exp(x) for x in logits))))
        layer_losses.append(sum(terms) / len(terms))
    return sum(layer_losses) / len(layer_losses)


def test_layer_mean_patch_nce_matches_the_loop_restatement():
    torch.manual_seed(0)
    queries = [torch.randn(2, 7, 5, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64)]
    keys = [q + 0.5 * torch.randn_like(q) for q in queries]
    expected = loop_patch_nce(queries, keys, 0.07)
    assert layer_mean_patch_nce(queries, keys, 0.07).item() == pytest.approx(expected, rel=1e-10)
    half = loop_patch_nce([q[1:] for q in queries], [k[1:] for k in keys], 0.07)
    assert layer_mean_patch_nce(queries, keys, 0.07, rows=slice(1, None)).item() == pytest.approx(half, rel=1e-10)


def test_sampling_and_heads():
    torch.manual_seed(0)
    features = [torch.randn(2, 3, 38, 38), torch.randn(2, 16, 32, 32), torch.randn(2, 32, 4, 4)]
    locations = sample_locations(features, 256)
    assert [len(loc) for loc in locations] == [256, 256, 16]  # never more than the grid holds
    assert all(len(set(loc.tolist())) == len(loc) for loc in locations)
    patches = gather_patches(features[1], locations[1])
    s = 5
    row, col = divmod(locations[1][s].item(), 32)
    assert torch.equal(patches[1, s], features[1][1, :, row, col])
    heads = PatchNCEHeads([3, 16, 32], dim=256)
    assert [tuple(p.shape) for p in heads(features, locations)] == [(2, 256, 256), (2, 256, 256), (2, 16, 256)]
    assert sum(p.numel() for p in heads.parameters()) > 0  # built before any forward pass


def small_model(mode, **overrides):
    torch.manual_seed(0)
    settings = CUTSettings.for_mode(mode, ngf=8, ndf=8, n_blocks=2, num_patches=32, **overrides)
    return CUTModel(settings)


def images(seed, batch=1, size=32):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


def official_nce(model, source, output, seed, flip=False):
    """The official calculate_NCE_loss: queries from encoding the output again (flipped back when
    the input was mirrored), keys from encoding the un-mirrored source again, and a fresh draw of
    patch locations (after ``torch.manual_seed(seed)`` unless ``seed`` is None: then the draw
    continues the global random stream, as the official second call does)."""
    if seed is not None:
        torch.manual_seed(seed)
    queries = model.generator.encode(output)
    if flip:
        queries = [f.flip(3) for f in queries]
    keys = model.generator.encode(source)
    locations = sample_locations(keys, model.settings.num_patches)
    return layer_mean_patch_nce(model.heads(queries, locations), model.heads(keys, locations),
                                model.settings.temperature).item()


@pytest.mark.parametrize("batch", [1, 2])
def test_cut_step_reuses_the_translation_features_as_keys(batch):
    """The step's NCE terms equal the official two calculate_NCE_loss calls, each with its own
    draw of locations (x's first, then y's from the same random stream)."""
    model = small_model("cut")
    reference = copy.deepcopy(model)
    real_a, real_b = images(1, batch), images(2, batch)
    torch.manual_seed(7)
    losses = model.train_step(real_a, real_b)
    with torch.no_grad():
        fake = reference.generator(torch.cat([real_a, real_b]))
        nce_x = official_nce(reference, real_a, fake[:batch], seed=7)
        nce_y = official_nce(reference, real_b, fake[batch:], seed=None)  # the next draw, not x's again
        nce_y_shared_draw = official_nce(reference, real_b, fake[batch:], seed=7)
    assert losses["loss_nce"].item() == pytest.approx(nce_x, rel=1e-5)
    assert losses["loss_nce_idt"].item() == pytest.approx(nce_y, rel=1e-5)
    assert abs(nce_y - nce_y_shared_draw) > 1e-4  # reusing x's locations would give another value
    expected_g = losses["loss_g_gan"] + 0.5 * (losses["loss_nce"] + losses["loss_nce_idt"])
    assert losses["loss_g"].item() == pytest.approx(expected_g.item(), rel=1e-6)


def test_grouped_locations_are_independent_per_group_and_shared_within():
    features = [torch.randn(4, 3, 8, 8), torch.randn(4, 5, 4, 4)]
    torch.manual_seed(0)
    grouped = sample_locations(features, 10, groups=[2, 2])
    torch.manual_seed(0)
    first, second = sample_locations(features, 10), sample_locations(features, 10)
    for layer, locations in enumerate(grouped):
        assert locations.shape == (4, min(10, features[layer].shape[2] * features[layer].shape[3]))
        assert torch.equal(locations[0], first[layer]) and torch.equal(locations[1], first[layer])
        assert torch.equal(locations[2], second[layer]) and torch.equal(locations[3], second[layer])
        # per-image gathering equals gathering each group with its own shared set
        patches = gather_patches(features[layer], locations)
        assert torch.equal(patches[:2], gather_patches(features[layer][:2], first[layer]))
        assert torch.equal(patches[2:], gather_patches(features[layer][2:], second[layer]))
    assert not torch.equal(grouped[0][0], grouped[0][2])
    with pytest.raises(ValueError, match="summing to the batch size"):
        sample_locations(features, 10, groups=[1, 2])


def test_gan_only_step_with_lambda_nce_zero():
    """lambda_NCE = 0 (GAN loss only): no NCE is computed, the generator sees only domain A,
    G's loss is the GAN term, the heads get no gradient, and G and D both change."""
    model = small_model("cut", lambda_nce=0.0)
    seen = []
    model.generator.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    before_g = [p.detach().clone() for p in model.generator.parameters()]
    before_d = [p.detach().clone() for p in model.discriminator.parameters()]
    losses = model.train_step(images(1, 2), images(2, 2))
    assert "loss_nce" not in losses and "loss_nce_idt" not in losses and "idt_b" not in losses
    assert seen == [2]  # one translation pass of x only, no encoding of G(x) for NCE
    assert losses["loss_g"].item() == pytest.approx(losses["loss_g_gan"].item(), rel=1e-6)
    assert all(p.grad is None for p in model.heads.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before_g, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, model.discriminator.parameters()))


def test_identity_nce_runs_the_generator_on_domain_b_only_in_cut():
    for mode, expected_batch in (("cut", 4), ("fastcut", 2)):
        model = small_model(mode, flip_equivariance=False)
        seen = []
        model.generator.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
        real_a, real_b = images(1, 2), images(2, 2)
        losses = model.train_step(real_a, real_b)
        assert seen[0] == expected_batch  # the translation pass: x, plus y for identity NCE
        assert ("loss_nce_idt" in losses) == (mode == "cut") and ("idt_b" in losses) == (mode == "cut")
        if mode == "fastcut":
            assert losses["loss_g"].item() == pytest.approx(
                (losses["loss_g_gan"] + 10 * losses["loss_nce"]).item(), rel=1e-6)


def test_identity_nce_pulls_g_of_b_towards_b():
    """Training only on the identity term (no GAN, no A-to-B term) makes G(y) reproduce y's
    patches: its PatchNCE against y falls."""
    model = small_model("cut", lambda_gan=0.0)
    real_b = images(2, 1)
    with torch.no_grad():
        before = official_nce(model, real_b, model.generator(real_b), seed=3)
    for step in range(30):
        torch.manual_seed(100 + step)
        model.train_step(images(100 + step, 1), real_b)
    with torch.no_grad():
        after = official_nce(model, real_b, model.generator(real_b), seed=3)
    assert after < before - 0.5


def test_flip_equivariance_compares_the_mirrored_back_output_with_the_unmirrored_input():
    model = small_model("fastcut")
    assert model.settings.flip_equivariance and model.settings.lambda_nce == 10
    reference = copy.deepcopy(model)
    real_a, real_b = images(1, 2), images(2, 2)
    torch.manual_seed(5)
    losses = model.train_step(real_a, real_b, flip=True)
    with torch.no_grad():
        fake_of_mirrored = reference.generator(real_a.flip(3))
        expected = official_nce(reference, real_a, fake_of_mirrored, seed=5, flip=True)
        # Keys from the mirrored input instead (flipping as mere augmentation) give another loss.
        as_augmentation = official_nce(reference, real_a.flip(3), fake_of_mirrored, seed=5)
    assert losses["loss_nce"].item() == pytest.approx(expected, rel=1e-5)
    assert abs(expected - as_augmentation) > 1e-3
    # the returned translation is mirrored back into the input's frame
    assert torch.allclose(losses["fake_b"], fake_of_mirrored.flip(3), atol=1e-6)


def test_flip_coin_is_fair_and_only_in_fastcut():
    fastcut, cut = small_model("fastcut"), small_model("cut")
    coins = []
    original = fastcut.generator.forward

    def record(x, with_features=False):
        coins.append(x)
        return original(x, with_features)

    fastcut.generator.forward = record
    real_a, real_b = images(1), images(2)
    torch.manual_seed(0)
    for _ in range(12):
        fastcut.train_step(real_a, real_b)
    flipped = sum(torch.equal(x, real_a.flip(3)) for x in coins)
    assert 2 <= flipped <= 10
    assert not cut.settings.flip_equivariance
