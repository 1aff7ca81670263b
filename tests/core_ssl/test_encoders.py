"""Tests of core_ssl.encoders: shapes, parameter counts, input dtypes, CURL's weight sharing."""

import math

import pytest
import torch
import torchvision

from core_ssl.encoders import (
    ENCODERS,
    ConvNetEncoder,
    CurlEncoder,
    ResNetEncoder,
    build_encoder,
)


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "name, kwargs, input_shape, feature_dim",
    [
        ("resnet18", {"cifar_stem": True}, (2, 3, 32, 32), 512),
        ("resnet18", {"width": 2}, (2, 3, 32, 32), 1024),
        ("resnet50", {}, (2, 3, 32, 32), 2048),
        ("curl", {}, (2, 9, 84, 84), 50),
        ("curl", {"obs_shape": (3, 64, 64), "feature_dim": 16, "num_layers": 2}, (2, 3, 64, 64), 16),
        ("convnet", {}, (2, 3, 32, 32), 256),
        ("convnet", {"width": 8, "feature_dim": 10, "in_channels": 1}, (2, 1, 28, 28), 10),
    ],
)
def test_output_shapes(name, kwargs, input_shape, feature_dim):
    torch.manual_seed(0)
    encoder = build_encoder(name, **kwargs)
    assert encoder.feature_dim == feature_dim
    out = encoder(torch.rand(input_shape))
    assert out.shape == (input_shape[0], feature_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("depth, reference", [(18, torchvision.models.resnet18),
                                              (50, torchvision.models.resnet50)])
def test_resnet_parameters_equal_torchvision_minus_fc(depth, reference):
    model = reference()
    assert _num_params(ResNetEncoder(depth)) == _num_params(model) - _num_params(model.fc)


def test_resnet_width_and_stem_options():
    wide = ResNetEncoder(18, width=2, cifar_stem=True, in_channels=1)
    assert wide.conv1.in_channels == 1 and wide.conv1.out_channels == 128
    assert wide.conv1.kernel_size == (3, 3) and wide.conv1.stride == (1, 1)
    assert isinstance(wide.maxpool, torch.nn.Identity)
    assert wide.layer4[-1].conv2.out_channels == 1024
    # A 3x3 stride-1 stem and no max-pool keep 32x32 inputs 32x32 through layer1.
    x = torch.rand(1, 1, 32, 32)
    assert wide.layer1(wide.maxpool(wide.relu(wide.bn1(wide.conv1(x))))).shape == (1, 128, 32, 32)


@pytest.mark.parametrize("name, kwargs, shape", [
    ("resnet18", {"cifar_stem": True}, (2, 3, 16, 16)),
    ("curl", {"obs_shape": (9, 84, 84)}, (2, 9, 84, 84)),
    ("convnet", {}, (2, 3, 32, 32)),
])
def test_uint8_input_equals_float_divided_by_255(name, kwargs, shape):
    torch.manual_seed(0)
    encoder = build_encoder(name, **kwargs).eval()
    pixels = torch.randint(0, 256, shape, dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixels), encoder(pixels.float() / 255))


