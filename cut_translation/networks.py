"""CUT's networks: the ResNet generator, the 70x70 PatchGAN discriminator and the LSGAN loss.

The architectures follow the official CUT code layer for layer (Park et al. 2020), so that the
generator's ``nn.Sequential`` indices 0, 4, 8, 12, 16 name the same PatchNCE layers:

=====  ======================================  =====================  ==========
index  module                                  output channels        resolution
=====  ======================================  =====================  ==========
0      ReflectionPad(3)                         in_channels            H + 6
1-3    Conv 7x7, InstanceNorm, ReLU             ngf                    H
4-7    Conv 3x3, InstanceNorm, ReLU, BlurDown   2 ngf                  H -> H/2
8-11   Conv 3x3, InstanceNorm, ReLU, BlurDown   4 ngf                  H/2 -> H/4
12..   ResnetBlock x n_blocks                   4 ngf                  H/4
...    BlurUp, Conv 3x3, InstanceNorm, ReLU x2  2 ngf, ngf             H/4 -> H
last   ReflectionPad(3), Conv 7x7, Tanh         out_channels           H
=====  ======================================  =====================  ==========

The main change from the official code is in *how* the generator is called:
:meth:`ResnetGenerator.forward` returns the NCE features of its input together with the output
image, from the same pass, so the PatchNCE keys of the input cost nothing (the official code
runs the encoder on the input a second time to get them).

Anti-aliased resampling (Zhang 2019), as in the official code: :func:`blur_downsample`
reflect-pads by 1, blurs with the binomial filter [1, 2, 1] (x) [1, 2, 1] / 16 and keeps every
second pixel; :func:`blur_upsample` is the transposed blur with [1, 3, 3, 1] (x) [1, 3, 3, 1] / 16
after replicate padding. Both are separable and run as sums of shifted slices instead of the
official depthwise (transposed) convolutions; the tests prove them equal to the official formulas.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "NCE_LAYERS",
    "ReflectionPad",
    "blur_downsample",
    "blur_upsample",
    "BlurDownsample",
    "BlurUpsample",
    "ResnetBlock",
    "ResnetGenerator",
    "PatchGANDiscriminator",
    "lsgan_loss",
    "init_weights",
    "check_image_size",
]

NCE_LAYERS: tuple[int, ...] = (0, 4, 8, 12, 16)


def check_image_size(height: int, width: int) -> None:
    """Raise a ValueError unless both sides are divisible by 4 (two 2x down/up-samplings)."""
    if height % 4 or width % 4 or height < 8 or width < 8:
        raise ValueError(
            f"image size {height}x{width} cannot be translated: both sides must be divisible by "
            "4 and at least 8 (the generator halves them twice and doubles them back); resize or "
            "crop to e.g. 128x128 or 256x256."
        )


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def reflect_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """``torch.nn.functional.pad(x, (p,) * 4, mode="reflect")`` by slicing: the dtype is kept under autocast."""
    x = torch.cat([x[..., 1:p + 1].flip(-1), x, x[..., -p - 1:-1].flip(-1)], dim=-1)
    return torch.cat([x[..., 1:p + 1, :].flip(-2), x, x[..., -p - 1:-1, :].flip(-2)], dim=-2)


class ReflectionPad(nn.Module):
    """Reflection padding by ``p`` pixels on every side: ``nn.ReflectionPad2d(p)``'s values, in
    the input's dtype.

    CPU autocast runs ``reflection_pad2d`` in float32, so under bf16 every padded activation
    would be widened and narrowed again before the next convolution; slicing and concatenating
    keeps it bf16. Needs ``p`` < H and W.
    """

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reflect_pad(x, self.padding)

    def extra_repr(self) -> str:
        return str(self.padding)


def blur_downsample(x: torch.Tensor) -> torch.Tensor:
    """Anti-aliased 2x downsampling: reflect-pad 1, blur with b b^T, b = [1, 2, 1] / 4, keep every
    second pixel: ``out[i, j] = sum_{u,v} b_u b_v pad(x)[2i + u, 2j + v]``, size ceil(H/2) x ceil(W/2).

    The official code runs it as a depthwise 3x3 convolution; here it is separable, rows then
    columns, as sums of strided slices (the same values, cheaper forward and backward).
    """
    padded = reflect_pad(x, 1)
    height, width = (x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2
    rows = padded[..., 0:2 * width:2] + 2 * padded[..., 1:2 * width + 1:2] + padded[..., 2:2 * width + 2:2]
    blurred = rows[..., 0:2 * height:2, :] + 2 * rows[..., 1:2 * height + 1:2, :] + rows[..., 2:2 * height + 2:2, :]
    return blurred * (1.0 / 16.0)


def _upsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Double ``dim``: out[2i] = (x[i-1] + 3 x[i]) / 4, out[2i+1] = (3 x[i] + x[i+1]) / 4, edges replicated."""
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    even, odd = 0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after
    shape = list(x.shape)
    shape[dim] *= 2
    return torch.stack([even, odd], dim + 1).reshape(shape)


def blur_upsample(x: torch.Tensor) -> torch.Tensor:
    """Anti-aliased 2x upsampling: the official code's transposed blur with b b^T, b = [1, 3, 3, 1] / 4
    (a grouped transposed convolution after replicate padding). Per axis that is
    ``out[2i] = (x[i-1] + 3 x[i]) / 4`` and ``out[2i+1] = (3 x[i] + x[i+1]) / 4`` with the edges
    replicated (i.e. bilinear x2 with ``align_corners=False``), computed here with shifted slices.
    Output size 2H x 2W.
    """
    return _upsample_axis(_upsample_axis(x, x.dim() - 1), x.dim() - 2)


