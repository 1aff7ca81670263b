"""CIFAR-10-C style corruptions: contracts, the reference's arithmetic, and the mCE formula."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from vision_benchmarks.evaluation.corruptions import (BENCHMARK_CORRUPTIONS, CORRUPTIONS, corrupt, corruption_names,
                                           defocus_kernel, plasma_fractal)
from vision_benchmarks.evaluation.robustness import (corruption_error, mean_by_severity, mean_corruption_error,
                                          robustness_accuracies)

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "motion_blur", "fog"}


@pytest.fixture(scope="module")
def images(cifar_test) -> torch.Tensor:
    """8 real CIFAR-10 test images (fixed)."""
    return cifar_test.images[:8].clone()


def hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


def test_the_benchmark_set_covers_the_required_corruptions():
    required = {"gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur", "brightness",
                "contrast", "fog", "jpeg_compression", "pixelate"}
    assert required <= set(BENCHMARK_CORRUPTIONS) and corruption_names("all") == list(BENCHMARK_CORRUPTIONS)
    assert all(len(c.parameters) == 5 for c in CORRUPTIONS.values())
    with pytest.raises(ValueError, match="unknown corruption"):
        corruption_names("gaussian_noise,frost")


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_shape_dtype_range_and_seeded(images, name):
    out = corrupt(images, name, 3, seed=7)
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.is_contiguous()
    assert torch.equal(out, corrupt(images, name, 3, seed=7))  # deterministic given the seed
    assert not torch.equal(out, images)
    if name in RANDOM:
        assert not torch.equal(out, corrupt(images, name, 3, seed=8))


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "saturate"])
def test_distance_from_clean_grows_with_severity(images, name):
    # (saturate is left out: its reference table first desaturates (0.3, then 0.1) and then
    # oversaturates (1.5, 2, 2.5), so its distance is not ordered by severity by design.)
    distances = [(corrupt(images, name, s, seed=0).float() - images.float()).abs().mean().item() for s in range(1, 6)]
    assert all(b >= a - 0.05 for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] > distances[0]


def test_noise_statistics_follow_the_definitions():
    grey = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    noisy = corrupt(grey, "gaussian_noise", 5, seed=0).float() / 255  # x + N(0, 0.10^2)
    assert abs(noisy.std().item() - 0.10) < 0.003 and abs(noisy.mean().item() - 128 / 255) < 0.003
    flipped = corrupt(grey, "impulse_noise", 5, seed=0)  # 7% of values to 0 or 255, half each
    assert abs((flipped == 255).float().mean().item() - 0.035) < 0.003
    assert abs((flipped == 0).float().mean().item() - 0.035) < 0.003
    shot = corrupt(grey, "shot_noise", 5, seed=0).float() / 255  # Poisson(50 x) / 50: variance x / 50
    assert abs(shot.var().item() - (128 / 255) / 50) < 0.0005


def test_contrast_and_brightness_formulas_on_hand_values():
    image = torch.tensor([[[[0, 255], [100, 45]]]], dtype=torch.uint8).repeat(1, 3, 1, 1)
    # contrast severity 5: (x - m) 0.15 + m, m = 100 / 255 per channel; truncated to uint8
    m = 100 / 255
    want = [int(np.clip((v / 255 - m) * 0.15 + m, 0, 1) * 255 + 1e-3) for v in (0, 255, 100, 45)]
    assert corrupt(image, "contrast", 5)[0, 0].flatten().tolist() == want
    # brightness severity 5: a grey pixel's value v -> min(v + 0.3, 1)
    assert corrupt(image, "brightness", 5)[0, 0].flatten().tolist() == [76, 255, 176, 121]


def test_pixelate_and_jpeg_match_pil_exactly(images):
    for severity, factor in zip(range(1, 6), (0.95, 0.9, 0.85, 0.75, 0.65)):
        side = int(32 * factor)
        want = [np.array(Image.fromarray(a).resize((side, side), Image.BOX).resize((32, 32), Image.BOX))
                for a in hwc(images)]
        assert np.array_equal(hwc(corrupt(images, "pixelate", severity)), np.stack(want))
    for severity, quality in ((1, 80), (5, 40)):
        want = []
        for a in hwc(images):
            buffer = io.BytesIO()
            Image.fromarray(a).save(buffer, "JPEG", quality=quality)
            want.append(np.array(Image.open(buffer)))
        assert np.array_equal(hwc(corrupt(images, "jpeg_compression", severity)), np.stack(want))


def test_colour_and_blur_match_scikit_image_within_one_level(images):
    skimage = pytest.importorskip("skimage")  # a dev dependency
    from skimage.filters import gaussian

    x = hwc(images) / 255.0

    def hsv_edit(channel: int, edit) -> np.ndarray:
        hsv = skimage.color.rgb2hsv(x)
        hsv[..., channel] = edit(hsv[..., channel])
        return np.uint8(np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255)

    cases = {
        ("brightness", 4): hsv_edit(2, lambda v: np.clip(v + 0.2, 0, 1)),
        ("saturate", 1): hsv_edit(1, lambda s: np.clip(s * 0.3, 0, 1)),
        ("saturate", 5): hsv_edit(1, lambda s: np.clip(s * 2.5 + 0.2, 0, 1)),
        ("gaussian_blur", 5): np.stack([np.uint8(np.clip(gaussian(a, sigma=1.0, channel_axis=-1), 0, 1) * 255)
                                        for a in x]),
    }
    # The reference truncates float64 results; where the exact value is an integer (brightness
    # adds 0.2 = 51/255) its round-off falls either side of it and truncation moves it by one
    # level, so a few per cent of values differ by exactly one.
    for (name, severity), want in cases.items():
        diff = np.abs(hwc(corrupt(images, name, severity)).astype(int) - want.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.05, (name, severity)


def test_defocus_kernel_is_the_smoothed_disk():
    # radius 0.3: the disk is the centre pixel; smoothing by a 3 x 3 Gaussian of sigma 0.4
    g = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * 0.4**2))
    g /= g.sum()
    assert np.allclose(defocus_kernel(0.3, 0.4).numpy(), np.outer(g, g))
    # radius 1.5: the 3 x 3 block (i^2 + j^2 <= 2.25), 1/9 each, widened by the smoothing to 5 x 5
    kernel = defocus_kernel(1.5, 0.1)
    assert kernel.shape == (5, 5) and abs(kernel.sum().item() - 1) < 1e-12
    assert abs(kernel[2, 2].item() - 1 / 9) < 1e-6


def test_plasma_fractal_is_normalised_and_seeded():
    g = torch.Generator().manual_seed(0)
    maps = plasma_fractal(3, 32, 2.0, g)
    assert maps.shape == (3, 32, 32)
    assert torch.allclose(maps.amin(dim=(1, 2)), torch.zeros(3, dtype=maps.dtype))
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(3, dtype=maps.dtype))
    assert torch.equal(maps, plasma_fractal(3, 32, 2.0, torch.Generator().manual_seed(0)))


def test_mce_on_hand_numbers():
    model = {"fog": {"1": 0.9, "2": 0.8, "3": 0.7}, "contrast": {"1": 0.6, "2": 0.5, "3": 0.4}}
    baseline = {"fog": {"1": 0.8, "2": 0.6, "3": 0.4}, "contrast": {"1": 0.5, "2": 0.5, "3": 0.5}}
    # fog: errors 0.1+0.2+0.3 = 0.6 over 0.2+0.4+0.6 = 1.2 -> 0.5; contrast: 1.5 / 1.5 = 1.0
    result = mean_corruption_error(model, baseline, clean=0.95, baseline_clean=0.9)
    assert result["ce"] == pytest.approx({"fog": 0.5, "contrast": 1.0})
    assert result["mce"] == pytest.approx(0.75)
    # relative: fog (0.05+0.15+0.25) / (0.1+0.3+0.5) = 0.5; contrast (0.35+0.45+0.55) / (0.4*3) = 1.125
    assert result["rce"] == pytest.approx({"fog": 0.5, "contrast": 1.125})
    assert result["relative_mce"] == pytest.approx(0.8125)
    assert corruption_error([0.1, 0.2], [0.1, 0.2]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="baseline has no accuracies"):
        mean_corruption_error(model, {"fog": baseline["fog"]})
    # a corruption that does not lower the baseline's accuracy (here it raises it: 0.92 > clean 0.9)
    # has no relative error; the relative mCE is the mean over the others, and CE is unaffected
    helped = {**baseline, "contrast": {"1": 0.92, "2": 0.9, "3": 0.9}}
    result = mean_corruption_error(model, helped, clean=0.95, baseline_clean=0.9)
    assert result["rce"]["contrast"] is None and result["rce_undefined"] == ["contrast"]
    assert result["relative_mce"] == pytest.approx(0.5)
    assert result["ce"]["contrast"] == pytest.approx(1.5 / 0.28)


def test_robustness_accuracies_of_a_colour_classifier():
    # class 0 = dark, class 1 = bright images; the classifier thresholds the mean pixel value
    labels = torch.arange(40) % 2
    images = torch.where(labels.view(-1, 1, 1, 1) == 1, 200, 40).to(torch.uint8).expand(-1, 3, 32, 32).contiguous()

    def classify(x: torch.Tensor) -> torch.Tensor:
        mean = x.float().mean(dim=(1, 2, 3))
        return torch.stack([128 - mean, mean - 128], dim=1)

    result = robustness_accuracies(classify, images, labels, ["gaussian_noise", "contrast"], seed=0, chunk_size=16)
    assert result["clean"] == 1.0
    assert result["accuracy"]["gaussian_noise"] == {s: 1.0 for s in range(1, 6)}  # noise keeps the mean
    assert set(result["accuracy"]["contrast"]) == {1, 2, 3, 4, 5}
    record = {"clean": 1.0, "accuracy": {"a": {"1": 0.5, "2": 0.25}, "b": {"1": 0.7, "2": 0.45}}}
    assert mean_by_severity(record) == pytest.approx([1.0, 0.6, 0.35])


def test_robustness_protocol_end_to_end_with_a_baseline(tmp_path, capsys):
    import json

    from tests.vision_benchmarks.test_transfer import make_run
    from vision_benchmarks import evaluate

    flags = ["--protocol", "robustness", "--corruptions", "fog,contrast", "--corruption-images", "64",
             "--label-fraction", "0.01", "--device", "cpu"]
    baseline = make_run(tmp_path / "baseline", seed=1)
    base = evaluate.main(["--run", str(baseline), *flags])
    assert set(base["accuracy"]) == {"fog", "contrast"} and base["test_images"] == 64
    run = make_run(tmp_path / "model", seed=2)
    record = evaluate.main(["--run", str(run), *flags, "--baseline", str(baseline)])
    saved = json.loads((run / "eval_robustness.json").read_text())
    assert saved["mce"] == pytest.approx(record["mce"]) and (run / "robustness.png").stat().st_size > 0
    for name in ("fog", "contrast"):  # CE restated from the two files
        errors = [1 - saved["accuracy"][name][str(s)] for s in range(1, 6)]
        base_errors = [1 - base["accuracy"][name][str(s)] for s in range(1, 6)]
        assert saved["ce"][name] == pytest.approx(sum(errors) / sum(base_errors))
    assert saved["mce"] == pytest.approx((saved["ce"]["fog"] + saved["ce"]["contrast"]) / 2)
    assert saved["mean_by_severity"][0] == saved["clean"] and len(saved["mean_by_severity"]) == 6
    assert "mCE" in capsys.readouterr().out
    with pytest.raises(ValueError, match="same --corruption-images"):
        evaluate.main(["--run", str(run), *flags[:-4], "--corruption-images", "32", "--label-fraction", "0.01",
                       "--device", "cpu", "--baseline", str(baseline)])
