"""Tests of core_ssl.augment: reproducibility, invariants, and slow loop references."""

from __future__ import annotations

import io
import itertools
import zipfile

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from core_ssl import augment as A
from core_ssl.augment import (
    SimCLRAugment,
    apply_mask,
    byol_augment_pair,
    center_crop,
    center_square_mask,
    color_jitter,
    gaussian_blur,
    jigsaw_tiles,
    maximal_hamming_permutations,
    mocov1_augment,
    mocov2_augment,
    random_block_mask,
    random_crop,
    random_erasing,
    random_shift,
    resized_crop,
    rotate_batch,
    sample_crop_offsets,
    sample_resized_crop_boxes,
    rgb_to_gray,
    shift_hue,
    simclr_augment,
    standardize_images,
)
from tests.devices import needs_cuda

OFF = dict(crop=False, flip_p=0.0, color_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=gen(123))


# ---------------------------------------------------------------------------- image policies


@pytest.mark.parametrize("factory", [
    lambda: simclr_augment(32),
    lambda: simclr_augment(24, color_strength=1.0, blur=True),
    lambda: mocov1_augment(32),
    lambda: mocov2_augment(32),
    lambda: byol_augment_pair(32)[0],
    lambda: byol_augment_pair(32)[1],
])
def test_policies_seeded_shape_dtype_range(factory, images):
    aug = factory()
    out1 = aug(images, gen(1))
    out2 = aug(images, gen(1))
    out3 = aug(images, gen(2))
    size = aug.size
    assert out1.shape == (8, 3, *size) and out1.dtype == torch.float32
    assert torch.equal(out1, out2)
    assert not torch.allclose(out1, out3)
    assert out1.min() >= 0.0 and out1.max() <= 1.0


def test_float_input_same_as_uint8_and_input_untouched(images):
    aug = simclr_augment(32, blur=True)
    as_float = images.float() / 255
    kept = as_float.clone()
    assert torch.allclose(aug(images, gen(5)), aug(as_float, gen(5)), atol=1e-6)
    assert torch.equal(as_float, kept)


def test_everything_off_returns_input_as_float(images):
    out = SimCLRAugment(32, **OFF)(images, gen(0))
    assert out.dtype == torch.float32
    assert torch.equal(out, images.float() / 255)


def test_normalisation(images):
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = SimCLRAugment(32, mean=mean, std=std, **OFF)(images)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_flip_is_a_mirror_image(images):
    x = images.float() / 255
    settings = {**OFF, "flip_p": 1.0}
    assert torch.equal(SimCLRAugment(32, **settings)(x), x.flip(3))
    # through the crop path (full-image box, flip folded into the affine matrix)
    cropped = resized_crop(x, torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(8, 4), 32,
                           flip=torch.ones(8, dtype=torch.bool))
    assert torch.allclose(cropped, x.flip(3), atol=1e-5)


def test_flip_p_half_mirrors_some_samples_only(images):
    x = images.float() / 255
    out = SimCLRAugment(32, **{**OFF, "flip_p": 0.5})(x, gen(3))
    mirrored = [torch.equal(out[i], x[i].flip(2)) for i in range(8)]
    kept = [torch.equal(out[i], x[i]) for i in range(8)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_grayscale_has_equal_channels(images):
    out = SimCLRAugment(32, **{**OFF, "grayscale_p": 1.0})(images)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    expected = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).float() / 255
    assert torch.allclose(out[:, 0], expected, atol=1e-5)


def test_mocov1_policy_is_the_official_recipe():
    aug = mocov1_augment(32)
    assert aug.scale == (0.2, 1.0) and aug.flip_p == 0.5 and aug.blur_p == 0.0
    assert aug.jitter_strengths == dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4)
    assert aug.color_p == 1.0 and aug.grayscale_p == 0.2 and aug.grayscale_first


