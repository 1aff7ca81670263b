"""The kornia backend against the native ops: same operations, same distributions, seeding.

Three levels: (1) given the parameters kornia drew, the native ops reproduce kornia's output
pixel by pixel (crop warp, colour jitter, blur, RL crop); (2) parameter ranges and
probabilities agree (crop area and aspect, crop offsets, every per-sample gate, within binomial
tolerance); (3) every recipe gives the same per-channel output statistics on fixed smooth
images over many draws, within a few standard errors.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import pytest
import torch

from core_ssl.augment import (AUG_BACKEND_CHOICES, DEFAULT_BACKENDS, SimCLRAugment, byol_augment_pair, color_jitter,
                              gaussian_blur, generator_seeded_rng, mocov1_augment, mocov2_augment, random_crop,
                              random_shift, resized_crop, resolve_backend, sample_crop_offsets,
                              sample_resized_crop_boxes, simclr_augment)
from core_ssl.augment.kornia_backend import RandomResizedCropEdges, build_policy

OFF = dict(crop=False, flip_p=0.0, color_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
JITTER = ("brightness", "contrast", "saturation", "hue")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Fixed smooth colour images in [0, 1] (random low-frequency sinusoids per channel), so
    the two crop conventions (half a pixel apart) change the statistics very little."""
    g = gen(seed)
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    freq = 1.0 + 2.0 * torch.rand(count, 3, 2, generator=g)
    phase = 2 * math.pi * torch.rand(count, 3, 1, 1, generator=g)
    wave = torch.sin(2 * math.pi * (freq[..., 0, None, None] * xx + freq[..., 1, None, None] * yy) + phase)
    base = 0.2 + 0.6 * torch.rand(count, 3, 1, 1, generator=g)
    return (base + 0.2 * wave).clamp(0, 1)


def binomial_ok(hits: torch.Tensor, p: float, sigmas: float = 4.5) -> bool:
    """The observed rate of ``hits`` (bool) lies within ``sigmas`` binomial standard errors of p."""
    n = hits.numel()
    return abs(hits.float().mean().item() - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 1e-9


# ------------------------------------------------------------------ (1) the same operations


def test_kornia_crop_warp_is_the_native_warp_of_kornias_box():
    """The backend's crop (kornia's sampler and warp, edges aligned, border repeated) gives the
    pixels of the native crop of the very box kornia drew; kornia's own module maps corner pixel
    centres instead, which differs."""
    x = torch.rand(64, 3, 32, 32, generator=gen(0))
    edges = RandomResizedCropEdges((24, 24), scale=(0.2, 1.0), cropping_mode="resample")
    plain = K.RandomResizedCrop((24, 24), scale=(0.2, 1.0), cropping_mode="resample")
    with generator_seeded_rng(gen(1)):
        out = edges(x)
    with generator_seeded_rng(gen(1)):  # the same draws
        plain_out = plain(x)
    src = plain._params["src"]
    x0, y0 = src[:, 0, 0], src[:, 0, 1]
    boxes = torch.stack([y0, x0, src[:, 3, 1] - y0 + 1, src[:, 1, 0] - x0 + 1], dim=1)  # top, left, h, w
    assert (boxes[:, 0] == 0).any() and (boxes[:, 1] == 0).any()  # some boxes touch the border
    native = resized_crop(x, boxes, 24)
    assert torch.allclose(out, native, atol=2e-5)
    assert not torch.allclose(plain_out, native, atol=1e-2)


def test_kornia_colour_jitter_and_blur_are_the_native_ops_with_its_draws():
    x = torch.rand(64, 3, 16, 16, generator=gen(0))
    jitter = K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)
    with generator_seeded_rng(gen(2)):
        out = jitter(x)
    params = jitter._params
    order = [JITTER[i] for i in params["order"].tolist()]
    native = color_jitter(x, order=order, **{op: params[f"{op}_factor"] for op in JITTER})
    applied = params["batch_prob"].bool().view(-1, 1, 1, 1)
    assert 0 < applied.sum() < 64
    assert torch.allclose(out, torch.where(applied, native, x), atol=2e-5)
    blur = K.RandomGaussianBlur((5, 5), (0.1, 2.0), p=0.5)
    out = blur(x)
    native = gaussian_blur(x, blur._params["sigma"], 5, apply=blur._params["batch_prob"].bool())
    assert torch.allclose(out, native, atol=1e-6)