class BlurDownsample(nn.Module):
    """:func:`blur_downsample` as a layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur_downsample(x)


class BlurUpsample(nn.Module):
    """:func:`blur_upsample` as a layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur_upsample(x)


class ResnetBlock(nn.Module):
    """``x + [ReflPad1, Conv3x3, IN, ReLU, ReflPad1, Conv3x3, IN](x)``, channels unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            ReflectionPad(1), nn.Conv2d(channels, channels, 3), _instance_norm(channels), nn.ReLU(True),
            ReflectionPad(1), nn.Conv2d(channels, channels, 3), _instance_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CUT's ResNet generator (Johnson et al. 2016 with anti-aliased resampling), see the module docstring.

    Args:
        in_channels: 1 (grey) or 3 (colour) input channels.
        out_channels: output channels (default: ``in_channels``).
        ngf: filters of the first convolution (64 in the paper).
        n_blocks: residual blocks (9 for 256x256 images, 6 for small ones).
        nce_layers: indices into :attr:`model` whose outputs are the PatchNCE features, ascending.

    ``forward(x)`` returns the translated image in [-1, 1]; ``forward(x, with_features=True)``
    returns ``(image, features)`` where ``features[i]`` is the output of
    ``model[nce_layers[i]]`` on ``x``; :meth:`encode` returns the features alone and stops
    after the last NCE layer.
    """

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, ngf: int = 64,
                 n_blocks: int = 9, nce_layers: Sequence[int] = NCE_LAYERS) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("ngf", ngf), ("n_blocks", n_blocks)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        layers: list[nn.Module] = [
            ReflectionPad(3), nn.Conv2d(in_channels, ngf, 7), _instance_norm(ngf), nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, padding=1), _instance_norm(ngf * mult * 2),
                       nn.ReLU(True), BlurDownsample()]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [BlurUpsample(), nn.Conv2d(ngf * mult, ngf * mult // 2, 3, padding=1),
                       _instance_norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [ReflectionPad(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

        nce_layers = tuple(int(i) for i in nce_layers)
        if not nce_layers or list(nce_layers) != sorted(set(nce_layers)) or nce_layers[0] < 0 \
                or nce_layers[-1] >= len(self.model):
            raise ValueError(
                f"nce_layers must be distinct ascending indices in [0, {len(self.model) - 1}] of the "
                f"generator's {len(self.model)} layers, got {nce_layers}"
            )
        self.nce_layers = nce_layers
        self.in_channels, self.out_channels = in_channels, out_channels
        self.ngf, self.n_blocks = ngf, n_blocks

    def feature_channels(self) -> list[int]:
        """The channel count of each NCE feature map, known without running the network."""
        channels = self.in_channels
        counts = {}
        for index, layer in enumerate(self.model):
            if isinstance(layer, nn.Conv2d):
                channels = layer.out_channels
            counts[index] = channels
        return [counts[i] for i in self.nce_layers]

    def _run(self, x: torch.Tensor, stop_after: int | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"the generator expects (batch, {self.in_channels}, H, W) images, got {tuple(x.shape)}; "
                "load the data with the same number of channels the model was built with."
            )
        check_image_size(*x.shape[-2:])
        wanted = set(self.nce_layers)
        features = []
        for index, layer in enumerate(self.model):
            x = layer(x)
            if index in wanted:
                following = self.model[index + 1] if index + 1 < len(self.model) else None
                # an in-place ReLU next would overwrite the captured feature map
                features.append(x.clone() if getattr(following, "inplace", False) and index != stop_after else x)
            if index == stop_after:
                break
        return x, features

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """``image`` or, with ``with_features``, ``(image, [model[l](..)(x) for l in nce_layers])``."""
        image, features = self._run(x, stop_after=None)
        return (image, features) if with_features else image

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The NCE features of ``x`` alone; the layers after the last NCE layer are not run."""
        return self._run(x, stop_after=self.nce_layers[-1])[1]


class PatchGANDiscriminator(nn.Module):
    """The 70x70 PatchGAN (pix2pix / CUT, ``n_layers=3``), anti-aliased as in CUT.

    ``Conv4x4(in, ndf) LReLU BlurDown``, then for k = 1..n_layers-1
    ``Conv4x4 IN LReLU BlurDown`` with min(2^k, 8) ndf filters, then ``Conv4x4 IN LReLU`` with
    min(2^n_layers, 8) ndf filters and a final ``Conv4x4`` to one channel: a map of real/fake
    scores (no sigmoid; see :func:`lsgan_loss`), each seeing a 70x70 patch of the input.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, padding=1), nn.LeakyReLU(0.2, True),
                                   BlurDownsample()]
        mult = 1
        for k in range(1, n_layers):
            previous, mult = mult, min(2 ** k, 8)
            layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, padding=1), _instance_norm(ndf * mult),
                       nn.LeakyReLU(0.2, True), BlurDownsample()]
        previous, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, padding=1), _instance_norm(ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images in [-1, 1] -> (B, 1, h, w) patch scores."""
        return self.model(x)


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017): ``mean((D(x) - t)^2)``, t = 1 for real, 0 for fake.

    Computed in float32 whatever the prediction's dtype.
    """
    target = 1.0 if target_is_real else 0.0
    return (prediction.float() - target).square().mean()


def init_weights(module: nn.Module, gain: float = 0.02, generator: torch.Generator | None = None) -> None:
    """CUT's initialisation: Xavier-normal weights (std = gain * sqrt(2 / (fan_in + fan_out)))
    for every Conv and Linear layer, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
            std = gain * (2.0 / (fan_in + fan_out)) ** 0.5
            with torch.no_grad():
                layer.weight.normal_(0.0, std, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