def test_grayscale_first_keeps_grayed_images_gray_under_hue_jitter(images):
    """Hue rotation leaves gray pixels unchanged, so with grayscale first (MoCo v1's order) the
    output is exactly the gray crop; with grayscale last it is the gray of the hue-shifted crop."""
    crops = SimCLRAugment(32, color_p=0.0, grayscale_p=0.0, blur_p=0.0)(images, gen(7))
    settings = dict(color_p=1.0, grayscale_p=1.0, blur_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.4)
    first = SimCLRAugment(32, grayscale_first=True, **settings)(images, gen(7))
    assert torch.allclose(first, rgb_to_gray(crops).expand(-1, 3, -1, -1), atol=1e-6)
    last = SimCLRAugment(32, **settings)(images, gen(7))
    assert torch.equal(last[:, 0], last[:, 1]) and not torch.allclose(last, first, atol=1e-3)


def test_standardize_images_restates_the_formula_and_is_idempotent(images):
    x = images.float() / 255
    out = standardize_images(images)
    for b in range(2):
        for c in range(3):
            plane = x[b, c].double()
            expected = (plane - plane.mean()) / plane.std(unbiased=False)
            assert torch.allclose(out[b, c].double(), expected, atol=1e-5)
    assert torch.allclose(standardize_images(out), out, atol=1e-5)
    tiles = torch.rand(2, 9, 3, 8, 8, generator=gen(1))  # any leading shape: each tile on its own
    stacked = standardize_images(tiles)
    assert torch.allclose(stacked[1, 4], standardize_images(tiles[1, 4:5])[0], atol=1e-6)
    nearly_flat = torch.full((1, 3, 4, 4), 0.3)
    nearly_flat[..., 0, 0] += 1e-3  # std 2.4e-4 < eps: no pattern worth scaling up 4000x
    assert torch.equal(standardize_images(nearly_flat), torch.zeros(1, 3, 4, 4))


def test_solarize_always():
    x = torch.rand(4, 3, 8, 8, generator=gen(0))
    out = SimCLRAugment(8, **{**OFF, "solarize_p": 1.0})(x)
    assert torch.equal(out, torch.where(x >= 0.5, 1 - x, x))


def test_resized_crop_box_equals_slice_at_scale_one(images):
    x = images.float() / 255
    boxes = torch.tensor([[3.0, 5.0, 16.0, 16.0]]).expand(8, 4)
    assert torch.allclose(resized_crop(x, boxes, 16), x[:, :, 3:19, 5:21], atol=1e-5)


