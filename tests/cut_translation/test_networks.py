"""Generator and discriminator: shapes for several sizes and channel counts, the official
anti-aliased resampling, features returned in the same pass, LSGAN and initialisation."""

import pytest
import torch
import torch.nn.functional as F

from cut_translation.networks import (NCE_LAYERS, BlurDownsample, BlurUpsample, PatchGANDiscriminator, ReflectionPad,
                                      ResnetGenerator, init_weights, lsgan_loss)


def official_upsample(x: torch.Tensor) -> torch.Tensor:
    """The official CUT Upsample (filt_size 4, replicate pad, grouped transposed conv), restated."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype)
    kernel = torch.outer(taps, taps)
    kernel = (kernel / kernel.sum() * 4).expand(x.shape[1], 1, 4, 4)
    out = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=2, padding=2, groups=x.shape[1])
    return out[:, :, 1:, 1:][:, :, :-1, :-1]


def official_downsample(x: torch.Tensor) -> torch.Tensor:
    """The official CUT Downsample (filt_size 3, reflect pad), restated as an explicit loop."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    taps = [1.0, 2.0, 1.0]
    height, width = (x.shape[2] + 1) // 2, (x.shape[3] + 1) // 2
    out = torch.zeros(x.shape[0], x.shape[1], height, width, dtype=x.dtype)
    for i in range(height):
        for j in range(width):
            for u in range(3):
                for v in range(3):
                    out[:, :, i, j] += taps[u] * taps[v] / 16 * padded[:, :, 2 * i + u, 2 * j + v]
    return out


@pytest.mark.parametrize("padding", [1, 3])
def test_reflection_pad_matches_torch_and_keeps_bf16_under_autocast(padding):
    x = torch.randn(2, 3, 7, 9)
    assert torch.equal(ReflectionPad(padding)(x), torch.nn.ReflectionPad2d(padding)(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ReflectionPad(padding)(x.bfloat16()).dtype == torch.bfloat16


def test_blur_upsample_is_the_official_transposed_blur():
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    assert torch.allclose(BlurUpsample()(x), official_upsample(x), atol=1e-12)
    assert torch.allclose(BlurUpsample()(x), F.interpolate(x, scale_factor=2, mode="bilinear"), atol=1e-12)


@pytest.mark.parametrize("height,width", [(8, 6), (7, 5)])
def test_blur_downsample_is_the_official_blur_pool(height, width):
    x = torch.randn(2, 4, height, width, dtype=torch.float64)
    assert torch.allclose(BlurDownsample()(x), official_downsample(x), atol=1e-12)


@pytest.mark.parametrize("channels,height,width,batch,n_blocks", [
    (3, 32, 32, 1, 6), (1, 64, 48, 2, 6), (3, 40, 36, 3, 9), (1, 8, 12, 1, 9)])
def test_generator_shapes_and_features(channels, height, width, batch, n_blocks):
    generator = ResnetGenerator(channels, ngf=8, n_blocks=n_blocks)
    x = torch.rand(batch, channels, height, width) * 2 - 1
    image, features = generator(x, with_features=True)
    assert image.shape == x.shape
    assert image.abs().max() <= 1
    ngf = 8
    expected = [(channels, height + 6, width + 6), (2 * ngf, height, width), (4 * ngf, height // 2, width // 2),
                (4 * ngf, height // 4, width // 4), (4 * ngf, height // 4, width // 4)]
    assert [tuple(f.shape[1:]) for f in features] == expected
    assert generator.feature_channels() == [e[0] for e in expected]
    assert all(f.shape[0] == batch for f in features)
    for from_forward, from_encode in zip(features, generator.encode(x)):
        assert torch.equal(from_forward, from_encode)


def test_generator_layer_indices_match_the_official_layout():
    generator = ResnetGenerator(3, ngf=8, n_blocks=9)
    layers = generator.model
    assert generator.nce_layers == NCE_LAYERS == (0, 4, 8, 12, 16)
    assert isinstance(layers[0], ReflectionPad) and layers[0].padding == 3
    assert isinstance(layers[4], torch.nn.Conv2d) and isinstance(layers[8], torch.nn.Conv2d)
    assert type(layers[12]).__name__ == type(layers[16]).__name__ == "ResnetBlock"
    assert len(layers) == 4 + 8 + 9 + 8 + 3


def test_generator_rejects_bad_input():
    generator = ResnetGenerator(3, ngf=4, n_blocks=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        generator(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="expects \\(batch, 3"):
        generator(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("channels,size,batch", [(3, 128, 1), (1, 64, 2), (3, 32, 3)])
def test_patchgan_shapes(channels, size, batch):
    discriminator = PatchGANDiscriminator(channels, ndf=8)
    scores = discriminator(torch.rand(batch, channels, size, size))
    # three blur-pool halvings and four 4x4 convolutions with padding 1 (each shrinks by 1)
    side = size
    for _ in range(3):
        side = -(-(side - 1) // 2)  # a 4x4 conv (-1), then a blur-pool halving (ceil)
    assert scores.shape == (batch, 1, side - 2, side - 2)


def test_lsgan_loss():
    prediction = torch.tensor([[0.5, -1.0]])
    assert lsgan_loss(prediction, True).item() == pytest.approx(((0.5 - 1) ** 2 + (-2.0) ** 2) / 2)
    assert lsgan_loss(prediction, False).item() == pytest.approx((0.25 + 1.0) / 2)


def test_init_weights_is_xavier_normal_with_gain():
    conv = torch.nn.Conv2d(64, 128, 3)
    init_weights(conv, gain=0.02, generator=torch.Generator().manual_seed(0))
    fan_in, fan_out = 64 * 9, 128 * 9
    assert conv.weight.std().item() == pytest.approx(0.02 * (2 / (fan_in + fan_out)) ** 0.5, rel=0.02)
    assert conv.bias.abs().max() == 0


def test_features_survive_in_place_layers_after_them():
    """With 2 blocks, layer 16 is an InstanceNorm followed by an in-place ReLU: the feature map
    returned by the translation pass must still be the InstanceNorm output."""
    generator = ResnetGenerator(3, ngf=4, n_blocks=2)
    x = torch.rand(1, 3, 16, 16)
    _, features = generator(x, with_features=True)
    for from_forward, from_encode in zip(features, generator.encode(x)):
        assert torch.equal(from_forward, from_encode)
    assert (features[-1] < 0).any()  # not ReLU-ed