def test_kornia_rl_crop_cuts_the_same_windows_any_dtype():
    x = torch.randint(0, 256, (6, 9, 20, 20), dtype=torch.uint8, generator=gen(0))
    offsets = sample_crop_offsets(6, 20, 20, 14, generator=gen(1))
    out = random_crop(x, 14, offsets=offsets, backend="kornia")
    assert out.dtype == torch.uint8 and torch.equal(out, random_crop(x, 14, offsets=offsets, backend="native"))
    storage, rows = x.float(), torch.tensor([5, 0, 0, 3])
    buffer = torch.empty(4, 9, 14, 14)
    fixed = (offsets[0][:4], offsets[1][:4])
    result = random_crop(storage, 14, offsets=fixed, indices=rows, out=buffer, backend="kornia")
    assert result.data_ptr() == buffer.data_ptr()
    assert torch.equal(buffer, random_crop(storage, 14, offsets=fixed, indices=rows, backend="native"))


def test_kornia_policies_keep_the_native_step_order():
    def steps(policy, channels=3):
        return [type(m).__name__ for m in build_policy(policy, channels, resize=False)]

    assert steps(mocov1_augment(32)) == ["RandomResizedCropEdges", "RandomHorizontalFlip", "RandomGrayscale",
                                         "ColorJitter"]
    assert steps(byol_augment_pair(32)[1]) == ["RandomResizedCropEdges", "RandomHorizontalFlip", "ColorJitter",
                                               "RandomGrayscale", "RandomGaussianBlur", "RandomSolarize"]
    normalised = simclr_augment(32, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert steps(normalised)[-1] == "Normalize"
    jitter = build_policy(simclr_augment(28), 1, resize=False)[2]
    assert jitter.saturation == 0.0 and jitter.hue == 0.0 and jitter.brightness == 0.4  # gray: no sat./hue
    assert steps(simclr_augment(28), channels=1) == ["RandomResizedCropEdges", "RandomHorizontalFlip", "ColorJitter"]


# --------------------------------------------------------------------- (2) same distributions


def test_resized_crop_boxes_have_the_same_area_and_aspect_distribution():
    n, side = 20000, 64
    native = sample_resized_crop_boxes(n, side, side, scale=(0.2, 1.0), generator=gen(0))
    crop = K.RandomResizedCrop((32, 32), scale=(0.2, 1.0))
    with generator_seeded_rng(gen(1)):
        src = crop.forward_parameters((n, 3, side, side))["src"]
    k_w, k_h = src[:, 1, 0] - src[:, 0, 0] + 1, src[:, 3, 1] - src[:, 0, 1] + 1
    k_top, k_left = src[:, 0, 1], src[:, 0, 0]
    statistics = {}
    for name, (top, left, h, w) in {"native": native.unbind(1), "kornia": (k_top, k_left, k_h, k_w)}.items():
        area, log_aspect = h * w / side**2, torch.log(w / h)
        assert area.min() >= 0.2 - 0.03 and area.max() <= 1.0 + 1e-5, name  # whole-pixel rounding
        assert log_aspect.abs().max() <= math.log(4 / 3) + 0.05, name
        assert (top >= 0).all() and (top + h <= side + 1e-4).all() and (left + w <= side + 1e-4).all(), name
        centre = (left + w / 2) / side
        statistics[name] = torch.stack([area.quantile(q) for q in (0.1, 0.5, 0.9)]
                                       + [area.mean(), log_aspect.mean(), log_aspect.std(), centre.mean(),
                                          centre.std()])
    # standard errors here are ~0.002; kornia's rounding of the sides shifts the area by < 0.005
    assert torch.allclose(statistics["native"], statistics["kornia"], atol=0.012), statistics


@pytest.mark.parametrize("backend", ["native", "kornia"])
def test_rl_crop_and_shift_offsets_are_uniform_over_every_position(backend):
    n = 4000
    x = torch.arange(20 * 20, dtype=torch.float32).view(1, 1, 20, 20).expand(n, 1, 20, 20)
    corner = random_crop(x, 14, gen(3), backend=backend)[:, 0, 0, 0].long()
    top, left = corner // 20, corner % 20
    for offsets in (top, left):
        counts = torch.bincount(offsets, minlength=7)
        assert counts.numel() == 7 and all(binomial_ok(offsets == k, 1 / 7) for k in range(7)), counts
    shifted = random_shift(x, pad=2, generator=gen(4), backend=backend)
    # with replicate padding the centre pixel (10, 10) comes from (10 + dy, 10 + dx), dy, dx in [-2, 2]
    source = shifted[:, 0, 10, 10].long()
    dy, dx = source // 20 - 10, source % 20 - 10
    for shift in (dy, dx):
        assert shift.min() == -2 and shift.max() == 2
        assert all(binomial_ok(shift == k, 1 / 5) for k in range(-2, 3))


@pytest.mark.parametrize("backend", ["native", "kornia"])
def test_every_gate_fires_with_its_probability(backend):
    """Flip, grayscale, colour jitter, blur and solarize, each alone at its probability; the
    event is read off each output (mirror image, equal channels, changed pixels)."""
    n = 1200
    x = smooth_images(1, 16).expand(n, -1, -1, -1).contiguous()
    x[..., :4] = 0.9  # asymmetric and partly above the solarize threshold
    cases = {"flip_p": 0.5, "grayscale_p": 0.2, "color_p": 0.8, "blur_p": 0.5, "solarize_p": 0.2}
    for name, p in cases.items():
        out = SimCLRAugment(16, **{**OFF, name: p}, backend=backend)(x, gen(5))
        changed = (out - x).abs().flatten(1).amax(1) > 1e-3
        if name == "flip_p":
            hits = (out - x.flip(3)).abs().flatten(1).amax(1) < 1e-6
            assert torch.equal(hits, changed), name  # every sample is either mirrored or kept
        elif name == "grayscale_p":
            hits = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
        else:
            hits = changed
        assert binomial_ok(hits, p), (name, hits.float().mean().item())


# ------------------------------------------------------------------- (3) same output statistics


RECIPES = {
    "simclr": lambda b: simclr_augment(24, backend=b),
    "simclr_imagenet": lambda b: simclr_augment(24, color_strength=1.0, blur=True, backend=b),
    "mocov1": lambda b: mocov1_augment(24, backend=b),
    "mocov2": lambda b: mocov2_augment(24, backend=b),
    "byol_view2": lambda b: byol_augment_pair(24, backend=b)[1],
    "pretext_views": lambda b: SimCLRAugment(24, scale=(0.5, 1.0), color_p=0.0, grayscale_p=0.3, blur_p=0.0,
                                             backend=b),
}


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup_t |F_a(t) - F_b(t)| of the empirical CDFs."""
    a, b = a.sort().values, b.sort().values
    grid = torch.cat([a, b])
    f_a = torch.searchsorted(a, grid, right=True) / len(a)
    f_b = torch.searchsorted(b, grid, right=True) / len(b)
    return (f_a - f_b).abs().max().item()


def ks_critical(n: int, m: int, alpha: float = 1e-4) -> float:
    """The asymptotic KS critical value sqrt(-ln(alpha / 2) / 2) sqrt((n + m) / (n m))."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def output_features(out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-output summaries: channel means and stds, chroma (max - min channel, averaged over
    the pixels) and sharpness (mean absolute horizontal difference)."""
    std, mean = torch.std_mean(out, dim=(2, 3))
    features = {f"mean{c}": mean[:, c] for c in range(3)} | {f"std{c}": std[:, c] for c in range(3)}
    features["chroma"] = (out.amax(1) - out.amin(1)).mean((1, 2))
    features["sharpness"] = (out[..., 1:] - out[..., :-1]).abs().mean((1, 2, 3))
    return features


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_give_the_same_output_distribution_on_fixed_images(recipe):
    """1,600 draws of each backend on 8 fixed 64 px images: every per-output summary has the
    same distribution (two-sample KS test at alpha = 1e-4 per summary). The test has power:
    grayscale p 0.2 vs 0.3, or crop scale 0.2 vs 0.08, fails it. (At 32 px sources kornia's
    whole-pixel box rounding keeps more near-full crops and the crop-only views' std fails
    narrowly, so the sources are 64 px.)"""
    images = smooth_images(8, 64).repeat(200, 1, 1, 1)
    features = {}
    for backend in ("native", "kornia"):
        out = RECIPES[recipe](backend)(images, gen(6))
        assert out.shape == (1600, 3, 24, 24) and out.min() >= -1e-6 and out.max() <= 1 + 1e-6
        features[backend] = output_features(out)
    critical = ks_critical(1600, 1600)
    distances = {name: ks_distance(features["native"][name], features["kornia"][name]) for name in features["native"]}
    assert max(distances.values()) < critical, (recipe, distances, critical)


def test_jitter_and_blur_parameters_have_the_same_distribution():
    """Native draws (SimCLRAugment.jitter_parameters / blur_parameters) against the parameters
    kornia's ColorJitter and RandomGaussianBlur draw for the same policy."""
    policy = mocov2_augment(32)  # jitter (0.4, 0.4, 0.4, 0.1) p 0.8, blur sigma (0.1, 2) p 0.5
    jitter, blur = build_policy(policy, 3, resize=False)[2:5:2]
    assert type(jitter).__name__ == "ColorJitter" and type(blur).__name__ == "RandomGaussianBlur"
    n = 4000
    native, _ = policy.jitter_parameters(n, gen(0))
    with generator_seeded_rng(gen(1)):
        drawn = jitter.forward_parameters((n, 3, 8, 8))
    applied_native = native["brightness"] != 1.0
    applied_kornia = drawn["batch_prob"].bool()
    assert binomial_ok(applied_native, 0.8) and binomial_ok(applied_kornia, 0.8)
    for op, (low, high) in {"brightness": (0.6, 1.4), "contrast": (0.6, 1.4), "saturation": (0.6, 1.4),
                            "hue": (-0.1, 0.1)}.items():
        ours, theirs = native[op][applied_native], drawn[f"{op}_factor"][applied_kornia]
        for values in (ours, theirs):
            assert values.min() >= low - 1e-6 and values.max() <= high + 1e-6
            assert values.min() < low + 0.01 and values.max() > high - 0.01, op  # the whole range
        assert ks_distance(ours, theirs) < ks_critical(len(ours), len(theirs)), op
    firsts = {"native": [], "kornia": []}  # the op order: a uniform permutation per call
    g = gen(2)
    for _ in range(400):
        firsts["native"].append(policy.jitter_parameters(1, g)[1][0])
        with generator_seeded_rng(g):
            firsts["kornia"].append(JITTER[int(jitter.forward_parameters((1, 3, 8, 8))["order"][0])])
    for backend, first in firsts.items():
        for op in JITTER:
            assert binomial_ok(torch.tensor([f == op for f in first]), 0.25), (backend, op)
    sigma, gate = policy.blur_parameters(n, gen(3))
    with generator_seeded_rng(gen(4)):
        drawn = blur.forward_parameters((n, 3, 8, 8))
    assert binomial_ok(gate, 0.5) and binomial_ok(drawn["batch_prob"].bool(), 0.5)
    assert ks_distance(sigma, drawn["sigma"]) < ks_critical(n, n)
    assert drawn["sigma"].min() >= 0.1 and drawn["sigma"].max() <= 2.0