def test_resized_crop_matches_torchvision_inside_the_box(images):
    """Rescaling a box equals torchvision's bilinear resize away from the box edge (where ours
    reads the neighbouring pixels instead of repeating the box edge)."""
    x = images.float() / 255
    top, left, h, w = 4, 2, 20, 12
    ours = resized_crop(x, torch.tensor([[top, left, h, w]], dtype=torch.float32).expand(8, 4), 30)
    ref = TF.resized_crop(x, top, left, h, w, [30, 30], antialias=False)
    assert torch.allclose(ours[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-5)


def test_resized_crop_boxes_are_valid_and_follow_scale():
    boxes = sample_resized_crop_boxes(4000, 32, 48, scale=(0.2, 0.5), ratio=(0.5, 2.0), generator=gen(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32 + 1e-4).all() and (left + w <= 48 + 1e-4).all()
    area = h * w / (32 * 48)
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 0.5 + 1e-5
    assert (w / h).min() >= 0.5 - 1e-5 and (w / h).max() <= 2.0 + 1e-5
    assert abs(area.mean().item() - 0.35) < 0.01


def test_color_jitter_matches_torchvision_ops():
    x = torch.rand(6, 3, 12, 12, generator=gen(0))
    x[0] = 0.5  # gray image
    x[1, 0] = x[1, 1]  # ties between channels
    factors = torch.tensor([0.0, 0.3, 0.8, 1.0, 1.4, 1.8])
    shifts = torch.tensor([-0.5, -0.3, -0.05, 0.0, 0.2, 0.45])
    ops = {
        "brightness": (TF.adjust_brightness, factors),
        "contrast": (TF.adjust_contrast, factors),
        "saturation": (TF.adjust_saturation, factors),
        "hue": (TF.adjust_hue, shifts),
    }
    for name, (reference, values) in ops.items():
        ours = color_jitter(x, **{name: values})
        ref = torch.stack([reference(x[i], values[i].item()) for i in range(6)])
        # luma weights differ in the 4th decimal (0.299 here vs torchvision's 0.2989)
        assert torch.allclose(ours, ref, atol=2e-4), name


def test_color_jitter_order_and_neutral_factors():
    x = torch.rand(3, 3, 8, 8, generator=gen(1))
    b, s = torch.full((3,), 1.5), torch.full((3,), 0.2)
    bs = color_jitter(x, brightness=b, saturation=s, order=("brightness", "saturation"))
    sb = color_jitter(x, brightness=b, saturation=s, order=("saturation", "brightness"))
    assert torch.allclose(bs, TF.adjust_saturation(TF.adjust_brightness(x, 1.5), 0.2), atol=2e-4)
    assert torch.allclose(sb, TF.adjust_brightness(TF.adjust_saturation(x, 0.2), 1.5), atol=2e-4)
    ones, zeros = torch.ones(3), torch.zeros(3)
    neutral = color_jitter(x, brightness=ones, contrast=ones, saturation=ones, hue=zeros)
    assert torch.allclose(neutral, x, atol=1e-6)
    assert torch.allclose(shift_hue(x, torch.ones(3) * 0.5), shift_hue(x, -torch.ones(3) * 0.5), atol=1e-5)


def test_blur_matches_kornia_and_skips_unselected():
    import kornia

    x = torch.rand(4, 3, 16, 16, generator=gen(0))
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    for kernel in (3, 5, 9):  # shifted multiply-adds up to 5, grouped convolutions above
        ref = kornia.filters.gaussian_blur2d(x, kernel, torch.stack([sigma, sigma], 1))
        assert torch.allclose(gaussian_blur(x, sigma, kernel), ref, atol=1e-6)
        apply = torch.tensor([True, False, True, False])
        out = gaussian_blur(x, sigma, kernel, apply=apply)
        assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])
        assert torch.allclose(out[2], ref[2], atol=1e-6)


def test_blur_kernel_is_ten_percent_and_odd():
    assert simclr_augment(224, blur=True).blur_kernel == 23
    assert simclr_augment(96, blur=True).blur_kernel == 9
    assert simclr_augment(32, blur=True).blur_kernel == 3


def test_color_jitter_probability_zero_is_identity(images):
    x = images.float() / 255
    out = SimCLRAugment(32, **{**OFF, "color_p": 0.0}, color_strength=1.0)(x, gen(0))
    assert torch.equal(out, x)
    out = SimCLRAugment(32, **{**OFF, "color_p": 1.0}, color_strength=1.0)(x, gen(0))
    assert not torch.allclose(out, x)


def test_generator_device_is_used_for_sampling(images):
    # A CPU generator seeds the draws whatever the batch's device; here both are the CPU, so
    # check the generator is actually consumed (its state advances) and governs the output.
    g = gen(9)
    before = g.get_state()
    simclr_augment(32)(images, g)
    assert not torch.equal(before, g.get_state())


@needs_cuda
def test_cpu_generator_seeds_a_cuda_batch_like_a_cpu_batch(images):
    aug = simclr_augment(32, blur=True)
    on_cpu = aug(images, gen(7))
    on_cuda = aug(images.cuda(), gen(7))
    assert on_cuda.is_cuda and torch.allclose(on_cuda.cpu(), on_cpu, atol=1e-4)
    crops = random_crop(images.cuda(), 24, gen(3)).cpu()
    assert torch.equal(crops, random_crop(images, 24, gen(3)))
    tiles, labels = jigsaw_tiles(images.cuda(), maximal_hamming_permutations(10), generator=gen(4))
    ref_tiles, ref_labels = jigsaw_tiles(images, maximal_hamming_permutations(10), generator=gen(4))
    assert torch.equal(tiles.cpu(), ref_tiles) and torch.equal(labels.cpu(), ref_labels)