def test_other_dtypes_and_shapes_are_rejected():
    encoder = ConvNetEncoder(width=4)
    with pytest.raises(TypeError, match="float or uint8"):
        encoder(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        encoder(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="built for observations"):
        CurlEncoder(obs_shape=(3, 64, 64))(torch.zeros(1, 3, 84, 84))


def test_curl_conv_output_size_and_init():
    encoder = CurlEncoder(obs_shape=(9, 84, 84), num_layers=4, num_filters=32)
    assert encoder.conv_output_shape == (32, 35, 35)
    assert encoder.fc.in_features == 32 * 35 * 35
    assert encoder.forward_conv(torch.rand(2, 9, 84, 84)).shape == (2, 32 * 35 * 35)
    for conv in encoder.convs:
        weight = conv.weight.detach()
        off_centre = weight.clone()
        off_centre[:, :, 1, 1] = 0
        assert off_centre.abs().max() == 0  # delta-orthogonal: only the centre tap is non-zero
        centre = weight[:, :, 1, 1]  # (out, in): orthogonal rows or columns, scaled by sqrt(2)
        gram = centre @ centre.T if centre.shape[0] <= centre.shape[1] else centre.T @ centre
        torch.testing.assert_close(gram, 2 * torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
        assert conv.bias.abs().max() == 0
    fc = encoder.fc.weight.detach()  # (50, 39200): orthonormal rows
    torch.testing.assert_close(fc @ fc.T, torch.eye(50), atol=1e-5, rtol=0)


def test_curl_forward_is_head_after_conv_and_detach_stops_conv_gradients():
    encoder = CurlEncoder(obs_shape=(3, 24, 24), num_layers=2, num_filters=4, feature_dim=8, output_tanh=True)
    obs = torch.rand(3, 3, 24, 24)
    torch.testing.assert_close(encoder(obs), encoder.forward_head(encoder.forward_conv(obs)))
    encoder(obs, detach_conv=True).sum().backward()
    assert all(conv.weight.grad is None for conv in encoder.convs)
    assert encoder.fc.weight.grad is not None and encoder.fc.weight.grad.abs().sum() > 0


def test_curl_generator_makes_init_reproducible():
    a = CurlEncoder(generator=torch.Generator().manual_seed(3), num_layers=2)
    b = CurlEncoder(generator=torch.Generator().manual_seed(3), num_layers=2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_curl_output_tanh_bounds_output():
    torch.manual_seed(0)
    encoder = CurlEncoder(obs_shape=(3, 32, 32), num_layers=2, output_tanh=True)
    out = encoder(torch.rand(4, 3, 32, 32))
    assert out.abs().max() < 1
    plain = CurlEncoder(obs_shape=(3, 32, 32), num_layers=2)
    plain.load_state_dict(encoder.state_dict())
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(encoder(x), torch.tanh(plain(x)))


def test_curl_detach_conv_blocks_gradient_to_convs_only():
    torch.manual_seed(0)
    encoder = CurlEncoder(obs_shape=(3, 32, 32), num_layers=2)
    encoder(torch.rand(4, 3, 32, 32), detach_conv=True).pow(2).sum().backward()
    assert all(conv.weight.grad is None and conv.bias.grad is None for conv in encoder.convs)
    assert encoder.fc.weight.grad is not None and encoder.fc.weight.grad.abs().sum() > 0

    encoder.zero_grad(set_to_none=True)
    encoder(torch.rand(4, 3, 32, 32)).pow(2).sum().backward()
    assert all(conv.weight.grad.abs().sum() > 0 for conv in encoder.convs)


def test_curl_copy_conv_weights_ties_parameters():
    critic = CurlEncoder(obs_shape=(3, 32, 32), num_layers=3)
    actor = CurlEncoder(obs_shape=(3, 32, 32), num_layers=3)
    actor.copy_conv_weights_from(critic)
    for actor_conv, critic_conv in zip(actor.convs, critic.convs):
        assert actor_conv.weight is critic_conv.weight
        assert actor_conv.bias is critic_conv.bias
    assert actor.fc.weight is not critic.fc.weight
    with torch.no_grad():
        critic.convs[0].weight.add_(1.0)
    torch.testing.assert_close(actor.convs[0].weight, critic.convs[0].weight)
    # The shared tensors are counted once in a joint optimiser's parameter list.
    joint = {id(p) for p in list(actor.parameters()) + list(critic.parameters())}
    assert len(joint) == len(list(critic.parameters())) + 4  # + actor's fc (2) and ln (2)

    with pytest.raises(ValueError, match="tie 3 conv layers"):
        actor.copy_conv_weights_from(CurlEncoder(obs_shape=(3, 32, 32), num_layers=2))


def test_build_encoder_errors():
    assert set(ENCODERS) == {"resnet18", "resnet50", "curl", "convnet"}
    with pytest.raises(ValueError, match="valid names: convnet, curl, resnet18, resnet50"):
        build_encoder("vgg16")
    with pytest.raises(TypeError, match="does not take option.*depth.*it takes: cifar_stem"):
        build_encoder("resnet18", depth=50)
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNetEncoder(depth=20)
    with pytest.raises(ValueError, match="too small"):
        CurlEncoder(obs_shape=(3, 16, 16), num_layers=6)


def test_curl_encoder_micro_batches_compute_the_same_features_and_gradients():
    """Micro-batching the conv stack is a speed setting: outputs and gradients match the
    whole-batch pass to float rounding, for batches that do and do not divide evenly."""
    torch.manual_seed(0)
    whole = CurlEncoder(obs_shape=(9, 24, 24), num_layers=3, num_filters=8, feature_dim=8)
    chunked = CurlEncoder(obs_shape=(9, 24, 24), num_layers=3, num_filters=8, feature_dim=8, micro_batch=4)
    chunked.load_state_dict(whole.state_dict())
    obs = torch.randint(0, 256, (10, 9, 24, 24), dtype=torch.uint8)
    out_whole, out_chunked = whole(obs), chunked(obs)
    torch.testing.assert_close(out_chunked, out_whole, rtol=1e-5, atol=1e-6)
    (out_whole ** 2).sum().backward()
    (out_chunked ** 2).sum().backward()
    for (name, a), b in zip(whole.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
    assert chunked.forward_conv(obs[:3]).shape == (3, math.prod(chunked.conv_output_shape))  # < one micro-batch