# ----------------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("make", [
    lambda: (lambda x, g: simclr_augment(24, blur=True, backend="kornia")(x, g)),
    lambda: (lambda x, g: random_crop((x * 255).to(torch.uint8), 20, g, backend="kornia")),
    lambda: (lambda x, g: random_shift(x, 3, g, backend="kornia")),
])
def test_kornia_backend_is_seeded_by_the_generator_and_leaves_the_global_rng(make):
    fn, x = make(), smooth_images(16, 24)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first, again, other = fn(x, gen(1)), fn(x, gen(1)), fn(x, gen(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)  # without a generator: the global RNG, reproducible by torch.manual_seed
    unseeded = fn(x, None)
    torch.manual_seed(7)
    assert torch.equal(unseeded, fn(x, None))


def test_backend_names_and_device_defaults():
    assert AUG_BACKEND_CHOICES == ("auto", "native", "kornia")
    assert resolve_backend("auto", "cpu") == DEFAULT_BACKENDS["cpu"]
    assert resolve_backend("auto", torch.device("cuda", 0)) == DEFAULT_BACKENDS["cuda"]
    assert resolve_backend("auto", "meta") == "native" and resolve_backend("kornia", "cpu") == "kornia"
    with pytest.raises(ValueError, match="native, kornia"):
        simclr_augment(32, backend="dali")
    with pytest.raises(ValueError, match="augmentation backend"):
        random_crop(torch.zeros(2, 3, 8, 8), 4, backend="opencv")