def test_grayscale_one_channel_policy():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=gen(0))
    out = simclr_augment(28)(x, gen(0))
    assert out.shape == (4, 1, 28, 28) and 0 <= out.min() and out.max() <= 1


def test_policy_input_errors():
    aug = simclr_augment(32)
    with pytest.raises(ValueError, match="unsqueeze"):
        aug(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="channels"):
        aug(torch.zeros(2, 4, 32, 32))
    with pytest.raises(TypeError):
        aug(np.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="probability"):
        SimCLRAugment(32, flip_p=1.5)
    with pytest.raises(ValueError, match="scale"):
        SimCLRAugment(32, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="mean and std"):
        SimCLRAugment(32, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="hue"):
        SimCLRAugment(32, hue=0.7)


# ---------------------------------------------------------------------------- RL crops


def test_random_crop_equals_loop_reference_uint8_frame_stack():
    x = torch.randint(0, 256, (6, 9, 20, 20), dtype=torch.uint8, generator=gen(0))
    top, left = sample_crop_offsets(6, 20, 20, 14, generator=gen(1))
    out = random_crop(x, 14, offsets=(top, left))
    ref = torch.stack([x[b, :, top[b]:top[b] + 14, left[b]:left[b] + 14] for b in range(6)])
    assert out.dtype == torch.uint8 and torch.equal(out, ref)
    # seeded draws are reproducible, and cover both ends of the offset range
    assert torch.equal(random_crop(x, 14, gen(3)), random_crop(x, 14, gen(3)))
    top, left = sample_crop_offsets(2000, 20, 20, 14, generator=gen(2))
    assert top.min() == 0 and top.max() == 6 and left.min() == 0 and left.max() == 6


def test_random_crop_straight_from_storage_rows():
    storage = torch.randint(0, 256, (10, 6, 16, 16), dtype=torch.uint8, generator=gen(0))
    indices = torch.tensor([7, 2, 2, 9])
    offsets = sample_crop_offsets(4, 16, 16, 12, generator=gen(1))
    direct = random_crop(storage, 12, offsets=offsets, indices=indices)
    assert torch.equal(direct, random_crop(storage[indices], 12, offsets=offsets))
    with pytest.raises(ValueError, match="indices"):
        random_crop(storage, 12, indices=indices.float())


def test_random_crop_into_preallocated_out():
    x = torch.randint(0, 256, (3, 6, 16, 16), dtype=torch.uint8, generator=gen(0))
    offsets = sample_crop_offsets(3, 16, 16, 10, generator=gen(1))
    buffer = torch.empty(3, 6, 10, 10, dtype=torch.uint8)
    result = random_crop(x, 10, offsets=offsets, out=buffer)
    assert result.data_ptr() == buffer.data_ptr()
    assert torch.equal(buffer, random_crop(x, 10, offsets=offsets))
    with pytest.raises(ValueError, match="out must be"):
        random_crop(x, 10, out=torch.empty(3, 6, 10, 10))


def test_random_crop_non_contiguous_and_float_input():
    x = torch.rand(4, 20, 20, 3, generator=gen(0)).permute(0, 3, 1, 2)  # channels-last memory
    offsets = (torch.tensor([0, 1, 2, 6]), torch.tensor([6, 0, 3, 1]))
    out = random_crop(x, 14, offsets=offsets)
    ref = torch.stack([x[b, :, offsets[0][b]:offsets[0][b] + 14, offsets[1][b]:offsets[1][b] + 14]
                       for b in range(4)])
    assert torch.equal(out, ref)


def test_random_shift_equals_pad_then_crop():
    x = torch.randint(0, 256, (5, 9, 12, 12), dtype=torch.uint8, generator=gen(0))
    out = random_shift(x, pad=3, generator=gen(4))
    g = gen(4)  # the same draws as inside random_shift: tops, then lefts
    top = torch.randint(7, (5, 1), generator=g).view(-1)
    left = torch.randint(7, (5, 1), generator=g).view(-1)
    padded = torch.nn.functional.pad(x.float(), (3, 3, 3, 3), mode="replicate").to(torch.uint8)
    ref = torch.stack([padded[b, :, top[b]:top[b] + 12, left[b]:left[b] + 12] for b in range(5)])
    assert out.dtype == torch.uint8 and torch.equal(out, ref)


def test_center_crop():
    x = torch.arange(2 * 1 * 10 * 10).view(2, 1, 10, 10)
    assert torch.equal(center_crop(x, 6), x[:, :, 2:8, 2:8])
    assert torch.equal(center_crop(x, 10), x)


def test_crop_errors():
    x = torch.zeros(2, 9, 20, 20, dtype=torch.uint8)
    with pytest.raises(ValueError, match="larger than"):
        random_crop(x, 21)
    with pytest.raises(ValueError, match="larger than"):
        center_crop(x, 30)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_crop(x[0], 10)
    with pytest.raises(ValueError, match="offsets"):
        random_crop(x, 10, offsets=(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)))
    with pytest.raises(ValueError, match="pad"):
        random_shift(x, pad=-1)


# ---------------------------------------------------------------------------- pretext tasks


def test_rotate_batch_matches_rot90():
    x = torch.rand(3, 2, 5, 5, generator=gen(0))
    images, labels = rotate_batch(x)
    assert images.shape == (12, 2, 5, 5) and labels.dtype == torch.int64
    for i in range(12):
        assert torch.equal(images[i], torch.rot90(x[i % 3], int(labels[i]), dims=(1, 2)))
    assert labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.zeros(1, 3, 4, 5))


def _greedy_reference(perms: list[tuple[int, ...]], first: tuple[int, ...], n: int,
                      rule: str) -> list[tuple[int, ...]]:
    """The obvious greedy: add the unchosen permutation with the largest summed (average rule)
    or minimum (max-min rule) Hamming distance to the chosen set; the first maximiser wins."""
    combine = sum if rule == "average" else min
    chosen = [first]
    for _ in range(n - 1):
        best, best_score = None, -1
        for p in perms:  # lexicographic order: the first maximiser wins ties
            if p in chosen:
                continue
            score = combine(sum(a != b for a, b in zip(p, q)) for q in chosen)
            if score > best_score:
                best, best_score = p, score
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("rule", ["average", "minimum"])
def test_hamming_permutations_match_slow_greedy(rule):
    ours = maximal_hamming_permutations(n=12, grid=5, seed=3, rule=rule)
    perms = list(itertools.permutations(range(5)))
    reference = _greedy_reference(perms, tuple(ours[0].tolist()), 12, rule)
    assert [tuple(p) for p in ours.tolist()] == reference


def test_hamming_average_rule_is_noroozi_favaro_algorithm_1_on_9_tiles():
    """Every greedy step picks an argmax of the summed distance to the permutations chosen
    before it, among all 9! permutations not chosen yet; the default rule is this one."""
    chosen = maximal_hamming_permutations(10, 9, seed=4).numpy()
    assert np.array_equal(chosen, maximal_hamming_permutations(10, 9, seed=4, rule="average").numpy())
    assert len({tuple(p) for p in chosen.tolist()}) == 10
    every = np.array(list(itertools.permutations(range(9))), dtype=np.int8)
    for step in range(1, 10):
        summed = (every[:, None, :] != chosen[None, :step, :]).sum(axis=(1, 2))
        taken = (every[:, None, :] == chosen[None, :step, :]).all(axis=2).any(axis=1)
        summed[taken] = -1
        assert summed[np.all(every == chosen[step], axis=1)].item() == summed.max()
    assert np.array_equal(chosen, maximal_hamming_permutations(10, 9, seed=4).numpy())
    assert not np.array_equal(chosen, maximal_hamming_permutations(10, 9, seed=5).numpy())


def test_hamming_100_of_9_each_rule_wins_its_own_criterion():
    sets = {rule: maximal_hamming_permutations(100, 9, seed=0, rule=rule) for rule in ("average", "minimum")}
    stats = {}
    for rule, perms in sets.items():
        assert perms.shape == (100, 9) and perms.dtype == torch.int64
        assert all(sorted(p) == list(range(9)) for p in perms.tolist())
        assert len({tuple(p) for p in perms.tolist()}) == 100
        distance = (perms[:, None, :] != perms[None, :, :]).sum(-1).float()
        off_diagonal = distance[~torch.eye(100, dtype=torch.bool)]
        stats[rule] = (off_diagonal.mean().item(), off_diagonal.min().item())
        assert torch.equal(perms, maximal_hamming_permutations(100, 9, seed=0, rule=rule))
        assert not torch.equal(perms, maximal_hamming_permutations(100, 9, seed=1, rule=rule))
    assert stats["minimum"][1] >= 6 and stats["minimum"][1] > stats["average"][1]
    assert stats["average"][0] > stats["minimum"][0]
    with pytest.raises(ValueError):
        maximal_hamming_permutations(n=200, grid=5)
    with pytest.raises(ValueError, match="rule"):
        maximal_hamming_permutations(10, 9, rule="maximum")


def test_jigsaw_tiles_equal_loop_reference():
    x = torch.rand(4, 3, 33, 30, generator=gen(0))
    perms = maximal_hamming_permutations(10, 9)
    perm_index = torch.tensor([0, 3, 9, 5])
    offset_top = torch.randint(0, 3, (4, 9), generator=gen(1))  # cells 11x10, tiles 9x9
    offset_left = torch.randint(0, 2, (4, 9), generator=gen(2))
    tiles, label = jigsaw_tiles(x, perms, tile_size=9, perm_index=perm_index, offsets=(offset_top, offset_left))
    assert tiles.shape == (4, 9, 3, 9, 9) and torch.equal(label, perm_index)
    for b in range(4):
        p = perms[perm_index[b]]
        for k in range(9):
            cell = int(p[k])
            top = (cell // 3) * 11 + int(offset_top[b, cell])
            left = (cell % 3) * 10 + int(offset_left[b, cell])
            assert torch.equal(tiles[b, k], x[b, :, top:top + 9, left:left + 9])


def test_jigsaw_tiles_random_draws():
    x = torch.rand(16, 3, 32, 32, generator=gen(0))
    perms = maximal_hamming_permutations(100, 9)
    tiles, label = jigsaw_tiles(x, perms, generator=gen(5))
    assert tiles.shape == (16, 9, 3, 8, 8) and label.min() >= 0 and label.max() < 100
    again, label_again = jigsaw_tiles(x, perms, generator=gen(5))
    assert torch.equal(tiles, again) and torch.equal(label, label_again)
    centred, _ = jigsaw_tiles(x, perms, jitter=False, perm_index=torch.zeros(16, dtype=torch.long))
    first = int(perms[0, 0])
    top, left = (first // 3) * 10 + 1, (first % 3) * 10 + 1
    assert torch.equal(centred[:, 0], x[:, :, top:top + 8, left:left + 8])
    with pytest.raises(ValueError, match="permutations"):
        jigsaw_tiles(x, perms[:, :4])
    with pytest.raises(ValueError, match="tile_size"):
        jigsaw_tiles(x, perms, tile_size=11)


def test_masks_cover_requested_fraction():
    center = center_square_mask(2, 64, 64, frac=0.5)
    assert center.shape == (2, 1, 64, 64) and center.dtype == torch.bool
    assert center.float().mean().item() == 0.25 and center[0, 0, 32, 32] and not center[0, 0, 0, 0]
    blocks = random_block_mask(256, 64, 64, coverage=0.25, block=12, generator=gen(0))
    assert blocks.shape == (256, 1, 64, 64) and blocks.dtype == torch.bool
    assert abs(blocks.float().mean().item() - 0.25) < 0.03
    assert torch.equal(blocks, random_block_mask(256, 64, 64, coverage=0.25, block=12, generator=gen(0)))
    x = torch.rand(2, 3, 64, 64)
    hidden = apply_mask(x, center, fill=0.5)
    assert (hidden[:, :, 32, 32] == 0.5).all() and torch.equal(hidden[:, :, 0, 0], x[:, :, 0, 0])
    with pytest.raises(ValueError, match="bool"):
        apply_mask(x, center.float())


def test_random_erasing():
    x = torch.rand(200, 3, 32, 32, generator=gen(0)) + 1.0  # never equal to the fill value
    out = random_erasing(x, p=0.5, value=0.0, generator=gen(1))
    erased = (out == 0).flatten(1).any(1)
    assert 0.35 < erased.float().mean() < 0.65
    assert torch.equal(out[~erased], x[~erased])
    fraction = (out[erased] == 0).float().mean(dim=(1, 2, 3))
    assert fraction.min() >= 0.015 and fraction.max() <= 0.4  # whole-pixel rounding of the sides
    assert torch.equal(random_erasing(x, 1.0, value=0.0, generator=gen(2)) == 0,
                       random_erasing(x, 1.0, value=0.0, generator=gen(2)) == 0)


# ---------------------------------------------------------------------------- one real check


def _cifar_images(count: int) -> torch.Tensor | None:
    from PIL import Image

    from core_ssl.data import resolve_data_root

    try:
        archive = resolve_data_root() / "cifar10-jpeg.zip"
    except FileNotFoundError:
        return None
    if not archive.exists():
        return None
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("cifar10/train/") and n.endswith(".jpg"))
        picked = names[:: max(1, len(names) // count)][:count]
        arrays = [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in picked]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def test_real_cifar_colour_policy_matches_torchvision_per_image():
    """On real CIFAR-10 photos, the batched colour path (jitter in a fixed order + grayscale)
    equals torchvision's per-image functional ops with the same factors."""
    x = _cifar_images(32)
    if x is None:
        pytest.skip("CIFAR-10 archive not found in the data root (../shared/data)")
    images = x.float() / 255
    g = gen(11)
    b, c, s = (0.6 + 0.8 * torch.rand(32, generator=g) for _ in range(3))
    h = 0.2 * torch.rand(32, generator=g) - 0.1
    order = ("contrast", "hue", "brightness", "saturation")
    ours = color_jitter(images, brightness=b, contrast=c, saturation=s, hue=h, order=order)
    functions = {"brightness": (TF.adjust_brightness, b), "contrast": (TF.adjust_contrast, c),
                 "saturation": (TF.adjust_saturation, s), "hue": (TF.adjust_hue, h)}
    for i in range(32):
        ref = images[i]
        for op in order:
            function, values = functions[op]
            ref = function(ref, values[i].item())
        assert torch.allclose(ours[i], ref, atol=1e-3), i
    out = simclr_augment(32)(x, gen(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    # augmenting changes real photos, but keeps them photos: mean brightness stays near
    assert abs(out.mean().item() - images.mean().item()) < 0.1


def test_module_exports_exist():
    for name in A.__all__:
        assert hasattr(A, name), name


def test_sobel_magnitude_matches_scipy_with_replicated_borders():
    import numpy as np
    from scipy import ndimage

    from core_ssl.augment import sobel_magnitude

    grey = torch.rand(2, 1, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = sobel_magnitude(grey)
    for b in range(2):
        image = grey[b, 0].numpy()
        expected = np.hypot(ndimage.sobel(image, axis=0, mode="nearest"), ndimage.sobel(image, axis=1, mode="nearest"))
        assert np.allclose(out[b, 0].numpy(), expected)
    with pytest.raises(ValueError, match=r"expected \(N, 1, H, W\) grey images"):
        sobel_magnitude(grey.expand(2, 3, 9, 7))
